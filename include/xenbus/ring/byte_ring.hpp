// [freestanding] Byte-stream rings: one end of one direction (xenstore, console, DEFINE_XEN_FLEX_RING), and the two-way
// pair over a layout.
#pragma once

#include <xenbus/ring/detail/shared_access.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <concepts>
#include <optional>
#include <span>
#include <utility>

XENBUS_BEGIN_NAMESPACE

/// Where one direction of a byte ring lives: a power-of-two data buffer and the two
/// free-running indices that count bytes written (prod) and read (cons).
struct byte_ring_location {
  std::byte* data = nullptr;
  ring_idx size = 0;  ///< a power of two
  ring_idx* cons = nullptr;
  ring_idx* prod = nullptr;

  constexpr bool valid() const noexcept {
    return data != nullptr && cons != nullptr && prod != nullptr && size != 0 && (size & (size - 1)) == 0;
  }
};

/// The writing end of one direction. Keeps its own producer index privately: the shared
/// copy is only ever written, so a peer scribbling on it cannot move us.
class byte_ring_producer {
 public:
  byte_ring_producer() noexcept = default;
  /// Starts writing at `prod` (the index the ring holds now: never assume 0).
  constexpr byte_ring_producer(byte_ring_location at, ring_idx prod) noexcept
      : at_(at), prod_(prod), cons_seen_(prod - at.size) {}

  /// Copies as much of `bytes` as fits (possibly 0) and publishes it; returns how much.
  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept {
    if (broken_) return unexpected{*broken_};
    // The reader's index as we last saw it (validated then) only ever understates the
    // room: re-read the shared one, whose cache line the reader keeps writing, only when
    // that room is not enough for this write.
    ring_idx room = at_.size - (prod_ - cons_seen_);
    if (room < bytes.size()) {
      auto now = space();
      if (!now) return unexpected{now.error()};
      room = *now;
    }
    const ring_idx n = bytes.size() < room ? static_cast<ring_idx>(bytes.size()) : room;
    if (n == 0) return std::size_t{0};
    const ring_idx off = prod_ & (at_.size - 1);
    const ring_idx first = at_.size - off < n ? at_.size - off : n;
    detail::copy_bytes(at_.data + off, bytes.data(), first);
    if (n != first) detail::copy_bytes(at_.data, bytes.data() + first, n - first);
    prod_ += n;
    // Release: the bytes above are visible before the new prod; pairs with the reader's
    // acquire load of prod.
    detail::store(*at_.prod, prod_, std::memory_order_release);
    return std::size_t{n};
  }

  /// Free bytes now; validates the reader's index.
  result<ring_idx, ring_error> space() noexcept {
    if (broken_) return unexpected{*broken_};
    // Acquire: the reader has finished with the bytes before cons before we overwrite
    // them; pairs with its release store of cons.
    const ring_idx cons = detail::load(*at_.cons, std::memory_order_acquire);
    const ring_idx used = prod_ - cons;
    // The reader can be at most `size` behind us and never ahead (that wraps to huge).
    if (used > at_.size) return fail(ring_error::cons_overflow);
    cons_seen_ = cons;
    return at_.size - used;
  }

  std::optional<ring_error> broken() const noexcept { return broken_; }
  /// Latches the ring broken from outside (e.g. the xenstore `error` field).
  void mark_broken(ring_error e) noexcept {
    if (!broken_) broken_ = e;
  }
  ring_idx prod() const noexcept { return prod_; }
  ring_idx size() const noexcept { return at_.size; }

 private:
  result<ring_idx, ring_error> fail(ring_error e) noexcept {
    broken_ = e;
    return unexpected{e};
  }
  byte_ring_location at_{};
  ring_idx prod_ = 0;
  ring_idx cons_seen_ = 0;  // last validated reader index (starts as "ring full": unknown)
  std::optional<ring_error> broken_{};
};

/// The reading end of one direction. Keeps its own consumer index privately.
class byte_ring_consumer {
 public:
  byte_ring_consumer() noexcept = default;
  constexpr byte_ring_consumer(byte_ring_location at, ring_idx cons) noexcept : at_(at), cons_(cons) {}

