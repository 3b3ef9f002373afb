// [freestanding] Request/response shared rings, binary-compatible with <xen/io/ring.h> and safe against a hostile peer.
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
#include <type_traits>

XENBUS_BEGIN_NAMESPACE

/// A request or response that can travel in a ring slot: plain bytes with a C layout.
/// Xen's message structs are C structs; ours must be too, since a slot is copied as bytes.
template <class T>
concept ring_message = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> &&
                       std::is_trivially_default_constructible_v<T>;

/// One slot of the shared ring: DEFINE_RING_TYPES' `union __name##_sring_entry`.
template <ring_message Req, ring_message Rsp>
union sring_entry {
  Req req;
  Rsp rsp;
};

/// The shared ring page, laid out exactly as DEFINE_RING_TYPES lays out `struct __name##_sring`.
/// The slot array really holds ring_size() entries; `ring[1]` only fixes the layout, as in C.
/// Never touch the fields directly: front_ring and back_ring access them with the right
/// atomics and validate what the peer wrote.
template <ring_message Req, ring_message Rsp>
struct sring {
  ring_idx req_prod, req_event;
  ring_idx rsp_prod, rsp_event;
  std::uint8_t pvt[4];  // union { netif.smartpoll_active; tapif_user.msg; pvt_pad[4]; } pvt
  std::uint8_t pad[44];
  sring_entry<Req, Rsp> ring[1];
};

namespace detail {
template <class S>
constexpr std::size_t slots_offset() noexcept {
  static_assert(std::is_standard_layout_v<S>, "a shared ring page must have a C layout");
  return offsetof(S, ring);
}
}  // namespace detail

/// Byte offset of the first slot: 64 for every message type aligned to at most 64 bytes.
template <ring_message Req, ring_message Rsp>
inline constexpr std::size_t sring_header_bytes = detail::slots_offset<sring<Req, Rsp>>();

/// Slots in a shared area of `bytes` bytes, as __CONST_RING_SIZE computes it: as many
/// entries as fit after the header, rounded down to a power of two.
template <ring_message Req, ring_message Rsp>
constexpr ring_idx ring_size(std::size_t bytes) noexcept {
  constexpr std::size_t header = sring_header_bytes<Req, Rsp>;
  if (bytes <= header) return 0;
  const std::size_t n = (bytes - header) / sizeof(sring_entry<Req, Rsp>);
  return round_down_pow2(n > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(n));
}

/// Slots of a ring of 2^order pages (the `ring-page-order` a frontend publishes).
template <ring_message Req, ring_message Rsp>
constexpr ring_idx ring_size_for_order(unsigned order) noexcept {
  return ring_size<Req, Rsp>(ring_bytes(order));
}

namespace detail {

/// What the two ends share: the page, its slots and the size. Private to each end.
template <ring_message Req, ring_message Rsp>
struct ring_view {
  using entry = sring_entry<Req, Rsp>;
  sring<Req, Rsp>* s = nullptr;
  std::byte* slots = nullptr;
  ring_idx size = 0;

  static bool make(std::span<std::byte> mem, ring_view& out) noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(mem.data());
    if (mem.data() == nullptr || addr % alignof(sring<Req, Rsp>) != 0) return false;
    const ring_idx n = ring_size<Req, Rsp>(mem.size());
    if (n == 0) return false;
    out.s = reinterpret_cast<sring<Req, Rsp>*>(mem.data());
    out.slots = mem.data() + sring_header_bytes<Req, Rsp>;
    out.size = n;
    return true;
  }
  // Slot of a free-running index: the index is masked, so any value stays in bounds.
  std::byte* slot(ring_idx i) const noexcept { return slot_at(slots, size - 1, i); }
  // The same from a base and mask the caller keeps in registers across a loop: stores
  // into a slot may alias the ring object, so a loop that re-read slots/size from it
  // would reload them after every slot it writes.
  static std::byte* slot_at(std::byte* base, ring_idx mask, ring_idx i) noexcept {
    return base + static_cast<std::size_t>(i & mask) * sizeof(entry);
  }
};

