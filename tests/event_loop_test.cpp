// posix::event_loop (include/xenbus/posix/event_loop.hpp): descriptors, timers, pollers,
// event channels, removal from inside callbacks, and embedding in a caller's own poll loop.
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/machine.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

using namespace xenbus;
using namespace std::chrono_literals;
using loop_clock = posix::event_loop::clock;

namespace {
struct eventfd_owner {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ~eventfd_owner() { ::close(fd); }
  void signal() const {
    const std::uint64_t one = 1;
    REQUIRE(::write(fd, &one, sizeof one) == sizeof one);
  }
  void drain() const {
    std::uint64_t v;
    (void)!::read(fd, &v, sizeof v);
  }
};
}  // namespace

TEST_CASE("event loop: a readable descriptor runs its callback, level-triggered, until drained") {
  posix::event_loop loop;
  REQUIRE(loop.ok());
  eventfd_owner e;
  int calls = 0;
  bool drain = false;
  auto h = loop.add_fd(e.fd, [&] {
    ++calls;
    if (drain) e.drain();
  });
  REQUIRE(h != 0);
  loop.process();
  CHECK(calls == 0);
  e.signal();
  loop.process();
  loop.process();
  CHECK(calls == 2);  // still readable: called again
  drain = true;
  loop.process();
  loop.process();
  CHECK(calls == 3);
  loop.remove(h);
  e.signal();
  loop.process();
  CHECK(calls == 3);
}

TEST_CASE("event loop: timers fire once, in time order, and may be removed before they fire") {
  posix::event_loop loop;
  std::vector<int> order;
  const auto t0 = loop_clock::now();
  (void)loop.add_timer(t0 + 30ms, [&] { order.push_back(3); });
  (void)loop.add_timer(t0 + 10ms, [&] { order.push_back(1); });
  auto cancelled = loop.add_timer(t0 + 20ms, [&] { order.push_back(2); });
  loop.remove(cancelled);
  CHECK(loop.timeout_ms(t0) >= 9);
  CHECK(loop.timeout_ms(t0) <= 10);
  CHECK(loop.run_until([&] { return order.size() == 2; }, 2s));
  CHECK(order == std::vector<int>{1, 3});
  CHECK(loop_clock::now() - t0 >= 30ms);
  loop.process(loop_clock::now() + 1h);
  CHECK(order.size() == 2);  // one-shot
  CHECK(loop.timeout_ms() == -1);
}

TEST_CASE("event loop: callbacks may remove themselves and others, and add new work") {
  posix::event_loop loop;
  eventfd_owner a, b;
  int a_calls = 0, b_calls = 0, timer_calls = 0;
  posix::event_loop::handle ha = 0, hb = 0;
  ha = loop.add_fd(a.fd, [&] {
    ++a_calls;
    loop.remove(ha);  // itself
    loop.remove(hb);  // the other one, readable in the same turn
    (void)loop.add_timer(loop_clock::now(), [&] { ++timer_calls; });
  });
  hb = loop.add_fd(b.fd, [&] { ++b_calls; });
  a.signal();
  b.signal();
  loop.process();
  loop.process();
  CHECK(a_calls == 1);
  CHECK(b_calls <= 1);  // it may have run before a in the first turn, never after
  CHECK(timer_calls == 1);
}

TEST_CASE("event loop: pollers keep the loop awake while they have work") {
  posix::event_loop loop;
  int left = 5, calls = 0;
  (void)loop.add_poller([&] {
    ++calls;
    if (left > 0) --left;
    return left > 0;
  });
  loop.process();
  CHECK(left == 0);  // the rounds of one process() drain it
  CHECK(calls >= 5);
  CHECK(loop.timeout_ms() == -1);
}

TEST_CASE("event loop: embedded in a caller's poll loop through fd(), timeout_ms() and process()") {
  posix::event_loop loop;
  eventfd_owner e;
  int got = 0, fired = 0;
  (void)loop.add_fd(e.fd, [&] {
    e.drain();
    ++got;
  });
  (void)loop.add_timer(loop_clock::now() + 20ms, [&] { ++fired; });
  e.signal();
  // The caller's own loop: poll the one descriptor with the loop's timeout.
  const auto t0 = loop_clock::now();
  while ((got == 0 || fired == 0) && loop_clock::now() - t0 < 2s) {
    pollfd p{loop.fd(), POLLIN, 0};
    (void)::poll(&p, 1, loop.timeout_ms());
    loop.process();
  }
  CHECK(got == 1);
  CHECK(fired == 1);
}

TEST_CASE("event loop: an event channel's ports are taken, unmasked and dispatched") {
  auto m = posix::machine::create({.frames = 16, .domains = 4, .grants_per_domain = 16, .ports_per_domain = 16});
  REQUIRE(m.has_value());
  auto a = posix::evtchn_handle::open(*m, 1);
  auto b = posix::evtchn_handle::open(*m, 2);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  auto pa = a->bind_unbound(2);
  REQUIRE(pa.has_value());
  auto pb = b->bind_interdomain(1, *pa);
  REQUIRE(pb.has_value());
  posix::event_loop loop;
  std::vector<evtchn_port> seen;
  (void)loop.add_evtchn(*b, [&](evtchn_port p) { seen.push_back(p); });
  REQUIRE(a->notify(*pa).has_value());
  CHECK(loop.run_until([&] { return seen.size() == 1; }, 2s));
  CHECK(seen[0] == *pb);
  // Unmasked by the loop: a second raise is delivered too.
  REQUIRE(a->notify(*pa).has_value());
  CHECK(loop.run_until([&] { return seen.size() == 2; }, 2s));
}

TEST_CASE("event loop: run() returns after stop() from a callback") {
  posix::event_loop loop;
  (void)loop.add_timer(loop_clock::now() + 5ms, [&] { loop.stop(); });
  const auto t0 = loop_clock::now();
  loop.run();
  CHECK(loop_clock::now() - t0 < 2s);
}
