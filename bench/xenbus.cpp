// Ours: xenbus::front_ring / back_ring of <xenbus/ring/request_ring.hpp> (and its byte rings) in each measure.
#include "harness.hpp"
#include "payloads.hpp"
#include "xenbus_ends.hpp"

#include <xenbus/ring/console.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/hosted/ring_wait.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include "xen_peer.h"  // xp_pattern: the byte pattern both byte-ring implementations carry

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <span>
#include <string>
#include <utility>

namespace xbench {
namespace {

std::span<std::byte> bytes_of(const shared_pages& pages) {
  return {static_cast<std::byte*>(pages.data()), pages.size()};
}

// The backend thread of the round trip and the stream.
template <class P>
void spinning_back(const shared_pages& pages, const int* stop, std::uint64_t& errors) {
  backend<P> back(bytes_of(pages));
  if (!back_spin(back, stop)) ++errors;
}

template <class P>
void round_trip(benchmark::State& state) {
  shared_pages pages(ring_bytes(0));
  frontend<P> front(bytes_of(pages));
  std::uint64_t back_errors = 0;
  peer_thread back([&](const int* stop) { spinning_back<P>(pages, stop, back_errors); });
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    for (std::uint64_t k = 0; k < round_trips_per_iteration && !front.failed(); ++k) {
      front.produce_until(front.next_seq() + 1, 1);
      front.push();
      unsigned spins = 0;
      while (front.consume() == 0 && !front.failed()) xb_spin_relax(&spins);
    }
    clock.stop();
  }
  back.stop();
  rates(state, "round_trips", round_trips_per_iteration, clock);
  if (front.failed() || back_errors != 0) state.SkipWithError("xenbus rings saw bad ids or indices");
}

template <class P>
void stream(benchmark::State& state, unsigned order) {
  shared_pages pages(ring_bytes(order));
  frontend<P> front(bytes_of(pages));
  std::uint64_t back_errors = 0;
  peer_thread back([&](const int* stop) { spinning_back<P>(pages, stop, back_errors); });
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    stream_front(front, front.next_seq() + stream_requests_per_iteration);
    clock.stop();
  }
  back.stop();
  const double requests = total(state, stream_requests_per_iteration);
  rates(state, "requests", stream_requests_per_iteration, clock);
  rate(state, "bytes", requests * static_cast<double>(sizeof(typename P::request)));
  value(state, "ring_slots", front.size());
  if (front.failed() || back_errors != 0) state.SkipWithError("xenbus rings saw bad ids or indices");
}

template <class P>
void stream_one_thread(benchmark::State& state, unsigned order) {
  shared_pages pages(ring_bytes(order));
  frontend<P> front(bytes_of(pages));
  backend<P> back(bytes_of(pages));
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    const std::uint64_t end = front.next_seq() + stream_requests_per_iteration;
    while (front.expected() != end && !front.failed()) {
      front.produce_until(end, front.size());
      front.push();
      if (back.echo() < 0) break;
      back.push();
      if (front.consume() == 0) break;
    }
    clock.stop();
  }
  const double requests = total(state, stream_requests_per_iteration);
  rates(state, "requests", stream_requests_per_iteration, clock);
  rate(state, "bytes", requests * static_cast<double>(sizeof(typename P::request)));
  value(state, "ring_slots", front.size());
  if (front.failed() || front.expected() != front.next_seq())
    state.SkipWithError("xenbus rings saw bad ids or indices");
}

// The bench's stand-in for one end of an event channel: kicks go out on one eventfd,
// waits read the other.
struct eventfd_link {
  const event_channel& out;
  const event_channel& in;
  void kick() { out.kick(); }
  void wait() { in.wait(); }
  bool wait_for(long ns) { return in.wait_for(ns); }
};

template <class P>
void notify(benchmark::State& state, unsigned outstanding, policy pol) {
  shared_pages pages(ring_bytes(0));
  frontend<P> front(bytes_of(pages));
  event_channel to_back, to_front;
  const notify_tuning tuning;  // 200 us sleep bound, 25 us polls
  std::uint64_t back_errors = 0;
  notify_counts back_counts;
  peer_thread back(
      [&](const int* stop) {
        backend<P> b(bytes_of(pages));
        eventfd_link link{to_front, to_back};
        if (!notify_back(b, pol, tuning, link, stop, back_counts)) ++back_errors;
      },
      &to_back);

  notify_counts counts;
  eventfd_link link{to_back, to_front};
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    notify_front(front, front.next_seq() + notify_requests_per_iteration, outstanding, pol, tuning, link, counts);
    clock.stop();
  }
  back.stop();
  const double requests = total(state, notify_requests_per_iteration);
  rates(state, "requests", notify_requests_per_iteration, clock);
  value(state, "kicks_per_request", static_cast<double>(counts.kicks + back_counts.kicks) / requests);
  value(state, "waits_per_request", static_cast<double>(counts.waits + back_counts.waits) / requests);
  if (pol != policy::standard) value(state, "timeouts_per_request", static_cast<double>(counts.timeouts) / requests);
  if (front.failed() || back_errors != 0) state.SkipWithError("xenbus rings saw bad ids or indices");
}

// ---- Byte rings -------------------------------------------------------------------