/// SHARED_RING_INIT, starting both producers at `start` instead of 0.
template <ring_message Req, ring_message Rsp>
inline void shared_ring_init(sring<Req, Rsp>* s, ring_idx start) noexcept {
  // Relaxed: the page is not yet known to the peer; whatever hands it over (grant +
  // xenstore write, or the thread start) orders these stores before the peer's accesses.
  detail::store(s->req_prod, start, std::memory_order_relaxed);
  detail::store(s->rsp_prod, start, std::memory_order_relaxed);
  detail::store(s->req_event, start + 1, std::memory_order_relaxed);
  detail::store(s->rsp_event, start + 1, std::memory_order_relaxed);
  std::memset(s->pvt, 0, sizeof s->pvt);
  std::memset(s->pad, 0, sizeof s->pad);
}

/// The notify test of RING_PUSH_*_AND_CHECK_NOTIFY: did [old+1, new] cross the peer's event?
constexpr bool crossed_event(ring_idx old_prod, ring_idx new_prod, ring_idx event) noexcept {
  return static_cast<ring_idx>(new_prod - event) < static_cast<ring_idx>(new_prod - old_prod);
}

}  // namespace detail

/// The frontend's end of a ring: produces requests, consumes responses.
/// One thread at a time per object; the object holds all private indices (never shared).
template <ring_message Req, ring_message Rsp>
class front_ring {
 public:
  using request_type = Req;
  using response_type = Rsp;

  /// Initialises the shared ring (SHARED_RING_INIT) with both producers at `start`,
  /// then attaches to it. Only the frontend initialises a ring.
  static result<front_ring, ring_error> init(std::span<std::byte> shared,
                                            ring_idx start = 0) noexcept {
    front_ring r;
    if (!detail::ring_view<Req, Rsp>::make(shared, r.v_)) return unexpected{ring_error::bad_memory};
    detail::shared_ring_init(r.v_.s, start);
    r.reset(start);
    return r;
  }

  /// Attaches to a ring whose producers are both at `start` (FRONT_RING_ATTACH), e.g. after
  /// a reconnect where the indices are not zero. Reads nothing from the shared page.
  static result<front_ring, ring_error> attach(std::span<std::byte> shared,
                                              ring_idx start) noexcept {
    front_ring r;
    if (!detail::ring_view<Req, Rsp>::make(shared, r.v_)) return unexpected{ring_error::bad_memory};
    r.reset(start);
    return r;
  }

  front_ring(front_ring&&) noexcept = default;
  front_ring& operator=(front_ring&&) noexcept = default;
  front_ring(const front_ring&) = delete;  // two cursors on one ring would corrupt it
  front_ring& operator=(const front_ring&) = delete;

  /// Number of slots (RING_SIZE).
  ring_idx size() const noexcept { return v_.size; }
  /// The latched error, if the ring is broken.
  std::optional<ring_error> broken() const noexcept {
    if (broken_) return error_;
    return std::nullopt;
  }

  // ---- producing requests ----------------------------------------------------------

  /// Slots we may still claim (RING_FREE_REQUESTS); 0 once the ring is broken.
  ring_idx free_requests() const noexcept {
    const ring_idx used = req_prod_pvt_ - rsp_cons_;
    return used >= capacity_ ? 0 : capacity_ - used;
  }
  bool full() const noexcept { return req_prod_pvt_ - rsp_cons_ >= capacity_; }

