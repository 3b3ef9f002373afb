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
concept ring_message =
    std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> && std::is_trivially_default_constructible_v<T>;

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

/*
 * One core for both ends of a request ring.
 *
 * A ring page carries two directions, requests (frontend to backend) and responses (back
 * to front), and each end produces one of them and consumes the other. Per direction the
 * page holds a producer index (req_prod, rsp_prod) that only its producer writes, and an
 * event index (req_event, rsp_event) that only its consumer writes: "notify me once the
 * producer index passes this". There is no consumer index on the page: a request slot is
 * free again once its response has been taken, and a response goes into the slot its
 * request came from, so each producer's window follows from its own private indices.
 *
 * The accesses, numbered; each access in the code below says which one it is.
 *  (1) Producer pushes: writes its slots, then a release store of its producer index.
 *  (2) Consumer looks: an acquire load of the peer's producer index, then copies each
 *      slot below it out once (RING_COPY_*). (1) pairs with (2): the slots are complete
 *      before the consumer can see the index that covers them (ring.h: xen_wmb before the
 *      index, xen_rmb after it).
 *  Notification hold-off (ring.h's RING_PUSH_*_AND_CHECK_NOTIFY and
 *  RING_FINAL_CHECK_FOR_*): the consumer sleeps on the event channel, so the producer
 *  must notify whenever the consumer may be asleep, and should not otherwise.
 *  (3) Producer: seq_cst store of its producer index (also the release of (1)), then
 *  (4) seq_cst load of the consumer's event index; notify if the push crossed it.
 *  (5) Consumer, before sleeping: seq_cst store of its event index (cons + k), then
 *  (6) seq_cst load of the producer index; sleep only if fewer than k are there.
 *  Each side stores one variable and then loads the other's. All four accesses are
 *  seq_cst, so they have one total order: if (4) comes before (5), then (3) precedes (6)
 *  and the consumer sees the new slots and does not sleep; otherwise (4) sees the new
 *  event and the producer notifies. No wakeup is lost. ring.h has xen_mb() between the
 *  store and the load; a seq_cst store and load are one xchg and a mov on x86-64, stlr
 *  and ldar on arm64, with no separate fence.
 *
 * The peer is not trusted. The only values read from the page are the peer's producer
 * index, checked by refresh() against the window the peer can be in (a bad one latches
 * the ring broken with prod_overflow: every later call returns it, and claim() refuses),
 * and the peer's event index, which only decides whether we notify: any value is safe.
 * Slots are copied out once and only the copy is used; our own indices are private and
 * never re-read from the page.
 */
enum class ring_side : std::uint8_t { front, back };

/// The state and the protocol of one end; front_ring and back_ring keep one as a member
/// and add what differs: which slots they may claim, and the batch loops.
template <ring_message Req, ring_message Rsp, ring_side Side>
struct ring_core {
  static constexpr bool front = Side == ring_side::front;
  using page = sring<Req, Rsp>;
  using view = ring_view<Req, Rsp>;
  using in_msg = std::conditional_t<front, Rsp, Req>;  // what this end consumes
  // The page's indices seen from this end: ours, and the event the peer sets on it; the
  // peer's, and the event we set on it.
  static constexpr ring_idx page::*out_prod = front ? &page::req_prod : &page::rsp_prod;
  static constexpr ring_idx page::*out_event = front ? &page::req_event : &page::rsp_event;
  static constexpr ring_idx page::*in_prod = front ? &page::rsp_prod : &page::req_prod;
  static constexpr ring_idx page::*in_event = front ? &page::rsp_event : &page::req_event;

  view v{};
  ring_idx prod_pvt = 0;   // next slot we produce into (req_prod_pvt, rsp_prod_pvt)
  ring_idx published = 0;  // last value we stored to our producer index
  ring_idx cons = 0;       // next slot of the peer's we take (rsp_cons, req_cons)
  ring_idx seen = 0;       // last validated value of the peer's producer index
  ring_idx capacity = 0;   // size, or 0 once broken (keeps front_ring::claim to one test)
  bool broken = false;
  ring_error error = ring_error::prod_overflow;

