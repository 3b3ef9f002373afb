// Our rings' two ends and their loops as a driver writes them: xenbus-bench runs them in two threads, the xenlab peer
// (tests/xenlab) in two domains.
#pragma once

#include "payloads.hpp"

#include <xenbus/hosted/ring_wait.hpp>
#include <xenbus/ring/request_ring.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <utility>

extern "C" {
#include "spin.h"
}

namespace xbench {

template <class P>
using front_t = xenbus::front_ring<typename P::request, typename P::response>;
template <class P>
using back_t = xenbus::back_ring<typename P::request, typename P::response>;

// The frontend as a driver writes it with our API: produce_n() fills a batch of request
// slots in place (one capacity check per batch, as the C loop tests RING_FULL), and
// consume_responses() hands out private copies; ids are checked as the C peer checks them.
template <class P>
class frontend {
 public:
  /// Initialises the shared ring on `ring` (our own page: page-aligned, large enough).
  explicit frontend(std::span<std::byte> ring) : ring_(init(ring)) {}

  [[nodiscard]] bool failed() const { return errors_ != 0 || ring_.broken().has_value(); }
  [[nodiscard]] xenbus::ring_idx size() const { return ring_.size(); }
  [[nodiscard]] std::uint64_t in_flight() const { return seq_ - expected_; }

  /// Fills free slots with requests until `limit` are in flight or `end` is reached.
  /// Returns how many it produced.
  std::uint64_t produce_until(std::uint64_t end, std::uint64_t limit) {
    const std::uint64_t in_flight = seq_ - expected_;
    if (seq_ == end || in_flight >= limit) return 0;
    const std::uint64_t want = std::min(end - seq_, limit - in_flight);
    // produce_n stops at the free slots (full: never here, limit <= size; or broken).
    std::uint64_t seq = seq_;
    const xenbus::ring_idx n = ring_.produce_n(static_cast<xenbus::ring_idx>(want),
                                               [&seq](typename P::request& slot) { P::fill(slot, seq++); });
    seq_ = seq;
    return n;
  }

  void push() {
    if (!ring_.push()) ++errors_;
  }

  /// Pushes and says whether the backend asked for a kick.
  bool push_and_check_notify() {
    auto r = ring_.push_and_check_notify();
    if (!r) {
      ++errors_;
      return false;
    }
    return *r;
  }

  /// Takes every response there is; returns how many (0 also when broken: see failed()).
  xenbus::ring_idx consume() {
    auto n = ring_.consume_responses(ring_.size(), [this](const typename P::response& rsp) {
      if (!P::id_matches(rsp, expected_)) ++errors_;
      ++expected_;
    });
    if (!n) {
      ++errors_;
      return 0;
    }
    return *n;
  }

  /// True if responses are waiting (or the ring broke: consume() will say so).
  bool pending() {
    auto n = ring_.unconsumed_responses();
    return !n || *n != 0;
  }

  /// The final check before sleeping; true: there is work, do not sleep.
  bool final_check(xenbus::ring_idx k) {
    auto r = ring_.final_check(k);
    if (!r) {
      ++errors_;
      return true;  // do not sleep on a broken ring; the loop ends on failed()
    }
    return *r;
  }

  [[nodiscard]] std::uint64_t next_seq() const { return seq_; }
  [[nodiscard]] std::uint64_t expected() const { return expected_; }
  /// The ring itself, for the library's wait_for_work().
  front_t<P>& ring() { return ring_; }

 private:
  static front_t<P> init(std::span<std::byte> ring) {
    auto r = front_t<P>::init(ring);
    if (!r) std::abort();  // our own page: page-aligned and large enough
    return std::move(r).value();
  }

  front_t<P> ring_;
  std::uint64_t seq_ = 0;       // id source of the next request
  std::uint64_t expected_ = 0;  // seq of the next response
  std::uint64_t errors_ = 0;
};

// The backend: echoes each request with respond(), which copies the request once and has
// the response written in place into its slot, as the C peer's echo loop does with
// RING_COPY_REQUEST and RING_GET_RESPONSE.
template <class P>
class backend {
 public:
  /// Attaches to the ring the frontend initialised on `ring` (its size decides the slots).
  explicit backend(std::span<std::byte> ring) : ring_(attach(ring)) {}

  /// Echoes every request there is; returns how many, or -1 once the ring is broken.
  long echo() {
    auto n = ring_.respond(ring_.size(),
                           [](const typename P::request& req, typename P::response& rsp) { P::echo(rsp, req); });
    return n ? static_cast<long>(*n) : -1;
  }
  bool push() { return ring_.push().has_value(); }
  /// Pushes; true if the frontend asked for a kick.  A broken ring never asks.
  bool push_and_check_notify() {
    auto r = ring_.push_and_check_notify();
    return r && *r;
  }
  /// True if requests are waiting (or the ring broke: echo() will say so).
  bool pending() {
    auto n = ring_.unconsumed_requests();
    return !n || *n != 0;
  }
  /// True: there is work (or the ring broke: echo() will say so), do not sleep.
  bool final_check() {
    auto r = ring_.final_check();
    return !r || *r;
  }
  /// The ring itself, for the library's wait_for_work().
  back_t<P>& ring() { return ring_; }

 private:
  static back_t<P> attach(std::span<std::byte> ring) {
    auto r = back_t<P>::attach(ring);
    if (!r) std::abort();  // page-aligned and large enough: checked by whoever mapped it
    return std::move(r).value();
  }