  /// Claims the next request slot for the caller to fill in place; nullptr if the ring is
  /// full or broken. The slot is shared memory: write it, never read it back (the peer may
  /// change it). Claimed slots become visible to the peer at the next push.
  Req* claim() noexcept {
    // capacity_ is 0 once broken, so this one test also refuses a broken ring.
    if (req_prod_pvt_ - rsp_cons_ >= capacity_) return nullptr;
    return reinterpret_cast<Req*>(v_.slot(req_prod_pvt_++));
  }
  /// Copies `req` into the next request slot; false if full or broken.
  bool produce(const Req& req) noexcept {
    Req* slot = claim();
    if (slot == nullptr) return false;
    std::memcpy(static_cast<void*>(slot), &req, sizeof(Req));
    return true;
  }
  /// Fills up to `n` request slots in place, calling fill(Req&) once per slot in ring
  /// order, and returns how many it filled: min(n, free_requests()), 0 on a broken ring.
  /// One capacity check per batch. The slot is shared memory the peer can change: write
  /// it, never read it back. `fill` must not call this ring (the private index is kept in
  /// a register and written back once, at the end). Visible to the peer at the next push.
  template <class Fill>
  ring_idx produce_n(ring_idx n, Fill&& fill) noexcept(noexcept(fill(std::declval<Req&>()))) {
    const ring_idx room = free_requests();  // capacity_ is 0 once broken: room 0
    if (n > room) n = room;
    std::byte* const base = v_.slots;
    const ring_idx mask = v_.size - 1;
    ring_idx i = req_prod_pvt_;
    for (const ring_idx end = i + n; i != end; ++i) fill(*reinterpret_cast<Req*>(view::slot_at(base, mask, i)));
    req_prod_pvt_ = i;
    return n;
  }

  /// Requests claimed but not yet pushed.
  ring_idx unpushed() const noexcept { return req_prod_pvt_ - req_published_; }

  /// Publishes every claimed request (RING_PUSH_REQUESTS), without the notify check.
  result<void, ring_error> push() noexcept {
    if (broken_) return unexpected{error_};
    // Release: the request slots written above become visible before the new req_prod;
    // pairs with the backend's acquire load of req_prod (xen_wmb + store in ring.h).
    detail::store(v_.s->req_prod, req_prod_pvt_, std::memory_order_release);
    req_published_ = req_prod_pvt_;
    return {};
  }

  /// Publishes every claimed request and says whether the backend asked to be notified
  /// (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY). Nothing new: no store, no barrier, false.
  result<bool, ring_error> push_and_check_notify() noexcept {
    if (broken_) return unexpected{error_};
    const ring_idx old_prod = req_published_;  // ours, not re-read from the shared page
    const ring_idx new_prod = req_prod_pvt_;
    if (old_prod == new_prod) return false;
    // seq_cst store then seq_cst load: the store->load barrier of notification hold-off
    // (xen_mb in ring.h). It pairs with the backend's seq_cst store of req_event and load
    // of req_prod in its final check: at least one side sees the other's store, so either
    // we notify or it finds the requests. Release is included (slots before req_prod).
    // Cost: one xchg on x86-64 (no extra fence), stlr + ldar on arm64 (no dmb).
    detail::store(v_.s->req_prod, new_prod, std::memory_order_seq_cst);
    req_published_ = new_prod;
    const ring_idx event = detail::load(v_.s->req_event, std::memory_order_seq_cst);
    return detail::crossed_event(old_prod, new_prod, event);
  }

  // ---- consuming responses -----------------------------------------------------------

  /// Responses the backend has published that we have not taken; validates the index.
  result<ring_idx, ring_error> unconsumed_responses() noexcept {
    if (broken_) return unexpected{error_};
    // Acquire: responses counted here may be read next; pairs with the backend's release
    // store of rsp_prod.
    return refresh(detail::load(v_.s->rsp_prod, std::memory_order_acquire));
  }

  /// Copies the next response out of the ring (once) and returns the copy; nullopt if none.
  result<std::optional<Rsp>, ring_error> take_response() noexcept {
    if (broken_) return unexpected{error_};
    if (rsp_seen_ == rsp_cons_) {
      // Acquire: the response slots up to rsp_prod are read after it; pairs with the
      // backend's release store of rsp_prod.
      auto n = refresh(detail::load(v_.s->rsp_prod, std::memory_order_acquire));
      if (!n) return unexpected{n.error()};
      if (*n == 0) return std::optional<Rsp>{};
    }
    Rsp out;
    detail::copy_once(out, v_.slot(rsp_cons_++));
    return std::optional<Rsp>{out};
  }

