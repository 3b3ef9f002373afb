// Tests include/xenbus/hosted/ring_wait.hpp: poll, then final check with moderation, then sleep.
#include <xenbus/hosted/ring_wait.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <vector>

using xenbus::ring_error;
using xenbus::ring_idx;
using xenbus::wake;
using namespace std::chrono_literals;

namespace {

// A ring end whose contents the test scripts: how many looks stay empty, what the final
// check says, and whether it is broken. Records the k each final check was armed with.
struct scripted_ring {
  int empty_looks = 0;  // looks before work appears (-1: never)
  bool final_check_finds_work = false;
  bool broken = false;
  int looks = 0;
  std::vector<ring_idx> armed{};

  xenbus::result<ring_idx, ring_error> unconsumed_requests() {
    if (broken) return xenbus::unexpected{ring_error::prod_overflow};
    ++looks;
    return ring_idx{empty_looks >= 0 && looks > empty_looks ? 1u : 0u};
  }
  xenbus::result<bool, ring_error> final_check(ring_idx k) {
    armed.push_back(k);
    return final_check_finds_work;
  }
};

struct recorded_sleep {
  bool notified = true;
  int calls = 0;
  std::optional<std::chrono::nanoseconds> bound{};
  bool operator()(std::optional<std::chrono::nanoseconds> b) {
    ++calls;
    bound = b;
    return notified;
  }
};

}  // namespace

TEST_CASE("without a poll budget the final check decides, as with RING_FINAL_CHECK") {
  scripted_ring ring{.empty_looks = -1};
  recorded_sleep sleep;
  SUBCASE("the final check finds work: no sleep") {
    ring.final_check_finds_work = true;
    CHECK(*xenbus::wait_for_work(ring, {}, sleep) == wake::work);
    CHECK(sleep.calls == 0);
  }
  SUBCASE("empty: one unbounded sleep, armed for the next message") {
    CHECK(*xenbus::wait_for_work(ring, {}, sleep) == wake::notified);
    CHECK(sleep.calls == 1);
    CHECK_FALSE(sleep.bound.has_value());
    CHECK(ring.armed == std::vector<ring_idx>{1});
    CHECK(ring.looks == 0);  // no polling was asked for
  }
}

TEST_CASE("a poll budget finds work that arrives while polling, without sleeping") {
  scripted_ring ring{.empty_looks = 500};
  recorded_sleep sleep;
  const xenbus::wait_policy p{.poll_budget = 10s};
  CHECK(*xenbus::wait_for_work(ring, p, sleep) == wake::work);
  CHECK(ring.looks == 501);
  CHECK(ring.armed.empty());
  CHECK(sleep.calls == 0);
}

TEST_CASE("a poll budget ends: then the moderated final check and a bounded sleep") {
  scripted_ring ring{.empty_looks = -1};
  recorded_sleep sleep{.notified = false};
  const xenbus::wait_policy p{.poll_budget = 1us, .batch = 8, .sleep_bound = 300us};
  CHECK(*xenbus::wait_for_work(ring, p, sleep) == wake::timed_out);
  CHECK(ring.looks >= 64);
  CHECK(ring.armed == std::vector<ring_idx>{8});
  REQUIRE(sleep.bound.has_value());
  CHECK(*sleep.bound == 300us);  // batch > 1: an unmodified peer must not stall us
}

TEST_CASE("a broken ring is reported at once, polling or not") {
  scripted_ring ring{.broken = true};
  recorded_sleep sleep;
  auto r = xenbus::wait_for_work(ring, {.poll_budget = 1s}, sleep);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == ring_error::prod_overflow);
  CHECK(sleep.calls == 0);
}