  /// Copies up to out.size() bytes (possibly 0) into `out`, each byte read from the
  /// shared buffer exactly once, and releases the space; returns how many.
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept {
    auto avail = available();
    if (!avail) return unexpected{avail.error()};
    const ring_idx n = out.size() < *avail ? static_cast<ring_idx>(out.size()) : *avail;
    if (n == 0) return std::size_t{0};
    const ring_idx off = cons_ & (at_.size - 1);
    const ring_idx first = at_.size - off < n ? at_.size - off : n;
    detail::copy_bytes(out.data(), at_.data + off, first);
    if (n != first) detail::copy_bytes(out.data() + first, at_.data, n - first);
    cons_ += n;
    // Release: our reads of those bytes complete before the writer may reuse the space;
    // pairs with the writer's acquire load of cons.
    detail::store(*at_.cons, cons_, std::memory_order_release);
    return std::size_t{n};
  }

  /// Bytes waiting now; validates the writer's index.
  result<ring_idx, ring_error> available() noexcept {
    if (broken_) return unexpected{*broken_};
    // Acquire: the bytes before prod are read after it; pairs with the writer's release.
    const ring_idx prod = detail::load(*at_.prod, std::memory_order_acquire);
    const ring_idx avail = prod - cons_;
    // More than the ring holds, or behind us (wraps to huge): an error, never an assert.
    if (avail > at_.size) return fail(ring_error::prod_overflow);
    return avail;
  }

  std::optional<ring_error> broken() const noexcept { return broken_; }
  void mark_broken(ring_error e) noexcept {
    if (!broken_) broken_ = e;
  }
  ring_idx cons() const noexcept { return cons_; }
  ring_idx size() const noexcept { return at_.size; }

 private:
  result<ring_idx, ring_error> fail(ring_error e) noexcept {
    broken_ = e;
    return unexpected{e};
  }
  byte_ring_location at_{};
  ring_idx cons_ = 0;
  std::optional<ring_error> broken_{};
};

// ---- Two-way byte rings: one end writes a direction and reads the other ----------------

/// The two directions of a two-way byte-ring page, named as the page names them.
struct byte_ring_directions {
  byte_ring_location in, out;
};

/// Where a two-way byte ring lives, for byte_ring_pair: `end_type` names the ends,
/// `writes_out` is the end that writes `out` (the other writes `in`), and a static
/// `locate(memory...)` checks the caller's memory and returns both directions in it.
template <class L>
concept byte_ring_layout = requires {
  typename L::end_type;
  { L::writes_out } -> std::convertible_to<typename L::end_type>;
};

/// One end of a two-way byte ring over `Layout` (console_ring, flex_ring): a producer for
/// the direction it writes and a consumer for the one it reads, each validating the peer's
/// index and latching its own error. Notify the event channel after any call that moved
/// bytes.
template <byte_ring_layout Layout>
class byte_ring_pair {
 public:
  using layout = Layout;
  using end_type = typename Layout::end_type;

  /// Attaches `end` at the indices the memory holds now. `memory` is what Layout::locate
  /// takes (console: the page; flex: indexes page, data pages, order[, max_order]).
  template <class... Memory>
  requires requires(Memory&&... m) { Layout::locate(std::forward<Memory>(m)...); }
  static result<byte_ring_pair, ring_error> attach(end_type end, Memory&&... memory) noexcept {
    const auto at = Layout::locate(std::forward<Memory>(memory)...);
    if (!at) return unexpected{at.error()};
    const byte_ring_location& mine = end == Layout::writes_out ? at->out : at->in;
    const byte_ring_location& theirs = end == Layout::writes_out ? at->in : at->out;
    // Relaxed: starting points only, read once before the connection is used; every later
    // use validates the peer's index against them.
    return byte_ring_pair(byte_ring_producer(mine, detail::load(*mine.prod, std::memory_order_relaxed)),
                          byte_ring_consumer(theirs, detail::load(*theirs.cons, std::memory_order_relaxed)));
  }