  /// Copies up to out.size() responses into `out`; returns how many.
  result<ring_idx, ring_error> take_responses(std::span<Rsp> out) noexcept {
    return consume_responses(out.size() > 0xffffffffu ? 0xffffffffu : static_cast<ring_idx>(out.size()),
                             [p = out.data()](const Rsp& r) mutable { *p++ = r; });
  }

  /// Calls handle(const Rsp&) on a private copy of each of up to `max` responses (bounded
  /// work per call); returns how many. The copy is taken once; the slot is never re-read.
  template <class Handle>
  result<ring_idx, ring_error> consume_responses(ring_idx max, Handle&& handle) noexcept(
      noexcept(handle(std::declval<const Rsp&>()))) {
    if (broken_) return unexpected{error_};
    // Acquire: pairs with the backend's release store of rsp_prod (slots before index).
    auto avail = refresh(detail::load(v_.s->rsp_prod, std::memory_order_acquire));
    if (!avail) return avail;
    const ring_idx n = *avail < max ? *avail : max;
    // Base, mask and index live in locals: the handler may store anywhere, and the
    // compiler would otherwise reload them from *this after each call. The index is
    // still written back before each call, so the handler sees a consistent ring.
    std::byte* const base = v_.slots;
    const ring_idx mask = v_.size - 1;
    ring_idx i = rsp_cons_;
    for (const ring_idx end = i + n; i != end;) {
      Rsp copy;
      detail::copy_once(copy, view::slot_at(base, mask, i));
      rsp_cons_ = ++i;
      handle(static_cast<const Rsp&>(copy));
    }
    return n;
  }

  /// The final check before sleeping (RING_FINAL_CHECK_FOR_RESPONSES), generalised: asks
  /// the backend to notify us once `k` responses are unconsumed (rsp_event = rsp_cons + k).
  /// True: do not sleep, at least k responses are there. False: sleep until notified.
  /// k is lowered to the number of requests still unanswered, since no more responses can
  /// come; even so a backend may hold back answers, so with k > 1 bound the sleep by a
  /// timeout and consume what is there when it expires. k == 0 is treated as 1.
  result<bool, ring_error> final_check(ring_idx k = 1) noexcept {
    if (broken_) return unexpected{error_};
    const ring_idx can_come = req_published_ - rsp_cons_;
    if (k > can_come) k = can_come;
    if (k == 0) k = 1;
    // Acquire: as in consume_responses; a cheap first look before the barrier.
    auto n = refresh(detail::load(v_.s->rsp_prod, std::memory_order_acquire));
    if (!n) return unexpected{n.error()};
    if (*n >= k) return true;
    // seq_cst store of rsp_event then seq_cst load of rsp_prod: the store->load barrier
    // (xen_mb). Pairs with the backend's seq_cst store of rsp_prod and load of rsp_event
    // when it pushes: either it sees our event and notifies, or we see its responses.
    detail::store(v_.s->rsp_event, rsp_cons_ + k, std::memory_order_seq_cst);
    auto again = refresh(detail::load(v_.s->rsp_prod, std::memory_order_seq_cst));
    if (!again) return unexpected{again.error()};
    return *again >= k;
  }

  /// Requests pushed or claimed whose responses we have not taken yet.
  ring_idx outstanding() const noexcept { return req_prod_pvt_ - rsp_cons_; }
  /// Our private indices (req_prod_pvt, rsp_cons), for diagnostics and reconnects.
  ring_idx req_prod_pvt() const noexcept { return req_prod_pvt_; }
  ring_idx rsp_cons() const noexcept { return rsp_cons_; }

 private:
  front_ring() noexcept = default;

  void reset(ring_idx start) noexcept {
    req_prod_pvt_ = req_published_ = rsp_cons_ = rsp_seen_ = start;
    capacity_ = v_.size;
    broken_ = false;
  }