  bool attach(std::span<std::byte> mem, ring_idx start) noexcept {
    if (!view::make(mem, v)) return false;
    reset(start);
    return true;
  }
  void reset(ring_idx start) noexcept {
    prod_pvt = published = cons = seen = start;
    capacity = v.size;
    broken = false;
  }
  std::optional<ring_error> broken_by() const noexcept {
    if (broken) return error;
    return std::nullopt;
  }

  // How far the peer's producer index may be ahead of `cons`. Responses only answer
  // requests we published (this contains RING_RESPONSE_PROD_OVERFLOW, since we never
  // publish more than size). Requests may fill every slot that does not hold a request
  // still awaiting our response (RING_REQUEST_PROD_OVERFLOW). Our own indices: trusted.
  ring_idx window() const noexcept {
    if constexpr (front)
      return published - cons;
    else
      return v.size - (cons - prod_pvt);
  }
  // Validates a producer index read once from the page. Relative to cons, one unsigned
  // test also catches an index that went back behind cons (it wraps to a huge count).
  result<ring_idx, ring_error> refresh(ring_idx peer_prod) noexcept {
    const ring_idx avail = peer_prod - cons;
    if (avail > window()) return fail(ring_error::prod_overflow);
    seen = peer_prod;
    return avail;
  }
  result<ring_idx, ring_error> fail(ring_error e) noexcept {
    broken = true;
    error = e;
    capacity = 0;
    return unexpected{e};
  }

  // What the peer has published that we have not taken.
  result<ring_idx, ring_error> look() noexcept {
    if (broken) return unexpected{error};
    // (2) Acquire: the slots counted here are read after it; pairs with the peer's (1)/(3).
    return refresh(detail::load(v.s->*in_prod, std::memory_order_acquire));
  }

  result<void, ring_error> push() noexcept {
    if (broken) return unexpected{error};
    // (1) Release: our slots are visible before the new index; pairs with the peer's (2).
    detail::store(v.s->*out_prod, prod_pvt, std::memory_order_release);
    published = prod_pvt;
    return {};
  }

  // Nothing new to publish: no store, no barrier, no notification.
  result<bool, ring_error> push_and_check_notify() noexcept {
    if (broken) return unexpected{error};
    const ring_idx old_prod = published;  // ours, not re-read from the page
    const ring_idx new_prod = prod_pvt;
    if (old_prod == new_prod) return false;
    // (3) seq_cst store: publishes the slots as (1) does, before (4); pairs with the peer's (2), (6).
    detail::store(v.s->*out_prod, new_prod, std::memory_order_seq_cst);
    published = new_prod;
    // (4) seq_cst load of the peer's event, after (3); pairs with the peer's (5).
    const ring_idx event = detail::load(v.s->*out_event, std::memory_order_seq_cst);
    return crossed_event(old_prod, new_prod, event);
  }

  // The final check before sleeping, asking for a notification at cons + k (k >= 1,
  // already bounded by the end). True: at least k are there, do not sleep.
  result<bool, ring_error> final_check(ring_idx k) noexcept {
    auto n = look();  // a cheap first look, before the barrier
    if (!n) return unexpected{n.error()};
    if (*n >= k) return true;
    // (5) seq_cst store of our event, before (6); pairs with the peer's (4).
    detail::store(v.s->*in_event, cons + k, std::memory_order_seq_cst);
    // (6) seq_cst load of the peer's index, after (5); pairs with the peer's (3).
    auto again = refresh(detail::load(v.s->*in_prod, std::memory_order_seq_cst));
    if (!again) return unexpected{again.error()};
    return *again >= k;
  }

  // Copies the next message out of the ring (once); nullopt if none.
  result<std::optional<in_msg>, ring_error> take() noexcept {
    if (broken) return unexpected{error};
    if (seen == cons) {
      auto n = look();
      if (!n) return unexpected{n.error()};
      if (*n == 0) return std::optional<in_msg>{};
    }
    in_msg out;
    detail::copy_once(out, v.slot(cons++));
    return std::optional<in_msg>{out};
  }

