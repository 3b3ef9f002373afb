// [freestanding] Byte-stream rings (xenstore, console, DEFINE_XEN_FLEX_RING): one end of one direction, with wraparound and partial transfers.
#pragma once

#include <xenbus/ring/detail/shared_access.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

XENBUS_BEGIN_NAMESPACE

/// Where one direction of a byte ring lives: a power-of-two data buffer and the two
/// free-running indices that count bytes written (prod) and read (cons).
struct byte_ring_location {
  std::byte* data = nullptr;
  ring_idx size = 0;  ///< a power of two
  ring_idx* cons = nullptr;
  ring_idx* prod = nullptr;

  constexpr bool valid() const noexcept {
    return data != nullptr && cons != nullptr && prod != nullptr && size != 0 &&
           (size & (size - 1)) == 0;
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
  constexpr byte_ring_consumer(byte_ring_location at, ring_idx cons) noexcept
      : at_(at), cons_(cons) {}

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
constexpr std::size_t flex_ring_size(unsigned order) noexcept {
  return std::size_t{1} << (order + 12 - 1);
}
/// Largest order whose 2^order grant refs still fit in the indexes page after the header.
inline constexpr unsigned flex_ring_max_order = 9;

/// Which end of a flex ring: the frontend writes `out` and reads `in`; the backend the
/// reverse (pvcalls, 9pfs).
enum class flex_end : std::uint8_t { frontend, backend };

/// One end of a DEFINE_XEN_FLEX_RING pair: the indexes page plus 2^order data pages,
/// `in` in the first half and `out` in the second.
class flex_ring {
 public:
  /// Attaches to a flex ring of the given order. `order` usually comes from the peer
  /// (`ring_order` in the indexes page, or xenstore): it is checked against `max_order`
  /// (what we advertised) and against what `data` holds. Starts at the page's indices.
  static result<flex_ring, ring_error> attach(flex_end end, std::span<std::byte> intf_page,
                                              std::span<std::byte> data, unsigned order,
                                              unsigned max_order = flex_ring_max_order) noexcept {
    if (order > max_order || order > flex_ring_max_order) return unexpected{ring_error::bad_memory};
    if (intf_page.size() < sizeof(flex_ring_intf) ||
        reinterpret_cast<std::uintptr_t>(intf_page.data()) % alignof(flex_ring_intf) != 0)
      return unexpected{ring_error::bad_memory};
    const std::size_t half = flex_ring_size(order);
    if (data.data() == nullptr || data.size() < 2 * half) return unexpected{ring_error::bad_memory};
    auto* intf = reinterpret_cast<flex_ring_intf*>(intf_page.data());
    const auto size = static_cast<ring_idx>(half);
    const byte_ring_location in{data.data(), size, &intf->in_cons, &intf->in_prod};
    const byte_ring_location out{data.data() + half, size, &intf->out_cons, &intf->out_prod};
    const byte_ring_location& mine = end == flex_end::frontend ? out : in;
    const byte_ring_location& theirs = end == flex_end::frontend ? in : out;
    // Relaxed: starting points only, read once before the connection is used; every later
    // use validates the peer's index against them.
    return flex_ring(byte_ring_producer(mine, detail::load(*mine.prod, std::memory_order_relaxed)),
                     byte_ring_consumer(theirs, detail::load(*theirs.cons, std::memory_order_relaxed)));
  }

  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept {
    return tx_.write(bytes);
  }
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept { return rx_.read(out); }
  result<ring_idx, ring_error> space() noexcept { return tx_.space(); }
  result<ring_idx, ring_error> available() noexcept { return rx_.available(); }
  ring_idx size() const noexcept { return tx_.size(); }

 private:
  flex_ring(byte_ring_producer tx, byte_ring_consumer rx) noexcept : tx_(tx), rx_(rx) {}
  byte_ring_producer tx_;
  byte_ring_consumer rx_;
};

XENBUS_END_NAMESPACE