  // Validates a producer index read once from the page. The backend can only answer
  // requests we published: responses beyond req_published_ mean the index ran ahead
  // (this contains RING_RESPONSE_PROD_OVERFLOW, since we never publish more than size),
  // and a value behind rsp_cons wraps to a huge count and fails the same test.
  result<ring_idx, ring_error> refresh(ring_idx rsp_prod) noexcept {
    const ring_idx avail = rsp_prod - rsp_cons_;
    if (avail > req_published_ - rsp_cons_) return fail(ring_error::prod_overflow);
    rsp_seen_ = rsp_prod;
    return avail;
  }
  result<ring_idx, ring_error> fail(ring_error e) noexcept {
    broken_ = true;
    error_ = e;
    capacity_ = 0;
    return unexpected{e};
  }

  using view = detail::ring_view<Req, Rsp>;
  detail::ring_view<Req, Rsp> v_{};
  ring_idx req_prod_pvt_ = 0;   // next request slot to claim
  ring_idx req_published_ = 0;  // last value we stored to req_prod
  ring_idx rsp_cons_ = 0;       // next response to take
  ring_idx rsp_seen_ = 0;       // last validated rsp_prod
  ring_idx capacity_ = 0;       // size, or 0 once broken (keeps claim() to one test)
  bool broken_ = false;
  ring_error error_ = ring_error::prod_overflow;
};

/// The backend's end of a ring: consumes requests, produces responses.
template <ring_message Req, ring_message Rsp>
class back_ring {
 public:
  using request_type = Req;
  using response_type = Rsp;

  /// Attaches to a ring the frontend initialised, with both producers at `start`
  /// (BACK_RING_ATTACH; BACK_RING_INIT is start = 0).
  static result<back_ring, ring_error> attach(std::span<std::byte> shared,
                                             ring_idx start = 0) noexcept {
    back_ring r;
    if (!detail::ring_view<Req, Rsp>::make(shared, r.v_)) return unexpected{ring_error::bad_memory};
    r.reset(start);
    return r;
  }

  /// Attaches at the ring's current rsp_prod, as a restarted backend does
  /// (BACK_RING_ATTACH(..., sring->rsp_prod)). Any value is safe: later calls validate
  /// req_prod against it.
  static result<back_ring, ring_error> resume(std::span<std::byte> shared) noexcept {
    back_ring r;
    if (!detail::ring_view<Req, Rsp>::make(shared, r.v_)) return unexpected{ring_error::bad_memory};
    // Relaxed: read once to pick a starting point; nothing is read from slots based on it
    // until a later acquire load of req_prod.
    r.reset(detail::load(r.v_.s->rsp_prod, std::memory_order_relaxed));
    return r;
  }

  back_ring(back_ring&&) noexcept = default;
  back_ring& operator=(back_ring&&) noexcept = default;
  back_ring(const back_ring&) = delete;
  back_ring& operator=(const back_ring&) = delete;

  ring_idx size() const noexcept { return v_.size; }
  std::optional<ring_error> broken() const noexcept {
    if (broken_) return error_;
    return std::nullopt;
  }

  // ---- consuming requests ------------------------------------------------------------

  /// Requests the frontend has published that we have not taken; validates the index.
  result<ring_idx, ring_error> unconsumed_requests() noexcept {
    if (broken_) return unexpected{error_};
    // Acquire: pairs with the frontend's release store of req_prod.
    return refresh(detail::load(v_.s->req_prod, std::memory_order_acquire));
  }

  /// Copies the next request out of the ring (once); nullopt if none.
  result<std::optional<Req>, ring_error> take_request() noexcept {
    if (broken_) return unexpected{error_};
    if (req_seen_ == req_cons_) {
      // Acquire: request slots are read after req_prod; pairs with the frontend's release.
      auto n = refresh(detail::load(v_.s->req_prod, std::memory_order_acquire));
      if (!n) return unexpected{n.error()};
      if (*n == 0) return std::optional<Req>{};
    }
    Req out;
    detail::copy_once(out, v_.slot(req_cons_++));
    return std::optional<Req>{out};
  }

