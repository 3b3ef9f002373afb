// Two-thread checksum stress tests of our own ring ends against each other, run under
// ThreadSanitizer (label `threads`). Only ours-vs-ours: the C macros use plain accesses
// ordered by asm barriers, which TSan cannot see, so a C peer would be reported as racing
// even when correct; the interop tests (xenbus-ring-tests) cover the C peer instead.
#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include "ring_peer.h"
#include "ring_peers.hpp"
#include "ring_test_util.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

using namespace xenbus::test;
using xenbus::ring_idx;

namespace {
constexpr int hang_ms = 20000;  // TSan is slow; this only turns a lost wakeup into a failure
}

TEST_CASE("stress: our frontend and backend in two threads, eventfd wakeups, checksums") {
  struct variant {
    unsigned order;
    ring_idx start;
    std::uint32_t batch;
    ring_idx k_front, k_back;
  };
  const variant variants[] = {
      {0, 0xffffffffu - 2000, 1, 1, 1},  // across the wrap, one message per push
      {2, 0x7ffffff0u, 64, 1, 1},        // multi-page, batches
      {0, 5, 8, 4, 4},                   // both ends moderated
  };
  constexpr std::uint32_t n = 20000;
  for (const auto& v : variants) {
    CAPTURE(v.order);
    CAPTURE(v.start);
    shared_pages mem(std::size_t{1} << v.order);
    event_fd to_front, to_back;
    // The frontend initialises before the backend attaches (ring-ref is published after).
    REQUIRE(xbt_front::init(mem.span(), v.start));
    our_stats back_stats, front_stats;
    int back_rc = -1;
    std::thread backend([&] {
      const wake_config w{to_front.fd(), to_back.fd(), hang_ms, v.k_back, 1};
      back_rc = our_back_serve(mem.span(), v.start, n, w, back_stats);
    });
    const wake_config w{to_back.fd(), to_front.fd(), hang_ms, v.k_front, 1};
    const int front_rc = our_front_run(mem.span(), v.start, n, v.batch, w, front_stats);
    backend.join();
    REQUIRE(front_rc == 0);
    REQUIRE(back_rc == 0);
    const std::uint64_t sum = expected_checksum(n);
    CHECK(front_stats.messages == n);
    CHECK(back_stats.messages == n);
    CHECK(front_stats.checksum == sum);
    CHECK(back_stats.checksum == sum);
  }
}

TEST_CASE("stress: byte streams both ways between two threads (xenstore and flex rings)") {
  constexpr std::uint64_t n = 200000;
  // One thread per end; each writes a stream and checks the one coming back.
  auto stream = [](auto& ring, std::uint64_t count) {
    std::vector<std::byte> buf(1500);
    std::uint64_t sent = 0, got = 0, step = 0, sum_in = 0;
    auto last = std::chrono::steady_clock::now();
    while (sent < count || got < count) {
      bool progress = false;
      ++step;
      if (sent < count) {
        auto want = static_cast<std::size_t>(1 + step * 131 % buf.size());
        if (want > count - sent) want = static_cast<std::size_t>(count - sent);
        for (std::size_t i = 0; i < want; ++i) buf[i] = std::byte{xbt_stream_byte(sent + i)};
        auto w = ring.write(std::span<const std::byte>(buf.data(), want));
        if (!w) return false;
        sent += *w;
        progress = progress || *w > 0;
      }
      if (got < count) {
        auto want = static_cast<std::size_t>(1 + step * 173 % buf.size());
        auto r = ring.read(std::span<std::byte>(buf.data(), want < count - got ? want : count - got));
        if (!r) return false;
        for (std::size_t i = 0; i < *r; ++i) {
          if (buf[i] != std::byte{xbt_stream_byte(got + i)}) return false;
          sum_in += static_cast<std::uint8_t>(buf[i]);
        }
        got += *r;
        progress = progress || *r > 0;
      }
      if (progress)
        last = std::chrono::steady_clock::now();
      else if (std::chrono::steady_clock::now() - last > std::chrono::milliseconds(hang_ms))
        return false;
      else
        std::this_thread::yield();
    }
    return sum_in > 0;
  };

  SUBCASE("xenstore guest and server") {
    shared_pages page(1);
    auto* x = reinterpret_cast<xenbus::xenstore_domain_interface_layout*>(page.data());
    x->req_cons = x->req_prod = x->rsp_cons = x->rsp_prod = 0xffffffffu - 5000;
    auto server = xenbus::xenstore_ring_server::attach(page.span());
    auto guest = xenbus::xenstore_ring_guest::attach(page.span());
    REQUIRE(server);
    REQUIRE(guest);
    bool server_ok = false;
    std::thread t([&] { server_ok = stream(*server, n); });
    const bool guest_ok = stream(*guest, n);
    t.join();
    CHECK(guest_ok);
    CHECK(server_ok);
  }
  SUBCASE("flex ring of order 1") {
    shared_pages intf(1), data(2);
    auto front = xenbus::flex_ring::attach(xenbus::flex_end::frontend, intf.span(), data.span(), 1);
    auto back = xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), 1);
    REQUIRE(front);
    REQUIRE(back);
    bool back_ok = false;
    std::thread t([&] { back_ok = stream(*back, n); });
    const bool front_ok = stream(*front, n);
    t.join();
    CHECK(front_ok);
    CHECK(back_ok);
  }
}
