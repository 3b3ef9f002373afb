// The floor: a bare one-cache-line ping-pong between the two pinned threads.
#include "harness.hpp"

namespace xbench {
namespace {

// One cache line, nothing else on it.  The frontend writes an odd number, the backend
// answers with the next even one: each round trip moves the line there and back, which
// is the least any shared-memory request/response can cost on this machine.
struct alignas(64) ping_line {
  std::atomic<std::uint64_t> value{0};
};

void round_trip_floor(benchmark::State& state) {
  ping_line line;
  peer_thread back([&line](const int* stop) {
    std::uint64_t seen = 0;
    unsigned spins = 0;
    for (;;) {
      // Acquire: pairs with the frontend's release store of the ping.
      const std::uint64_t v = line.value.load(std::memory_order_acquire);
      if (v != seen && (v & 1) != 0) {
        seen = v + 1;
        // Release: pairs with the frontend's acquire load of the pong.
        line.value.store(seen, std::memory_order_release);
        continue;
      }
      if (xb_should_stop(stop)) return;
      xb_spin_relax(&spins);
    }
  });
  std::uint64_t next = 1;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    for (std::uint64_t k = 0; k < round_trips_per_iteration; ++k, next += 2) {
      // Release: pairs with the backend's acquire load.
      line.value.store(next, std::memory_order_release);
      unsigned spins = 0;
      // Acquire: pairs with the backend's release store of next + 1.
      while (line.value.load(std::memory_order_acquire) != next + 1) xb_spin_relax(&spins);
    }
    clock.stop();
  }
  back.stop();
  rates(state, "round_trips", round_trips_per_iteration, clock);
}

}  // namespace

void register_floor(measure m) {
  if (m == measure::round_trip) threaded(benchmark::RegisterBenchmark("round_trip/floor", round_trip_floor));
}

}  // namespace xbench
