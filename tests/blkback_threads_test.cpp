// xenbus-blkback's device on its own thread, woken by its event channel, with the frontend on
// another: thousands of writes and reads with checksums, several in flight, over two queues.
// Run under ThreadSanitizer too (label threads).
#include "blkback_support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include <poll.h>

namespace {

using namespace blktest;

TEST_CASE("a backend thread and a frontend thread: every byte written comes back, several in flight") {
  ram_image img{1 << 20};
  rig r{img};
  REQUIRE_MESSAGE(r.up({}, frontend_options{.ring_page_order = 1, .queues = 2}, true), r.dump());
  std::atomic<bool> stop{false};
  std::thread backend([&] {
    pollfd p{r.bev.fd(), POLLIN, 0};
    // Relaxed: a stop flag; the join below orders everything the thread did.
    while (!stop.load(std::memory_order_relaxed)) {
      if (::poll(&p, 1, 20) <= 0) continue;
      while (auto port = r.bev.pending())
        if (!r.dev->on_event(*port)) (void)r.bev.unmask(*port);
      while (r.dev->pending_work()) r.dev->serve();
    }
  });

  // Each queue owns half the pool and half the image; each round writes `depth` pages with
  // a pattern, then reads them back into other pages and compares.
  constexpr unsigned depth = 8, rounds = 150;
  unsigned mismatches = 0, failures = 0;
  std::vector<blkif::response> got;
  auto wait_for = [&](unsigned q, unsigned n) {
    got.clear();
    pollfd p{r.fev.fd(), POLLIN, 0};
    for (int spins = 0; got.size() < n && spins < 5000; ++spins) {
      for (;;) {
        auto rsp = r.fe->take_response(q);
        if (!rsp || !*rsp) break;
        got.push_back(**rsp);
      }
      if (got.size() >= n) break;
      auto more = r.fe->queue_at(q).ring->final_check(1);
      if (more && *more) continue;
      (void)::poll(&p, 1, 10);
      while (auto port = r.fev.pending()) (void)r.fev.unmask(*port);
    }
    return got.size() == n;
  };
  for (unsigned round = 0; round < rounds; ++round) {
    for (unsigned q = 0; q < 2; ++q) {
      const unsigned base_page = q * 64, base_sector = q * 1024;
      for (unsigned i = 0; i < depth; ++i) {
        fill(r.page(base_page + i), 4096, round * 100 + q * 10 + i);
        REQUIRE(r.fe->queue_at(q).ring->produce(
            r.rw(blkif::op_write, i, base_sector + ((round + i) % 64) * 8, {r.full(base_page + i)})));
      }
      REQUIRE(r.fe->push(q));
    }
    for (unsigned q = 0; q < 2; ++q) {
      REQUIRE(wait_for(q, depth));
      for (const auto& g : got) failures += g.status != blkif::rsp_okay;
    }
    for (unsigned q = 0; q < 2; ++q) {
      const unsigned base_page = q * 64, base_sector = q * 1024;
      for (unsigned i = 0; i < depth; ++i) {
        std::memset(r.page(base_page + 32 + i), 0, 4096);
        REQUIRE(r.fe->queue_at(q).ring->produce(
            r.rw(blkif::op_read, 100 + i, base_sector + ((round + i) % 64) * 8, {r.full(base_page + 32 + i)})));
      }
      REQUIRE(r.fe->push(q));
    }
    for (unsigned q = 0; q < 2; ++q) {
      REQUIRE(wait_for(q, depth));
      for (const auto& g : got) failures += g.status != blkif::rsp_okay;
      for (unsigned i = 0; i < depth; ++i)
        mismatches += std::memcmp(r.page(q * 64 + i), r.page(q * 64 + 32 + i), 4096) != 0;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  backend.join();
  CHECK(failures == 0);
  CHECK(mismatches == 0);
  CHECK(r.dev->stats().writes == 2 * depth * rounds);
  CHECK(r.dev->stats().reads == 2 * depth * rounds);
  CHECK(img.out_of_range == 0);
}

}  // namespace