  // Calls handle(const in_msg&) on a private copy of each of up to `max` messages.
  template <class Handle>
  result<ring_idx, ring_error> consume(ring_idx max,
                                       Handle&& handle) noexcept(noexcept(handle(std::declval<const in_msg&>()))) {
    auto avail = look();
    if (!avail) return avail;
    const ring_idx n = *avail < max ? *avail : max;
    // Base, mask and index live in locals: the handler may store anywhere, and the
    // compiler would otherwise reload them from *this after each call. The index is
    // still written back before each call, so the handler sees a consistent ring (a
    // backend's handler may claim() the response slot of the request it is given).
    std::byte* const base = v.slots;
    const ring_idx mask = v.size - 1;
    ring_idx i = cons;
    for (const ring_idx end = i + n; i != end;) {
      in_msg copy;
      detail::copy_once(copy, view::slot_at(base, mask, i));
      cons = ++i;
      handle(static_cast<const in_msg&>(copy));
    }
    return n;
  }
};

constexpr ring_idx clamp_count(std::size_t n) noexcept {
  return n > 0xffffffffu ? 0xffffffffu : static_cast<ring_idx>(n);
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
  static result<front_ring, ring_error> init(std::span<std::byte> shared, ring_idx start = 0) noexcept {
    front_ring r;
    if (!r.c_.attach(shared, start)) return unexpected{ring_error::bad_memory};
    detail::shared_ring_init(r.c_.v.s, start);
    return r;
  }

  /// Attaches to a ring whose producers are both at `start` (FRONT_RING_ATTACH), e.g. after
  /// a reconnect where the indices are not zero. Reads nothing from the shared page.
  static result<front_ring, ring_error> attach(std::span<std::byte> shared, ring_idx start) noexcept {
    front_ring r;
    if (!r.c_.attach(shared, start)) return unexpected{ring_error::bad_memory};
    return r;
  }

  front_ring(front_ring&&) noexcept = default;
  front_ring& operator=(front_ring&&) noexcept = default;
  front_ring(const front_ring&) = delete;  // two cursors on one ring would corrupt it
  front_ring& operator=(const front_ring&) = delete;

  /// Number of slots (RING_SIZE).
  ring_idx size() const noexcept { return c_.v.size; }
  /// The latched error, if the ring is broken.
  std::optional<ring_error> broken() const noexcept { return c_.broken_by(); }

  // ---- producing requests ----------------------------------------------------------

  /// Slots we may still claim (RING_FREE_REQUESTS); 0 once the ring is broken.
  ring_idx free_requests() const noexcept {
    const ring_idx used = c_.prod_pvt - c_.cons;
    return used >= c_.capacity ? 0 : c_.capacity - used;
  }
  bool full() const noexcept { return c_.prod_pvt - c_.cons >= c_.capacity; }

  /// Claims the next request slot for the caller to fill in place; nullptr if the ring is
  /// full or broken. The slot is shared memory: write it, never read it back (the peer may
  /// change it). Claimed slots become visible to the peer at the next push.
  Req* claim() noexcept {
    // capacity is 0 once broken, so this one test also refuses a broken ring.
    if (c_.prod_pvt - c_.cons >= c_.capacity) return nullptr;
    return reinterpret_cast<Req*>(c_.v.slot(c_.prod_pvt++));
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
    const ring_idx room = free_requests();  // capacity is 0 once broken: room 0
    if (n > room) n = room;
    std::byte* const base = c_.v.slots;
    const ring_idx mask = c_.v.size - 1;
    ring_idx i = c_.prod_pvt;
    for (const ring_idx end = i + n; i != end; ++i) fill(*reinterpret_cast<Req*>(view::slot_at(base, mask, i)));
    c_.prod_pvt = i;
    return n;
  }

  /// Requests claimed but not yet pushed.
  ring_idx unpushed() const noexcept { return c_.prod_pvt - c_.published; }

  /// Publishes every claimed request (RING_PUSH_REQUESTS), without the notify check.
  result<void, ring_error> push() noexcept { return c_.push(); }

  /// Publishes every claimed request and says whether the backend asked to be notified
  /// (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY). Nothing new: no store, no barrier, false.
  result<bool, ring_error> push_and_check_notify() noexcept { return c_.push_and_check_notify(); }

  // ---- consuming responses -----------------------------------------------------------

  /// Responses the backend has published that we have not taken; validates the index.
  result<ring_idx, ring_error> unconsumed_responses() noexcept { return c_.look(); }

  /// Copies the next response out of the ring (once) and returns the copy; nullopt if none.
  result<std::optional<Rsp>, ring_error> take_response() noexcept { return c_.take(); }

  /// Copies up to out.size() responses into `out`; returns how many.
  result<ring_idx, ring_error> take_responses(std::span<Rsp> out) noexcept {
    return c_.consume(detail::clamp_count(out.size()), [p = out.data()](const Rsp& r) mutable { *p++ = r; });
  }

  /// Calls handle(const Rsp&) on a private copy of each of up to `max` responses (bounded
  /// work per call); returns how many. The copy is taken once; the slot is never re-read.
  template <class Handle>
  result<ring_idx, ring_error> consume_responses(ring_idx max, Handle&& handle) noexcept(
      noexcept(handle(std::declval<const Rsp&>()))) {
    return c_.consume(max, handle);
  }

  /// The final check before sleeping (RING_FINAL_CHECK_FOR_RESPONSES), generalised: asks
  /// the backend to notify us once `k` responses are unconsumed (rsp_event = rsp_cons + k).
  /// True: do not sleep, at least k responses are there. False: sleep until notified.
  /// k is lowered to the number of requests still unanswered, since no more responses can
  /// come; even so a backend may hold back answers, so with k > 1 bound the sleep by a
  /// timeout and consume what is there when it expires. k == 0 is treated as 1.
  result<bool, ring_error> final_check(ring_idx k = 1) noexcept {
    const ring_idx can_come = c_.published - c_.cons;
    if (k > can_come) k = can_come;
    if (k == 0) k = 1;
    return c_.final_check(k);
  }

  /// Requests pushed or claimed whose responses we have not taken yet.
  ring_idx outstanding() const noexcept { return c_.prod_pvt - c_.cons; }
  /// Our private indices (req_prod_pvt, rsp_cons), for diagnostics and reconnects.
  ring_idx req_prod_pvt() const noexcept { return c_.prod_pvt; }
  ring_idx rsp_cons() const noexcept { return c_.cons; }

 private:
  front_ring() noexcept = default;

  using view = detail::ring_view<Req, Rsp>;
  detail::ring_core<Req, Rsp, detail::ring_side::front> c_{};
};

