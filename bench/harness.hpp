// Shared plumbing of xenbus-bench: pinned peer threads, shared pages, eventfds, naming.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
#include "kick.h"
#include "spin.h"
}

namespace xbench {

// The two CPUs every two-thread benchmark uses: the benchmark thread (the frontend, the
// writer) on the first, its peer (the backend, the reader) on the second.
inline constexpr unsigned front_cpu = 0;
inline constexpr unsigned back_cpu = 1;

/// Pins the calling thread to `cpu`; false if the machine does not let us (then the
/// thread floats, and the figures mean less: main() warns once).
bool pin_this_thread(unsigned cpu) noexcept;

/// Page-aligned, zeroed memory standing in for granted ring pages (mmap'd, so that
/// both threads share it exactly as two domains share a page).
class shared_pages {
 public:
  explicit shared_pages(std::size_t bytes);
  ~shared_pages();
  shared_pages(const shared_pages&) = delete;
  shared_pages& operator=(const shared_pages&) = delete;
  [[nodiscard]] void* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }

 private:
  void* p_;
  std::size_t bytes_;
};

/// One eventfd: the stand-in for one direction of an event channel.
class event_channel {
 public:
  event_channel();
  ~event_channel();
  event_channel(const event_channel&) = delete;
  event_channel& operator=(const event_channel&) = delete;
  [[nodiscard]] int fd() const noexcept { return fd_; }
  void kick() const noexcept { xb_kick(fd_); }
  void wait() const noexcept { xb_wait(fd_); }
  /// True if woken by a kick, false after `timeout_ns` without one.
  [[nodiscard]] bool wait_for(long timeout_ns) const noexcept { return xb_wait_for(fd_, timeout_ns) != 0; }

 private:
  int fd_;
};

/// The other end of a two-thread benchmark: a thread pinned to back_cpu running `body`
/// until stop() (which also kicks `wake`, if given, to end a blocking wait).  The
/// constructor returns once the thread runs, so its startup is never timed.
class peer_thread {
 public:
  template <class Body>
  explicit peer_thread(Body body, const event_channel* wake = nullptr) : wake_(wake) {
    thread_ = std::thread([this, body = std::move(body)]() mutable {
      pin_this_thread(back_cpu);
      // Release: the benchmark thread's acquire load below sees the thread running.
      started_.store(true, std::memory_order_release);
      body(&stop_);
    });
    unsigned spins = 0;
    // Acquire: pairs with the release store above.
    while (!started_.load(std::memory_order_acquire)) xb_spin_relax(&spins);
  }
  ~peer_thread() { stop(); }
  peer_thread(const peer_thread&) = delete;
  peer_thread& operator=(const peer_thread&) = delete;

  /// Asks the peer to finish and waits for it.
  void stop() {
    if (!thread_.joinable()) return;
    // Release: pairs with the acquire load in xb_should_stop(), so a peer that sees the
    // request sees every index we published before it; the join then orders everything
    // the peer did with everything we do after.
    std::atomic_ref<int>(stop_).store(1, std::memory_order_release);
    if (wake_ != nullptr) wake_->kick();
    thread_.join();
  }

 private:
  alignas(64) int stop_ = 0;  // read by the C peers through __atomic_load_n
  std::atomic<bool> started_{false};
  const event_channel* wake_;
  std::thread thread_;
};

/// What `per_iteration` units of work each iteration did add up to.
inline double total(const benchmark::State& state, std::uint64_t per_iteration) {
  return static_cast<double>(state.iterations()) * static_cast<double>(per_iteration);
}

/// Sets counter `name` to `count` per second of the benchmark's (real) time.
inline void rate(benchmark::State& state, const char* name, double count) {
  state.counters[name] = benchmark::Counter(count, benchmark::Counter::kIsRate);
}

/// Times each iteration, so that the rate at the median iteration can be reported beside
/// the wall-clock rate. On a two-CPU machine shared with compilers, a thread that is
/// preempted slows only the iterations it hits; the median iteration shows what the
/// rings cost, whatever else runs.
class iteration_clock {
 public:
  explicit iteration_clock(const benchmark::State& state) {
    ns_.reserve(static_cast<std::size_t>(state.max_iterations));
  }
  void start() noexcept { t0_ = std::chrono::steady_clock::now(); }
  void stop() {
    ns_.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0_).count());
  }
  /// Units per second at the median iteration time, for `per_iteration` units each.
  double median_rate(double per_iteration) {
    if (ns_.empty()) return 0;
    auto mid = ns_.begin() + static_cast<std::ptrdiff_t>(ns_.size() / 2);
    std::nth_element(ns_.begin(), mid, ns_.end());
    return *mid > 0 ? per_iteration * 1e9 / *mid : 0;
  }

 private:
  std::chrono::steady_clock::time_point t0_{};
  std::vector<double> ns_;
};

/// Sets counter `name` to `count` per second of real time, and `name`_median to the
/// rate at the median iteration.
inline void rates(benchmark::State& state, const std::string& name, double per_iteration, iteration_clock& clock) {
  state.counters[name] =
      benchmark::Counter(static_cast<double>(state.iterations()) * per_iteration, benchmark::Counter::kIsRate);
  state.counters[name + "_median"] = benchmark::Counter(clock.median_rate(per_iteration));
}

/// Sets counter `name` to a plain value (averaged over repetitions by the aggregates).
inline void value(benchmark::State& state, const char* name, double v) { state.counters[name] = benchmark::Counter(v); }

// ---- What each benchmark measures, and the knobs shared by every implementation. -----

enum class payload { blkif, netif_tx };
inline const char* name_of(payload p) { return p == payload::blkif ? "blkif" : "netif_tx"; }

/// Bytes of a ring of 2^order pages.
constexpr std::size_t ring_bytes(unsigned order) { return std::size_t{4096} << order; }

// Work per benchmark iteration: large enough that a loop's entry costs nothing, small
// enough that Google Benchmark can pick the iteration count.
inline constexpr std::uint64_t round_trips_per_iteration = 16;
inline constexpr std::uint64_t stream_requests_per_iteration = 4096;
inline constexpr std::uint64_t notify_requests_per_iteration = 256;
inline constexpr std::uint64_t byte_ring_bytes_per_iteration = 64 * 1024;

// Outstanding requests of the notification stream (a blkif ring of one page has 32
// slots), and the chunk sizes of the byte rings.
inline constexpr unsigned notify_loads[] = {1, 2, 4, 8, 16, 32};
inline constexpr std::size_t byte_chunks[] = {16, 256};

// Each benchmark runs briefly (the whole binary in well under three minutes): main()
// passes this as the default --benchmark_min_time, so the command line can override it.
inline constexpr const char* default_min_time = "0.1";

/// Applies the settings every two-thread benchmark shares: timed by the wall clock,
/// since the work happens in two threads.
inline benchmark::internal::Benchmark* threaded(benchmark::internal::Benchmark* b) {
  return b->UseRealTime()->Unit(benchmark::kNanosecond);
}

/// Applies the settings of a benchmark that runs in this thread only.
inline benchmark::internal::Benchmark* single(benchmark::internal::Benchmark* b) {
  return b->Unit(benchmark::kNanosecond);
}

// Each implementation registers its benchmarks for one measure at a time, so that the
// output (and the table) reads measure by measure.
enum class measure { round_trip, stream, notify, bytes };
void register_floor(measure m);
void register_xen_macros(measure m);
void register_flex_ring(measure m);
void register_boost_spsc(measure m);
void register_xenbus(measure m);

}  // namespace xbench
