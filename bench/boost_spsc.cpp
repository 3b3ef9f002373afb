// The general-purpose reference: a pair of boost::lockfree::spsc_queue carrying the same messages.
#include "harness.hpp"
#include "payloads.hpp"

#include <boost/lockfree/spsc_queue.hpp>

#include <string>
#include <vector>

namespace xbench {
namespace {

// Requests one way, responses the other, each queue as deep as the ring it stands in
// for.  Both ends move whole batches (push/pop of arrays), which publishes the queue's
// index once per batch, as a ring push does.
template <class P>
struct queue_pair {
  explicit queue_pair(std::size_t slots) : requests(slots), responses(slots) {}
  boost::lockfree::spsc_queue<typename P::request> requests;
  boost::lockfree::spsc_queue<typename P::response> responses;
};

template <class P>
void stream(benchmark::State& state, unsigned order) {
  const std::size_t slots = ring_slots<P>(ring_bytes(order));
  queue_pair<P> q(slots);
  std::uint64_t back_errors = 0;
  peer_thread back([&q, slots, &back_errors](const int* stop) {
    std::vector<typename P::request> in(slots);
    std::vector<typename P::response> out(slots);
    unsigned spins = 0;
    for (;;) {
      const std::size_t n = q.requests.pop(in.data(), slots);
      if (n == 0) {
        if (xb_should_stop(stop)) return;
        xb_spin_relax(&spins);
        continue;
      }
      for (std::size_t i = 0; i < n; ++i) P::echo(out[i], in[i]);
      // Never short: the frontend keeps at most `slots` requests outstanding.
      if (q.responses.push(out.data(), n) != n) ++back_errors;
    }
  });

  std::vector<typename P::request> batch(slots);
  std::vector<typename P::response> got(slots);
  std::uint64_t seq = 0, expected = 0, errors = 0;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    const std::uint64_t end = seq + stream_requests_per_iteration;
    unsigned spins = 0;
    while (expected != end) {
      const std::uint64_t room = slots - (seq - expected);
      std::size_t n = 0;
      while (n < room && seq != end) P::fill(batch[n++], seq++);
      if (n != 0 && q.requests.push(batch.data(), n) != n) ++errors;
      const std::size_t m = q.responses.pop(got.data(), slots);
      if (m == 0) {
        xb_spin_relax(&spins);
        continue;
      }
      for (std::size_t i = 0; i < m; ++i)
        if (!P::id_matches(got[i], expected++)) ++errors;
    }
    clock.stop();
  }
  back.stop();
  const auto requests = total(state, stream_requests_per_iteration);
  rates(state, "requests", stream_requests_per_iteration, clock);
  rate(state, "bytes", requests * static_cast<double>(sizeof(typename P::request)));
  value(state, "ring_slots", static_cast<double>(slots));
  if (errors + back_errors != 0) state.SkipWithError("boost queues lost or reordered messages");
}

}  // namespace

void register_boost_spsc(measure m) {
  if (m != measure::stream) return;
  for (unsigned order : {0U, 2U}) {
    const std::string o = "/order:" + std::to_string(order);
    threaded(benchmark::RegisterBenchmark(("stream/boost_spsc/blkif" + o).c_str(), stream<blkif_payload>, order));
    threaded(benchmark::RegisterBenchmark(("stream/boost_spsc/netif_tx" + o).c_str(), stream<netif_tx_payload>, order));
  }
}

}  // namespace xbench