/// The backend's end of a ring: consumes requests, produces responses.
template <ring_message Req, ring_message Rsp>
class back_ring {
 public:
  using request_type = Req;
  using response_type = Rsp;

  /// Attaches to a ring the frontend initialised, with both producers at `start`
  /// (BACK_RING_ATTACH; BACK_RING_INIT is start = 0).
  static result<back_ring, ring_error> attach(std::span<std::byte> shared, ring_idx start = 0) noexcept {
    back_ring r;
    if (!r.c_.attach(shared, start)) return unexpected{ring_error::bad_memory};
    return r;
  }

  /// Attaches at the ring's current rsp_prod, as a restarted backend does
  /// (BACK_RING_ATTACH(..., sring->rsp_prod)). Any value is safe: later calls validate
  /// req_prod against it.
  static result<back_ring, ring_error> resume(std::span<std::byte> shared) noexcept {
    back_ring r;
    if (!r.c_.attach(shared, 0)) return unexpected{ring_error::bad_memory};
    // Relaxed: read once to pick a starting point; nothing is read from slots based on it
    // until a later (2) acquire load of req_prod.
    r.c_.reset(detail::load(r.c_.v.s->rsp_prod, std::memory_order_relaxed));
    return r;
  }

  back_ring(back_ring&&) noexcept = default;
  back_ring& operator=(back_ring&&) noexcept = default;
  back_ring(const back_ring&) = delete;
  back_ring& operator=(const back_ring&) = delete;

  ring_idx size() const noexcept { return c_.v.size; }
  std::optional<ring_error> broken() const noexcept { return c_.broken_by(); }

  // ---- consuming requests ------------------------------------------------------------

  /// Requests the frontend has published that we have not taken; validates the index.
  result<ring_idx, ring_error> unconsumed_requests() noexcept { return c_.look(); }

