// Load: concurrent socket clients doing read-modify-write transactions on shared counters
// against include/xenbus/posix/xenstore/server.hpp; every successful commit must be counted once.
#include "xenstore_socket_support.hpp"

#include <xenbus/posix/xenstore/server.hpp>

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <thread>
#include <vector>

namespace xs = xenbus::xenstore;
using T = xs::msg_type;
using xstest::sock;

TEST_CASE("load: concurrent read-modify-write transactions lose no increment") {
  xs::server_thread srv{xstest::temp_socket("load")};
  REQUIRE(srv.ok());
  constexpr int clients = 4;
  constexpr int increments = 150;
  constexpr int counters = 2;
  {
    sock setup{srv.path()};
    for (int k = 0; k < counters; ++k) REQUIRE(setup.write("/load/c" + std::to_string(k), "0").ok());
  }
  // Results per thread, joined before being read: no sharing while running.
  std::vector<std::array<long, counters>> commits(clients);
  std::vector<long> conflicts(clients, 0);
  std::vector<int> failures(clients, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      sock c{srv.path()};
      commits[static_cast<std::size_t>(t)].fill(0);
      if (!c.ok()) {
        ++failures[static_cast<std::size_t>(t)];
        return;
      }
      for (int i = 0; i < increments; ++i) {
        const std::string node = "/load/c" + std::to_string((i + t) % counters);
        for (;;) {
          const auto tx = c.start();
          const auto v = c.read(node, tx);
          if (!v.ok()) {
            ++failures[static_cast<std::size_t>(t)];
            return;
          }
          const long next = std::stol(v.payload) + 1;
          if (!c.write(node, std::to_string(next), tx).ok()) {
            ++failures[static_cast<std::size_t>(t)];
            return;
          }
          const auto end = c.end(tx, true);
          if (end.ok()) {
            ++commits[static_cast<std::size_t>(t)][static_cast<std::size_t>((i + t) % counters)];
            break;
          }
          if (end.err() != "EAGAIN") {
            ++failures[static_cast<std::size_t>(t)];
            return;
          }
          ++conflicts[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  long total_conflicts = 0;
  for (int t = 0; t < clients; ++t) {
    CHECK(failures[static_cast<std::size_t>(t)] == 0);
    total_conflicts += conflicts[static_cast<std::size_t>(t)];
  }
  sock check{srv.path()};
  long total = 0;
  for (int k = 0; k < counters; ++k) {
    long expected = 0;
    for (int t = 0; t < clients; ++t) expected += commits[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)];
    CHECK(check.read("/load/c" + std::to_string(k)).payload == std::to_string(expected));
    total += expected;
  }
  CHECK(total == clients * increments);
  MESSAGE("commits: " << total << ", EAGAIN retries: " << total_conflicts);
  check.close();
  srv.stop();
  CHECK(srv.get_store().stats().commits == static_cast<std::uint64_t>(total));
  CHECK(srv.get_store().stats().conflicts == static_cast<std::uint64_t>(total_conflicts));
}
