// Interop of include/xenbus/ring/request_ring.hpp with the real peer: ring.h's C macros with xenctrl.h's
// barriers (tests/ring_peer.c) as the other end, in two threads and in two processes that
// share a memfd mapping, across the 2^32 index wrap and on multi-page rings.
#include <xenbus/ring/request_ring.hpp>

#include "ring_peer.h"
#include "ring_peers.hpp"
#include "ring_test_util.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string_view>
#include <thread>

using namespace xenbus::test;
using xenbus::ring_idx;

namespace {

constexpr int hang_ms = 10000;  // a sleep this long is a lost wakeup, not slowness

struct scenario {
  const char* name;
  unsigned order;   // ring-page-order
  ring_idx start;   // both producers start here
  std::uint32_t n;  // messages
  std::uint32_t batch;
  ring_idx k;                // our consumer's moderation: notify after k messages
  std::uint32_t window = 0;  // C frontend: most requests outstanding (0: ring size)
};

// Both directions get the same list: plain, across the wrap, multi-page, moderated.
constexpr scenario scenarios[] = {
    {"one page from zero", 0, 0, 3000, 1, 1},
    {"one page across the 2^32 wrap", 0, 0xffffffffu - 1500, 3000, 5, 1},
    {"order 2 across the wrap, batches", 2, 0xfffffff0u, 6000, 32, 1},
    {"order 4 (16 pages), batches", 4, 0x80000000u - 7, 6000, 100, 1},
    {"moderated k = 8 across the wrap", 1, 0xffffffffu - 100, 3000, 16, 8},
    {"moderated k = 64 against 1-for-1 ping-pong", 0, 5, 300, 1, 64, 1},
};

// Which end runs our code.
enum class ours { front, back };

struct outcome {
  int ours_rc = -1;
  int theirs_rc = -1;
  our_stats our{};
  xbt_peer_stats their{};
};

outcome run_threads(const scenario& s, ours side) {
  shared_pages mem(std::size_t{1} << s.order);
  event_fd to_front, to_back;
  outcome out;
  if (side == ours::back) {
    // Their frontend initialises the ring before our backend attaches, as it would before
    // publishing ring-ref; a backend looking at an uninitialised page would (rightly)
    // find its indices out of range and break the ring.
    xbt_front_ring init{};
    xbt_c_front_attach(&init, mem.data(), mem.bytes(), s.start, 1);
    std::thread c([&] {
      out.theirs_rc = xbt_c_front_run(mem.data(), mem.bytes(), s.start, 0, s.n, s.batch, s.window, to_back.fd(),
                                      to_front.fd(), hang_ms, &out.their);
    });
    const wake_config w{to_front.fd(), to_back.fd(), hang_ms, s.k, 1};
    out.ours_rc = our_back_serve(mem.span(), s.start, s.n, w, out.our);
    c.join();
  } else {
    // Our frontend initialises the shared page before their backend touches it.
    auto init = xbt_front::init(mem.span(), s.start);
    REQUIRE(init);
    std::thread c([&] {
      out.theirs_rc =
          xbt_c_back_serve(mem.data(), mem.bytes(), s.start, s.n, to_front.fd(), to_back.fd(), hang_ms, &out.their);
    });
    const wake_config w{to_back.fd(), to_front.fd(), hang_ms, s.k, 1};
    out.ours_rc = our_front_run(mem.span(), s.start, s.n, s.batch, w, out.our);
    c.join();
  }
  return out;
}

// Same, with the C peer in a forked child that shares only the memfd pages and eventfds.
outcome run_processes(const scenario& s, ours side) {
  shared_pages mem(std::size_t{1} << s.order, /*shared_across_fork=*/true);
  event_fd to_front, to_back;
  // The ring uses the whole area; the child's statistics come back in a second page.
  shared_pages result_page(1, true);
  auto* their = reinterpret_cast<xbt_peer_stats*>(result_page.data());
  outcome out;
  if (side == ours::front) {
    auto init = xbt_front::init(mem.span(), s.start);
    REQUIRE(init);
  } else {
    xbt_front_ring init{};
    xbt_c_front_attach(&init, mem.data(), mem.bytes(), s.start, 1);
  }
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc;
    if (side == ours::back)
      rc = xbt_c_front_run(mem.data(), mem.bytes(), s.start, 0, s.n, s.batch, s.window, to_back.fd(), to_front.fd(),
                           hang_ms, their);
    else
      rc = xbt_c_back_serve(mem.data(), mem.bytes(), s.start, s.n, to_front.fd(), to_back.fd(), hang_ms, their);
    _exit(rc == 0 ? 0 : 1);
  }
  if (side == ours::back) {
    const wake_config w{to_front.fd(), to_back.fd(), hang_ms, s.k, 1};
    out.ours_rc = our_back_serve(mem.span(), s.start, s.n, w, out.our);
  } else {
    const wake_config w{to_back.fd(), to_front.fd(), hang_ms, s.k, 1};
    out.ours_rc = our_front_run(mem.span(), s.start, s.n, s.batch, w, out.our);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  out.theirs_rc = WIFEXITED(status) ? -WEXITSTATUS(status) : -128;
  out.their = *their;
  return out;
}

void check(const scenario& s, ours side, const outcome& o) {
  INFO(std::string_view(s.name));
  INFO("our rc " << o.ours_rc << ", their rc " << o.theirs_rc << ", ours " << o.our.messages << " messages, theirs "
                 << o.their.messages);
  REQUIRE(o.ours_rc == 0);
  REQUIRE(o.theirs_rc == 0);
  CHECK(o.our.messages == s.n);
  CHECK(o.their.messages == s.n);
  const std::uint64_t sum = expected_checksum(s.n);
  CHECK(o.our.checksum == sum);
  CHECK(o.their.checksum == sum);
  if (side == ours::back && s.window != 0 && s.window < s.k) {
    // The C peer waits for an answer after fewer than k messages: it never crosses our
    // event, so only the timeout bound moved things along. That it finished at all shows
    // the peer cannot stall a moderated consumer.
    CHECK(o.our.moderation_timeouts > 0);
  }
  MESSAGE(std::string_view(s.name) << ": ours sent " << o.our.notifications_sent << " notifications, woke "
                                   << o.our.wakeups << " times, " << o.our.moderation_timeouts
                                   << " moderation timeouts; theirs sent " << o.their.notifications_sent << ", woke "
                                   << o.their.wakeups);
}

}  // namespace