  back_t<P> ring_;
};

// ---- Streaming: both ends spin, no notifications -------------------------------------

/// The backend of the stream and the round trip: echoes and pushes until *stop is set and
/// it has no work, spinning when idle. Returns false if the ring broke.
template <class P>
bool back_spin(backend<P>& back, const int* stop) {
  unsigned spins = 0;
  for (;;) {
    const long n = back.echo();
    if (n < 0) return false;
    if (n > 0) {
      back.push();
      continue;
    }
    if (xb_should_stop(stop)) return true;
    xb_spin_relax(&spins);
  }
}

/// The frontend of the stream: keeps the ring full until request `end` is answered.
template <class P>
void stream_front(frontend<P>& front, std::uint64_t end) {
  unsigned spins = 0;
  while (front.expected() != end && !front.failed()) {
    if (front.produce_until(end, front.size()) != 0) front.push();
    if (front.consume() == 0) xb_spin_relax(&spins);
  }
}

// ---- Notification-driven ends ----------------------------------------------------------

/// How the notification-driven ends sleep.
enum class policy {
  standard,   // final_check(): wake me at the next response (RING_FINAL_CHECK_FOR_RESPONSES)
  moderated,  // frontend final_check(k): wake me once every request in flight is
              // answered, with the wait bounded by sleep_bound_ns
  polled,     // the library's wait_for_work(): both ends poll their ring for up to
              // poll_budget before the final check (the frontend's moderated, with its
              // sleep bounded): polling spends CPU to save kicks and wakeups
};

/// The time constants of the moderated and polled policies.
struct notify_tuning {
  long sleep_bound_ns = 200'000;                                         // a moderated sleep ends by itself after this
  std::chrono::nanoseconds poll_budget = std::chrono::microseconds(25);  // polled: look at the ring this long
};

/// What one end of a notification-driven run did.
struct notify_counts {
  std::uint64_t kicks = 0;     // notifications sent
  std::uint64_t waits = 0;     // sleeps (blocking or bounded)
  std::uint64_t timeouts = 0;  // bounded sleeps that ended without a notification
};

/// One end's event channel: kick() notifies the peer, wait() blocks until the peer
/// notified (taking every notification so far), wait_for(ns) does the same for at most
/// ns nanoseconds and says whether a notification came.
template <class L>
concept notify_link = requires(L& l, long ns) {
  l.kick();
  l.wait();
  { l.wait_for(ns) } -> std::convertible_to<bool>;
};

/// The frontend of the notification-driven stream: requests until `end` is answered, at
/// most `outstanding` in flight, sleeping by `pol` when no response is there.
template <class P, notify_link L>
void notify_front(frontend<P>& front, std::uint64_t end, unsigned outstanding, policy pol, const notify_tuning& t,
                  L& link, notify_counts& c) {
  while (front.expected() != end && !front.failed()) {
    if (front.produce_until(end, outstanding) != 0 && front.push_and_check_notify()) {
      link.kick();
      ++c.kicks;
    }
    if (front.consume() != 0) continue;
    if (pol == policy::polled) {
      const xenbus::wait_policy wp{.poll_budget = t.poll_budget,
                                   .batch = static_cast<xenbus::ring_idx>(front.in_flight()),
                                   .sleep_bound = std::chrono::nanoseconds(t.sleep_bound_ns)};
      auto w = xenbus::wait_for_work(front.ring(), wp, [&](std::optional<std::chrono::nanoseconds> bound) {
        ++c.waits;
        if (!bound) {
          link.wait();
          return true;
        }
        return static_cast<bool>(link.wait_for(static_cast<long>(bound->count())));
      });
      if (w && *w == xenbus::wake::timed_out) ++c.timeouts;
      continue;
    }
    if (pol == policy::standard) {
      if (front.final_check(1)) continue;
      link.wait();
    } else {
      const auto k = static_cast<xenbus::ring_idx>(front.in_flight());
      if (front.final_check(k)) continue;
      // k == 1 is the standard contract: any peer notifies. Beyond that an unmodified
      // peer may never reach our event, so the sleep is bounded.
      if (k <= 1)
        link.wait();
      else if (!link.wait_for(t.sleep_bound_ns))
        ++c.timeouts;
    }
    ++c.waits;
  }
}

/// Its backend: echoes each batch and kicks when the frontend asked; when idle, sleeps by
/// `pol` (the moderation is the frontend's: the backend asks for every request). Returns
/// when *stop is set and it has no work: true, or false if the ring broke.
template <class P, notify_link L>
bool notify_back(backend<P>& b, policy pol, const notify_tuning& t, L& link, const int* stop, notify_counts& c) {
  for (;;) {
    const long n = b.echo();
    if (n < 0) return false;
    if (n > 0) {
      if (b.push_and_check_notify()) {
        link.kick();
        ++c.kicks;
      }
      continue;
    }
    if (pol == policy::polled) {
      // The library's poll-then-sleep; the stop flag is checked before each sleep.
      bool stopping = false;
      const xenbus::wait_policy wp{.poll_budget = t.poll_budget};
      auto w = xenbus::wait_for_work(b.ring(), wp, [&](std::optional<std::chrono::nanoseconds>) {
        if (xb_should_stop(stop)) {
          stopping = true;
          return false;
        }
        link.wait();
        ++c.waits;
        return true;
      });
      if (stopping) return true;
      (void)w;  // a broken ring: echo() reports it on the next pass
      continue;
    }
    if (b.final_check()) continue;
    if (xb_should_stop(stop)) return true;
    link.wait();
    ++c.waits;
  }
}

}  // namespace xbench