  /// Copies up to out.size() requests into `out`; returns how many.
  result<ring_idx, ring_error> take_requests(std::span<Req> out) noexcept {
    return consume_requests(out.size() > 0xffffffffu ? 0xffffffffu : static_cast<ring_idx>(out.size()),
                            [p = out.data()](const Req& r) mutable { *p++ = r; });
  }

  /// Calls handle(const Req&) on a private copy of each of up to `max` requests.
  template <class Handle>
  result<ring_idx, ring_error> consume_requests(ring_idx max, Handle&& handle) noexcept(
      noexcept(handle(std::declval<const Req&>()))) {
    if (broken_) return unexpected{error_};
    // Acquire: pairs with the frontend's release store of req_prod (slots before index).
    auto avail = refresh(detail::load(v_.s->req_prod, std::memory_order_acquire));
    if (!avail) return avail;
    const ring_idx n = *avail < max ? *avail : max;
    std::byte* const base = v_.slots;  // locals: see front_ring::consume_responses
    const ring_idx mask = v_.size - 1;
    ring_idx i = req_cons_;
    for (const ring_idx end = i + n; i != end;) {
      Req copy;
      detail::copy_once(copy, view::slot_at(base, mask, i));
      req_cons_ = ++i;  // before the call: the handler may claim() the response slot
      handle(static_cast<const Req&>(copy));
    }
    return n;
  }

  /// The synchronous backend loop: for each of up to `max` published requests, copies the
  /// request once into private memory, then calls fn(const Req& copy, Rsp& slot) to write
  /// its response in place into the response slot. Returns how many it answered.
  /// Needs every earlier request answered (awaiting_response() == 0), else it answers
  /// nothing and returns 0: responses go out in request order, so each response takes
  /// the slot its request came from (the private copy is taken first). The slot is shared
  /// memory: write it, never read it back. `fn` must not call this ring. Responses become
  /// visible at the next push.
  template <class Fn>
  result<ring_idx, ring_error> respond(ring_idx max, Fn&& fn) noexcept(
      noexcept(fn(std::declval<const Req&>(), std::declval<Rsp&>()))) {
    if (broken_) return unexpected{error_};
    if (req_cons_ != rsp_prod_pvt_) return ring_idx{0};
    // Acquire: pairs with the frontend's release store of req_prod (slots before index).
    auto avail = refresh(detail::load(v_.s->req_prod, std::memory_order_acquire));
    if (!avail) return avail;
    // refresh() bounded avail by the ring size, so every response slot written below
    // belongs to a request taken in this loop: the frontend cannot make us overrun.
    const ring_idx n = *avail < max ? *avail : max;
    std::byte* const base = v_.slots;
    const ring_idx mask = v_.size - 1;
    ring_idx i = req_cons_;
    for (const ring_idx end = i + n; i != end; ++i) {
      std::byte* const slot = view::slot_at(base, mask, i);
      Req copy;
      detail::copy_once(copy, slot);
      fn(static_cast<const Req&>(copy), *reinterpret_cast<Rsp*>(slot));
    }
    req_cons_ = rsp_prod_pvt_ = i;
    return n;
  }

  /// RING_FINAL_CHECK_FOR_REQUESTS generalised to "notify me after k more requests"
  /// (req_event = req_cons + k). True: do not sleep. False: sleep until notified.
  /// With k > 1 a frontend that waits for our answer after fewer than k requests (any
  /// 1-for-1 user of the C macros) never crosses the event: bound the sleep by a timeout
  /// and consume what is there when it expires. k is capped at the ring size; 0 means 1.
  result<bool, ring_error> final_check(ring_idx k = 1) noexcept {
    if (broken_) return unexpected{error_};
    if (k == 0) k = 1;
    if (k > v_.size) k = v_.size;
    // Acquire: first look, as in consume_requests.
    auto n = refresh(detail::load(v_.s->req_prod, std::memory_order_acquire));
    if (!n) return unexpected{n.error()};
    if (*n >= k) return true;
    // seq_cst store of req_event then seq_cst load of req_prod (store->load, xen_mb);
    // pairs with the frontend's seq_cst store of req_prod and load of req_event.
    detail::store(v_.s->req_event, req_cons_ + k, std::memory_order_seq_cst);
    auto again = refresh(detail::load(v_.s->req_prod, std::memory_order_seq_cst));
    if (!again) return unexpected{again.error()};
    return *again >= k;
  }