// The two ends of each byte ring, as their users hold them: the guest writes (xenstore
// requests, console output), the server or console backend reads.
struct xenstore_ends {
  static constexpr const char* name = "xenstore";
  static auto writer(std::span<std::byte> page) { return xenbus::xenstore_ring_guest::attach(page); }
  static auto reader(std::span<std::byte> page) { return xenbus::xenstore_ring_server::attach(page); }
};
struct console_ends {
  static constexpr const char* name = "console";
  static auto writer(std::span<std::byte> page) {
    return xenbus::console_ring::attach(xenbus::console_end::guest, page);
  }
  static auto reader(std::span<std::byte> page) {
    return xenbus::console_ring::attach(xenbus::console_end::backend, page);
  }
};

template <class Result>
auto value_or_abort(Result r) {
  if (!r) std::abort();  // our own page: page-aligned and large enough
  return std::move(r).value();
}

// Reads until stopped and drained, checking the pattern as xp_flex_read does.
template <class Reader>
std::uint64_t read_all(Reader& ring, const int* stop, std::uint64_t& errors) {
  std::byte buf[4096];
  std::uint64_t pos = 0;
  unsigned spins = 0;
  bool last_look = false;  // stop seen: one more look at the ring, then done
  for (;;) {
    auto n = ring.read(buf);
    if (!n) {
      ++errors;
      return pos;
    }
    if (*n == 0) {
      if (last_look) return pos;
      last_look = xb_should_stop(stop) != 0;
      if (!last_look) xb_spin_relax(&spins);
      continue;
    }
    if (static_cast<unsigned char>(buf[0]) != xp_pattern(pos) ||
        static_cast<unsigned char>(buf[*n - 1]) != xp_pattern(pos + *n - 1))
      ++errors;
    pos += *n;
  }
}

template <class Ends>
void bytes(benchmark::State& state, std::size_t chunk) {
  shared_pages page(4096);
  const std::span<std::byte> mem(static_cast<std::byte*>(page.data()), page.size());
  // Both ends attach before either moves a byte (the server advertises its features first).
  auto reader = value_or_abort(Ends::reader(mem));
  auto writer = value_or_abort(Ends::writer(mem));
  std::uint64_t read = 0, errors = 0, write_errors = 0;
  peer_thread back([&](const int* stop) { read = read_all(reader, stop, errors); });
  const auto* src = reinterpret_cast<const std::byte*>(xp_pattern_source());
  std::uint64_t pos = 0;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    std::uint64_t left = byte_ring_bytes_per_iteration;
    unsigned spins = 0;
    while (left != 0) {
      const std::size_t want = left < chunk ? static_cast<std::size_t>(left) : chunk;
      auto n = writer.write({src + (pos & 255), want});
      if (!n) {
        ++write_errors;
        break;
      }
      if (*n == 0) {
        xb_spin_relax(&spins);
        continue;
      }
      pos += *n;
      left -= *n;
    }
    clock.stop();
  }
  back.stop();
  rates(state, "bytes", byte_ring_bytes_per_iteration, clock);
  if (errors + write_errors != 0 || read != pos) state.SkipWithError("xenbus byte ring carried wrong bytes");
}

template <class Ends>
void register_bytes() {
  for (std::size_t chunk : byte_chunks)
    threaded(benchmark::RegisterBenchmark(
        ("bytes/xenbus/" + std::string(Ends::name) + "/chunk:" + std::to_string(chunk)).c_str(), bytes<Ends>, chunk));
}

template <class P>
void register_stream(const char* payload_name) {
  for (unsigned order : {0U, 2U})
    threaded(benchmark::RegisterBenchmark(
        ("stream/xenbus/" + std::string(payload_name) + "/order:" + std::to_string(order)).c_str(), stream<P>, order));
}

template <class P>
void register_stream_one_thread(const char* payload_name) {
  for (unsigned order : {0U, 2U})
    single(benchmark::RegisterBenchmark(
        ("stream_one_thread/xenbus/" + std::string(payload_name) + "/order:" + std::to_string(order)).c_str(),
        stream_one_thread<P>, order));
}

}  // namespace

void register_xenbus(measure m) {
  switch (m) {
    case measure::round_trip:
      threaded(benchmark::RegisterBenchmark("round_trip/xenbus/blkif", round_trip<blkif_payload>));
      break;
    case measure::stream:
      register_stream<blkif_payload>("blkif");
      register_stream<netif_tx_payload>("netif_tx");
      register_stream_one_thread<blkif_payload>("blkif");
      register_stream_one_thread<netif_tx_payload>("netif_tx");
      break;
    case measure::notify:
      for (auto [pol, name] : {std::pair{policy::standard, "default"}, std::pair{policy::moderated, "moderated"},
                               std::pair{policy::polled, "polled"}})
        for (unsigned k : notify_loads)
          threaded(benchmark::RegisterBenchmark(
              ("notify/xenbus/" + std::string(name) + "/outstanding:" + std::to_string(k)).c_str(),
              notify<blkif_payload>, k, pol));
      break;
    case measure::bytes:
      register_bytes<xenstore_ends>();
      register_bytes<console_ends>();
      break;
  }
}

}  // namespace xbench