TEST_CASE("interop, threads: C-macro frontend against our backend") {
  for (const auto& s : scenarios) check(s, ours::back, run_threads(s, ours::back));
}

TEST_CASE("interop, threads: our frontend against a C-macro backend") {
  for (const auto& s : scenarios) check(s, ours::front, run_threads(s, ours::front));
}

TEST_CASE("interop, processes (fork + memfd): C-macro frontend against our backend") {
  for (const auto& s : scenarios) check(s, ours::back, run_processes(s, ours::back));
}

TEST_CASE("interop, processes (fork + memfd): our frontend against a C-macro backend") {
  for (const auto& s : scenarios) check(s, ours::front, run_processes(s, ours::front));
}

TEST_CASE("moderation against the C macros, step by step") {
  shared_pages mem(1);
  xbt_front_ring cf{};
  xbt_back_ring cb{};

  SUBCASE("our backend asks for k = 3; the C frontend notifies exactly on the 3rd") {
    xbt_c_front_attach(&cf, mem.data(), mem.bytes(), 0, 1);
    auto b = xbt_back::attach(mem.span());
    REQUIRE(b);
    CHECK_FALSE(*b->final_check(3));
    REQUIRE(xbt_c_front_produce(&cf, 0));
    CHECK_FALSE(xbt_c_front_push_notify(&cf));
    REQUIRE(xbt_c_front_produce(&cf, 1));
    CHECK_FALSE(xbt_c_front_push_notify(&cf));
    REQUIRE(xbt_c_front_produce(&cf, 2));
    CHECK(xbt_c_front_push_notify(&cf));
    CHECK(*b->final_check(3));
    CHECK(*b->unconsumed_requests() == 3);
  }
  SUBCASE("a batch that jumps over our event still notifies") {
    xbt_c_front_attach(&cf, mem.data(), mem.bytes(), 0xfffffffeu, 1);
    auto b = xbt_back::attach(mem.span(), 0xfffffffeu);
    REQUIRE(b);
    CHECK_FALSE(*b->final_check(2));  // req_event = 0x0: across the wrap
    for (std::uint32_t i = 0; i < 5; ++i) REQUIRE(xbt_c_front_produce(&cf, i));
    CHECK(xbt_c_front_push_notify(&cf));
  }
  SUBCASE("the C backend's final check re-arms our frontend's notifications") {
    auto f = xbt_front::init(mem.span());
    REQUIRE(f);
    xbt_c_back_attach(&cb, mem.data(), mem.bytes(), 0);
    xbt_request q;
    xbt_fill(&q, 0);
    REQUIRE(f->produce(q));
    CHECK(*f->push_and_check_notify());  // initial req_event = 1
    xbt_request got;
    REQUIRE(xbt_c_back_take(&cb, &got));
    CHECK(got.seq == 0);
    CHECK_FALSE(xbt_c_back_final_check(&cb));  // sets req_event = 2
    xbt_fill(&q, 1);
    REQUIRE(f->produce(q));
    CHECK(*f->push_and_check_notify());
    // Responses: the C backend answers, our frontend moderates with k = 2.
    REQUIRE(xbt_c_back_take(&cb, &got));
    CHECK_FALSE(*f->final_check(2));  // rsp_event = 2
    xbt_c_back_respond(&cb, &q);
    CHECK_FALSE(xbt_c_back_push_notify(&cb));  // 1 response: below our event
    xbt_c_back_respond(&cb, &q);
    CHECK(xbt_c_back_push_notify(&cb));  // 2nd crosses it
  }
}