  // ---- producing responses -----------------------------------------------------------

  /// Requests taken that still await a response: the slots we may answer into.
  ring_idx awaiting_response() const noexcept { return req_cons_ - rsp_prod_pvt_; }

  /// Claims the next response slot to fill in place; nullptr if every taken request has
  /// been answered or the ring is broken. Write the slot, never read it back.
  Rsp* claim() noexcept {
    if ((rsp_prod_pvt_ == req_cons_) | broken_) return nullptr;
    return reinterpret_cast<Rsp*>(v_.slot(rsp_prod_pvt_++));
  }
  /// Copies `rsp` into the next response slot; false if nothing awaits a response.
  bool produce(const Rsp& rsp) noexcept {
    Rsp* slot = claim();
    if (slot == nullptr) return false;
    std::memcpy(static_cast<void*>(slot), &rsp, sizeof(Rsp));
    return true;
  }
  ring_idx unpushed() const noexcept { return rsp_prod_pvt_ - rsp_published_; }

  /// Publishes every claimed response (RING_PUSH_RESPONSES).
  result<void, ring_error> push() noexcept {
    if (broken_) return unexpected{error_};
    // Release: response slots before rsp_prod; pairs with the frontend's acquire load.
    detail::store(v_.s->rsp_prod, rsp_prod_pvt_, std::memory_order_release);
    rsp_published_ = rsp_prod_pvt_;
    return {};
  }

  /// Publishes responses and says whether the frontend asked to be notified
  /// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
  result<bool, ring_error> push_and_check_notify() noexcept {
    if (broken_) return unexpected{error_};
    const ring_idx old_prod = rsp_published_;
    const ring_idx new_prod = rsp_prod_pvt_;
    if (old_prod == new_prod) return false;
    // seq_cst store then seq_cst load (store->load barrier, includes release of the slots);
    // pairs with the frontend's seq_cst store of rsp_event and load of rsp_prod.
    detail::store(v_.s->rsp_prod, new_prod, std::memory_order_seq_cst);
    rsp_published_ = new_prod;
    const ring_idx event = detail::load(v_.s->rsp_event, std::memory_order_seq_cst);
    return detail::crossed_event(old_prod, new_prod, event);
  }

  ring_idx req_cons() const noexcept { return req_cons_; }
  ring_idx rsp_prod_pvt() const noexcept { return rsp_prod_pvt_; }

 private:
  back_ring() noexcept = default;

  void reset(ring_idx start) noexcept {
    req_cons_ = req_seen_ = rsp_prod_pvt_ = rsp_published_ = start;
    broken_ = false;
  }

  // The frontend may have at most `size` requests without a response: req_prod -
  // rsp_prod_pvt > size is RING_REQUEST_PROD_OVERFLOW. Written relative to req_cons, one
  // unsigned test also catches a req_prod that went back behind req_cons.
  result<ring_idx, ring_error> refresh(ring_idx req_prod) noexcept {
    const ring_idx avail = req_prod - req_cons_;
    const ring_idx room = v_.size - (req_cons_ - rsp_prod_pvt_);  // our own indices: trusted
    if (avail > room) {
      broken_ = true;
      error_ = ring_error::prod_overflow;
      return unexpected{error_};
    }
    req_seen_ = req_prod;
    return avail;
  }

  using view = detail::ring_view<Req, Rsp>;
  detail::ring_view<Req, Rsp> v_{};
  ring_idx req_cons_ = 0;       // next request to take
  ring_idx req_seen_ = 0;       // last validated req_prod
  ring_idx rsp_prod_pvt_ = 0;   // next response slot to claim
  ring_idx rsp_published_ = 0;  // last value we stored to rsp_prod
  bool broken_ = false;
  ring_error error_ = ring_error::prod_overflow;
};

XENBUS_END_NAMESPACE
