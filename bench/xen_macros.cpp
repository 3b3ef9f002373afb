// The C macros' side of each measure: drives the loops of xen_peer.c (compiled as C).
#include "harness.hpp"
#include "xen_peer.h"

#include <memory>
#include <string>

namespace xbench {
namespace {

xp_payload to_c(payload p) { return p == payload::blkif ? XP_BLKIF : XP_NETIF_TX; }

struct front_deleter {
  void operator()(xp_front* f) const { xp_front_free(f); }
};
using front_ptr = std::unique_ptr<xp_front, front_deleter>;

front_ptr make_front(payload p, const shared_pages& pages) {
  return front_ptr(xp_front_new(to_c(p), pages.data(), pages.size()));
}

// Backend echoing with spinning, in its own pinned thread.
auto spinning_back(payload p, const shared_pages& pages, std::uint64_t& errors) {
  return [p, &pages, &errors](const int* stop) { errors = xp_back_spin(to_c(p), pages.data(), pages.size(), stop); };
}

void report_errors(benchmark::State& state, std::uint64_t front_errors, std::uint64_t back_errors) {
  if (front_errors + back_errors != 0) state.SkipWithError("the C peer saw bad ids or indices");
}

void round_trip(benchmark::State& state, payload p) {
  shared_pages pages(ring_bytes(0));
  front_ptr front = make_front(p, pages);
  std::uint64_t back_errors = 0;
  peer_thread back(spinning_back(p, pages, back_errors));
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    xp_round_trips(front.get(), round_trips_per_iteration);
    clock.stop();
  }
  back.stop();
  rates(state, "round_trips", round_trips_per_iteration, clock);
  report_errors(state, xp_front_errors(front.get()), back_errors);
}

void stream(benchmark::State& state, payload p, unsigned order) {
  shared_pages pages(ring_bytes(order));
  front_ptr front = make_front(p, pages);
  std::uint64_t back_errors = 0;
  peer_thread back(spinning_back(p, pages, back_errors));
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    xp_stream(front.get(), stream_requests_per_iteration);
    clock.stop();
  }
  back.stop();
  const auto requests = total(state, stream_requests_per_iteration);
  rates(state, "requests", stream_requests_per_iteration, clock);
  rate(state, "bytes", requests * static_cast<double>(xp_request_size(to_c(p))));
  value(state, "ring_slots", xp_front_ring_size(front.get()));
  report_errors(state, xp_front_errors(front.get()), back_errors);
}

void stream_one_thread(benchmark::State& state, payload p, unsigned order) {
  shared_pages pages(ring_bytes(order));
  front_ptr front = make_front(p, pages);
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    xp_stream_one_thread(front.get(), stream_requests_per_iteration);
    clock.stop();
  }
  const auto requests = total(state, stream_requests_per_iteration);
  rates(state, "requests", stream_requests_per_iteration, clock);
  rate(state, "bytes", requests * static_cast<double>(xp_request_size(to_c(p))));
  value(state, "ring_slots", xp_front_ring_size(front.get()));
  report_errors(state, xp_front_errors(front.get()), 0);
}

void notify(benchmark::State& state, payload p, unsigned outstanding) {
  shared_pages pages(ring_bytes(0));
  front_ptr front = make_front(p, pages);
  event_channel to_back, to_front;
  std::uint64_t back_errors = 0, back_kicks = 0, back_waits = 0;
  peer_thread back(
      [&](const int* stop) {
        back_errors = xp_notify_back(to_c(p), pages.data(), pages.size(), to_front.fd(), to_back.fd(), stop,
                                     &back_kicks, &back_waits);
      },
      &to_back);
  std::uint64_t front_kicks = 0, front_waits = 0;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    xp_notify_stream(front.get(), notify_requests_per_iteration, outstanding, to_back.fd(), to_front.fd(), &front_kicks,
                     &front_waits);
    clock.stop();
  }
  back.stop();
  const auto requests = total(state, notify_requests_per_iteration);
  rates(state, "requests", notify_requests_per_iteration, clock);
  value(state, "kicks_per_request", static_cast<double>(front_kicks + back_kicks) / requests);
  value(state, "waits_per_request", static_cast<double>(front_waits + back_waits) / requests);
  report_errors(state, xp_front_errors(front.get()), back_errors);
}

}  // namespace

void register_xen_macros(measure m) {
  switch (m) {
    case measure::round_trip:
      threaded(benchmark::RegisterBenchmark("round_trip/xen_macros/blkif", round_trip, payload::blkif));
      break;
    case measure::stream:
      for (payload p : {payload::blkif, payload::netif_tx})
        for (unsigned order : {0U, 2U})
          threaded(benchmark::RegisterBenchmark(
              ("stream/xen_macros/" + std::string(name_of(p)) + "/order:" + std::to_string(order)).c_str(), stream, p,
              order));
      for (payload p : {payload::blkif, payload::netif_tx})
        for (unsigned order : {0U, 2U})
          single(benchmark::RegisterBenchmark(
              ("stream_one_thread/xen_macros/" + std::string(name_of(p)) + "/order:" + std::to_string(order)).c_str(),
              stream_one_thread, p, order));
      break;
    case measure::notify:
      for (unsigned k : notify_loads)
        threaded(benchmark::RegisterBenchmark(("notify/xen_macros/standard/outstanding:" + std::to_string(k)).c_str(),
                                              notify, payload::blkif, k));
      break;
    case measure::bytes:
      break;
  }
}

}  // namespace xbench
