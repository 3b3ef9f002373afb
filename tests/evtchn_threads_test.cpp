// Two-thread stress of posix::evtchn_handle (include/xenbus/posix/evtchn.hpp) under TSan:
// a producer publishes a counter and notifies; the consumer sleeps only on the doorbell.
// No wakeup may be lost: the consumer must see the final count without a timeout expiring.
#include <xenbus/posix/evtchn.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <thread>

using xenbus::posix::evtchn_handle;
using xenbus::posix::machine;

TEST_CASE("notify, pending and unmask lose no wakeup between two threads") {
  auto m = machine::create({.frames = 4, .domains = 2, .grants_per_domain = 4, .ports_per_domain = 4});
  REQUIRE(m.has_value());
  auto a = evtchn_handle::open(*m, 0);
  auto b = evtchn_handle::open(*m, 1);
  REQUIRE((a && b));
  auto offered = b->bind_unbound(0);
  REQUIRE(offered.has_value());
  auto local = a->bind_interdomain(1, *offered);
  REQUIRE(local.has_value());

  constexpr std::uint64_t rounds = 20000;
  std::atomic<std::uint64_t> published{0};
  std::atomic<bool> failed{false};
  std::thread producer([&] {
    for (std::uint64_t i = 1; i <= rounds; ++i) {
      // Release: the count is visible to the consumer that the notification wakes.
      published.store(i, std::memory_order_release);
      if (!a->notify(*local)) failed = true;
    }
  });
  std::uint64_t seen = 0, wakeups = 0;
  while (seen < rounds) {
    // A lost wakeup would leave us here with seen < rounds: the 5 s poll is a liveness
    // bound that fails the test, not a timing assertion.
    if (!xenbus::posix::wait_readable(b->fd(), 5000)) break;
    auto p = b->pending();
    if (!p) continue;
    ++wakeups;
    // Acquire: pairs with the producer's release store before the notify.
    seen = published.load(std::memory_order_acquire);
    REQUIRE(b->unmask(*p).has_value());
  }
  producer.join();
  CHECK_FALSE(failed.load());
  CHECK(seen == rounds);
  CHECK(wakeups >= 1);
  CHECK(wakeups <= rounds);  // notifications coalesce while the port is pending
}