  /// Writes what fits of `bytes` into our direction; returns how much (possibly 0).
  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept { return tx_.write(bytes); }
  /// Reads what is there in the peer's direction, up to out.size(); returns how much.
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept { return rx_.read(out); }
  result<ring_idx, ring_error> space() noexcept { return tx_.space(); }
  result<ring_idx, ring_error> available() noexcept { return rx_.available(); }
  /// Bytes of the direction we write.
  ring_idx size() const noexcept { return tx_.size(); }

 private:
  byte_ring_pair(byte_ring_producer tx, byte_ring_consumer rx) noexcept : tx_(tx), rx_(rx) {}
  byte_ring_producer tx_;
  byte_ring_consumer rx_;
};

// ---- DEFINE_XEN_FLEX_RING rings (pvcalls, 9pfs) -------------------------------------

/// The indexes page of DEFINE_XEN_FLEX_RING_AND_INTF (`struct name##_data_intf`). pvcalls
/// keeps the same offsets and puts in_error/out_error in the padding.
struct flex_ring_intf {
  ring_idx in_cons, in_prod;
  std::uint8_t pad1[56];
  ring_idx out_cons, out_prod;
  std::uint8_t pad2[56];
  ring_idx ring_order;
  // grant_ref_t ref[1 << ring_order] follows (a C flexible array member).
};
static_assert(sizeof(flex_ring_intf) == 132 && offsetof(flex_ring_intf, out_cons) == 64 &&
              offsetof(flex_ring_intf, ring_order) == 128);

/// Bytes of one direction of a flex ring of order `order` (XEN_FLEX_RING_SIZE).
constexpr std::size_t flex_ring_size(unsigned order) noexcept { return std::size_t{1} << (order + 12 - 1); }
/// Largest order whose 2^order grant refs still fit in the indexes page after the header.
inline constexpr unsigned flex_ring_max_order = 9;

/// Which end of a flex ring: the frontend writes `out` and reads `in`; the backend the
/// reverse (pvcalls, 9pfs).
enum class flex_end : std::uint8_t { frontend, backend };

/// A DEFINE_XEN_FLEX_RING pair: the indexes page plus 2^order data pages, `in` in the
/// first half and `out` in the second.
struct flex_layout {
  using end_type = flex_end;
  static constexpr flex_end writes_out = flex_end::frontend;

  /// `order` usually comes from the peer (`ring_order` in the indexes page, or xenstore):
  /// it is checked against `max_order` (what we advertised) and against what `data`
  /// holds. Any integer type, compared by value (a negative order is refused too).
  template <std::integral Order, std::integral MaxOrder = unsigned>
  static result<byte_ring_directions, ring_error> locate(std::span<std::byte> intf_page, std::span<std::byte> data,
                                                         Order order,
                                                         MaxOrder max_order = flex_ring_max_order) noexcept {
    if (std::cmp_less(order, 0) || std::cmp_greater(order, max_order) || std::cmp_greater(order, flex_ring_max_order))
      return unexpected{ring_error::bad_memory};
    if (intf_page.size() < sizeof(flex_ring_intf) ||
        reinterpret_cast<std::uintptr_t>(intf_page.data()) % alignof(flex_ring_intf) != 0)
      return unexpected{ring_error::bad_memory};
    const std::size_t half = flex_ring_size(static_cast<unsigned>(order));
    if (data.data() == nullptr || data.size() < 2 * half) return unexpected{ring_error::bad_memory};
    auto* intf = reinterpret_cast<flex_ring_intf*>(intf_page.data());
    const auto size = static_cast<ring_idx>(half);
    return byte_ring_directions{{data.data(), size, &intf->in_cons, &intf->in_prod},
                                {data.data() + half, size, &intf->out_cons, &intf->out_prod}};
  }
};

/// One end of a flex ring: flex_ring::attach(end, intf_page, data, order[, max_order]).
using flex_ring = byte_ring_pair<flex_layout>;

XENBUS_END_NAMESPACE