  /// Copies the next request out of the ring (once); nullopt if none.
  result<std::optional<Req>, ring_error> take_request() noexcept { return c_.take(); }

  /// Copies up to out.size() requests into `out`; returns how many.
  result<ring_idx, ring_error> take_requests(std::span<Req> out) noexcept {
    return c_.consume(detail::clamp_count(out.size()), [p = out.data()](const Req& r) mutable { *p++ = r; });
  }

  /// Calls handle(const Req&) on a private copy of each of up to `max` requests.
  template <class Handle>
  result<ring_idx, ring_error> consume_requests(ring_idx max, Handle&& handle) noexcept(
      noexcept(handle(std::declval<const Req&>()))) {
    return c_.consume(max, handle);
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
  result<ring_idx, ring_error> respond(ring_idx max, Fn&& fn) noexcept(noexcept(fn(std::declval<const Req&>(),
                                                                                   std::declval<Rsp&>()))) {
    if (c_.broken) return unexpected{c_.error};
    if (c_.cons != c_.prod_pvt) return ring_idx{0};
    auto avail = c_.look();
    if (!avail) return avail;
    // The window bounded avail by the ring size, so every response slot written below
    // belongs to a request taken in this loop: the frontend cannot make us overrun.
    const ring_idx n = *avail < max ? *avail : max;
    std::byte* const base = c_.v.slots;
    const ring_idx mask = c_.v.size - 1;
    ring_idx i = c_.cons;
    for (const ring_idx end = i + n; i != end; ++i) {
      std::byte* const slot = view::slot_at(base, mask, i);
      Req copy;
      detail::copy_once(copy, slot);
      fn(static_cast<const Req&>(copy), *reinterpret_cast<Rsp*>(slot));
    }
    c_.cons = c_.prod_pvt = i;
    return n;
  }

  /// RING_FINAL_CHECK_FOR_REQUESTS generalised to "notify me after k more requests"
  /// (req_event = req_cons + k). True: do not sleep. False: sleep until notified.
  /// With k > 1 a frontend that waits for our answer after fewer than k requests (any
  /// 1-for-1 user of the C macros) never crosses the event: bound the sleep by a timeout
  /// and consume what is there when it expires. k is capped at the ring size; 0 means 1.
  result<bool, ring_error> final_check(ring_idx k = 1) noexcept {
    if (k == 0) k = 1;
    if (k > c_.v.size) k = c_.v.size;
    return c_.final_check(k);
  }

  // ---- producing responses -----------------------------------------------------------

  /// Requests taken that still await a response: the slots we may answer into.
  ring_idx awaiting_response() const noexcept { return c_.cons - c_.prod_pvt; }

  /// Claims the next response slot to fill in place; nullptr if every taken request has
  /// been answered or the ring is broken. Write the slot, never read it back.
  Rsp* claim() noexcept {
    if ((c_.prod_pvt == c_.cons) | c_.broken) return nullptr;
    return reinterpret_cast<Rsp*>(c_.v.slot(c_.prod_pvt++));
  }
  /// Copies `rsp` into the next response slot; false if nothing awaits a response.
  bool produce(const Rsp& rsp) noexcept {
    Rsp* slot = claim();
    if (slot == nullptr) return false;
    std::memcpy(static_cast<void*>(slot), &rsp, sizeof(Rsp));
    return true;
  }
  ring_idx unpushed() const noexcept { return c_.prod_pvt - c_.published; }

  /// Publishes every claimed response (RING_PUSH_RESPONSES).
  result<void, ring_error> push() noexcept { return c_.push(); }

  /// Publishes responses and says whether the frontend asked to be notified
  /// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
  result<bool, ring_error> push_and_check_notify() noexcept { return c_.push_and_check_notify(); }

  ring_idx req_cons() const noexcept { return c_.cons; }
  ring_idx rsp_prod_pvt() const noexcept { return c_.prod_pvt; }

 private:
  back_ring() noexcept = default;

  using view = detail::ring_view<Req, Rsp>;
  detail::ring_core<Req, Rsp, detail::ring_side::back> c_{};
};

XENBUS_END_NAMESPACE
