// [hosted] Waiting for ring work: poll first, then the final check with moderation, then a sleep.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

XENBUS_BEGIN_NAMESPACE

/// How a consumer with an empty ring waits (hosted: it reads a clock).
struct wait_policy {
  /// Poll the ring this long before arming the event and sleeping. Polling spends CPU to
  /// save the peer's kick and our wakeup; 0 sleeps at once (the ring.h usage).
  std::chrono::nanoseconds poll_budget{0};
  /// Ask to be notified only after this many more messages (final_check(batch)).
  ring_idx batch = 1;
  /// Upper bound on a sleep when batch > 1: an unmodified peer notifies by its own rule
  /// and may never reach our event, so such a sleep must end by itself.
  std::chrono::nanoseconds sleep_bound{200'000};
};

/// Why wait_for_work() returned.
enum class wake : std::uint8_t {
  work,       ///< the ring had work (found while polling or by the final check)
  notified,   ///< the sleep ended with a notification
  timed_out,  ///< the bounded sleep expired: consume whatever is there
};

namespace detail {

// Messages the ring holds now, whichever end it is.
template <class Ring>
result<ring_idx, ring_error> unconsumed(Ring& ring) noexcept {
  if constexpr (requires { ring.unconsumed_responses(); })
    return ring.unconsumed_responses();
  else
    return ring.unconsumed_requests();
}

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();  // keeps the polling core from flooding the peer with loads
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace detail

/// Waits until `ring` (a front_ring or back_ring) has work. Polls it for up to
/// p.poll_budget, then arms final_check(p.batch) and calls `sleep(bound)`, which blocks on
/// the event channel: forever when `bound` is empty, else at most *bound, returning false
/// on timeout. A broken ring returns its error at once.
template <class Ring, class Sleep, class Clock = std::chrono::steady_clock>
result<wake, ring_error> wait_for_work(Ring& ring, const wait_policy& p, Sleep&& sleep) {
  if (p.poll_budget.count() > 0) {
    const auto deadline = Clock::now() + p.poll_budget;
    do {
      // The clock costs more than a look at the ring: read it once every 64 looks.
      for (int i = 0; i < 64; ++i) {
        auto n = detail::unconsumed(ring);
        if (!n) return unexpected{n.error()};
        if (*n != 0) return wake::work;
        detail::spin_pause();
      }
    } while (Clock::now() < deadline);
  }
  auto ready = ring.final_check(p.batch);
  if (!ready) return unexpected{ready.error()};
  if (*ready) return wake::work;
  const std::optional<std::chrono::nanoseconds> bound = p.batch > 1 ? std::optional{p.sleep_bound} : std::nullopt;
  return sleep(bound) ? wake::notified : wake::timed_out;
}

XENBUS_END_NAMESPACE
