// Ours: xenbus::front_ring / back_ring of <xenbus/ring/request_ring.hpp> (and its byte rings) in each measure.
#include "harness.hpp"
#include "payloads.hpp"

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

template <class P>
using front_t = xenbus::front_ring<typename P::request, typename P::response>;
template <class P>
using back_t = xenbus::back_ring<typename P::request, typename P::response>;

std::span<std::byte> bytes_of(const shared_pages& pages) {
  return {static_cast<std::byte*>(pages.data()), pages.size()};
}

// The frontend as a driver writes it with our API: produce_n() fills a batch of request
// slots in place (one capacity check per batch, as the C loop tests RING_FULL), and
// consume_responses() hands out private copies; ids are checked as the C peer checks them.
template <class P>
class frontend {
 public:
  explicit frontend(const shared_pages& pages) : ring_(init(pages)) {}

  [[nodiscard]] bool failed() const { return errors_ != 0 || ring_.broken().has_value(); }
  [[nodiscard]] xenbus::ring_idx size() const { return ring_.size(); }
  [[nodiscard]] std::uint64_t in_flight() const { return seq_ - expected_; }

  /// Fills free slots with requests until `limit` are in flight or `end` is reached.
  /// Returns how many it produced.
  std::uint64_t produce_until(std::uint64_t end, std::uint64_t limit) {
    const std::uint64_t in_flight = seq_ - expected_;
    if (seq_ == end || in_flight >= limit) return 0;
    const std::uint64_t want = std::min(end - seq_, limit - in_flight);
    // produce_n stops at the free slots (full: never here, limit <= size; or broken).
    std::uint64_t seq = seq_;
    const xenbus::ring_idx n = ring_.produce_n(static_cast<xenbus::ring_idx>(want),
                                               [&seq](typename P::request& slot) { P::fill(slot, seq++); });
    seq_ = seq;
    return n;
  }

  void push() {
    if (!ring_.push()) ++errors_;
  }

  /// Pushes and says whether the backend asked for a kick.
  bool push_and_check_notify() {
    auto r = ring_.push_and_check_notify();
    if (!r) {
      ++errors_;
      return false;
    }
    return *r;
  }

  /// Takes every response there is; returns how many (0 also when broken: see failed()).
  xenbus::ring_idx consume() {
    auto n = ring_.consume_responses(ring_.size(), [this](const typename P::response& rsp) {
      if (!P::id_matches(rsp, expected_)) ++errors_;
      ++expected_;
    });
    if (!n) {
      ++errors_;
      return 0;
    }
    return *n;
  }

  /// True if responses are waiting (or the ring broke: consume() will say so).
  bool pending() {
    auto n = ring_.unconsumed_responses();
    return !n || *n != 0;
  }

  /// The final check before sleeping; true: there is work, do not sleep.
  bool final_check(xenbus::ring_idx k) {
    auto r = ring_.final_check(k);
    if (!r) {
      ++errors_;
      return true;  // do not sleep on a broken ring; the loop ends on failed()
    }
    return *r;
  }

  [[nodiscard]] std::uint64_t next_seq() const { return seq_; }
  [[nodiscard]] std::uint64_t expected() const { return expected_; }
  /// The ring itself, for the library's wait_for_work().
  front_t<P>& ring() { return ring_; }

 private:
  static front_t<P> init(const shared_pages& pages) {
    auto r = front_t<P>::init(bytes_of(pages));
    if (!r) std::abort();  // our own page: page-aligned and large enough
    return std::move(r).value();
  }

  front_t<P> ring_;
  std::uint64_t seq_ = 0;       // id source of the next request
  std::uint64_t expected_ = 0;  // seq of the next response
  std::uint64_t errors_ = 0;
};

// The backend: echoes each request with respond(), which copies the request once and has
// the response written in place into its slot, as the C peer's echo loop does with
// RING_COPY_REQUEST and RING_GET_RESPONSE.
template <class P>
class backend {
 public:
  explicit backend(const shared_pages& pages) : ring_(attach(pages)) {}

  /// Echoes every request there is; returns how many, or -1 once the ring is broken.
  long echo() {
    auto n = ring_.respond(ring_.size(),
                           [](const typename P::request& req, typename P::response& rsp) { P::echo(rsp, req); });
    return n ? static_cast<long>(*n) : -1;
  }
  bool push() { return ring_.push().has_value(); }
  /// Pushes; true if the frontend asked for a kick.  A broken ring never asks.
  bool push_and_check_notify() {
    auto r = ring_.push_and_check_notify();
    return r && *r;
  }
  /// True if requests are waiting (or the ring broke: echo() will say so).
  bool pending() {
    auto n = ring_.unconsumed_requests();
    return !n || *n != 0;
  }
  /// True: there is work (or the ring broke: echo() will say so), do not sleep.
  bool final_check() {
    auto r = ring_.final_check();
    return !r || *r;
  }
  /// The ring itself, for the library's wait_for_work().
  back_t<P>& ring() { return ring_; }

 private:
  static back_t<P> attach(const shared_pages& pages) {
    auto r = back_t<P>::attach(bytes_of(pages));
    if (!r) std::abort();
    return std::move(r).value();
  }

  back_t<P> ring_;
};

template <class P>
void back_spin(const shared_pages& pages, const int* stop, std::uint64_t& errors) {
  backend<P> back(pages);
  unsigned spins = 0;
  for (;;) {
    const long n = back.echo();
    if (n < 0) {
      ++errors;
      return;
    }
    if (n > 0) {
      back.push();
      continue;
    }
    if (xb_should_stop(stop)) return;
    xb_spin_relax(&spins);
  }
}

template <class P>
void round_trip(benchmark::State& state) {
  shared_pages pages(ring_bytes(0));
  frontend<P> front(pages);
  std::uint64_t back_errors = 0;
  peer_thread back([&](const int* stop) { back_spin<P>(pages, stop, back_errors); });
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
  frontend<P> front(pages);
  std::uint64_t back_errors = 0;
  peer_thread back([&](const int* stop) { back_spin<P>(pages, stop, back_errors); });
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    const std::uint64_t end = front.next_seq() + stream_requests_per_iteration;
    unsigned spins = 0;
    while (front.expected() != end && !front.failed()) {
      if (front.produce_until(end, front.size()) != 0) front.push();
      if (front.consume() == 0) xb_spin_relax(&spins);
    }
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
  frontend<P> front(pages);
  backend<P> back(pages);
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

// How the notification-driven ends sleep.
enum class policy {
  standard,   // final_check(): wake me at the next response (RING_FINAL_CHECK_FOR_RESPONSES)
  moderated,  // frontend final_check(k): wake me once every request in flight is
              // answered, with the wait bounded by moderation_timeout_ns
  polled,     // the library's wait_for_work(): both ends poll their ring for up to
              // poll_budget before the final check (the frontend's moderated, with its
              // sleep bounded): polling spends CPU to save kicks and wakeups
};
inline constexpr long moderation_timeout_ns = 200'000;
inline constexpr auto poll_budget = std::chrono::microseconds(25);

template <class P>
void notify(benchmark::State& state, unsigned outstanding, policy pol) {
  shared_pages pages(ring_bytes(0));
  frontend<P> front(pages);
  event_channel to_back, to_front;
  std::uint64_t back_errors = 0, back_kicks = 0, back_waits = 0;
  peer_thread back(
      [&](const int* stop) {
        backend<P> b(pages);
        for (;;) {
          const long n = b.echo();
          if (n < 0) {
            ++back_errors;
            return;
          }
          if (n > 0) {
            if (b.push_and_check_notify()) {
              to_front.kick();
              ++back_kicks;
            }
            continue;
          }
          if (pol == policy::polled) {
            // The library's poll-then-sleep; the stop flag is checked before each sleep.
            bool stopping = false;
            const xenbus::wait_policy wp{.poll_budget = poll_budget};
            auto w = xenbus::wait_for_work(b.ring(), wp, [&](std::optional<std::chrono::nanoseconds>) {
              if (xb_should_stop(stop)) {
                stopping = true;
                return false;
              }
              to_back.wait();
              ++back_waits;
              return true;
            });
            if (stopping) return;
            (void)w;  // a broken ring: echo() reports it on the next pass
            continue;
          }
          if (b.final_check()) continue;
          if (xb_should_stop(stop)) return;
          to_back.wait();
          ++back_waits;
        }
      },
      &to_back);

  std::uint64_t kicks = 0, waits = 0, timeouts = 0;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    const std::uint64_t end = front.next_seq() + notify_requests_per_iteration;
    while (front.expected() != end && !front.failed()) {
      if (front.produce_until(end, outstanding) != 0 && front.push_and_check_notify()) {
        to_back.kick();
        ++kicks;
      }
      if (front.consume() != 0) continue;
      if (pol == policy::polled) {
        const xenbus::wait_policy wp{.poll_budget = poll_budget,
                                     .batch = static_cast<xenbus::ring_idx>(front.in_flight()),
                                     .sleep_bound = std::chrono::nanoseconds(moderation_timeout_ns)};
        auto w = xenbus::wait_for_work(front.ring(), wp, [&](std::optional<std::chrono::nanoseconds> bound) {
          ++waits;
          if (!bound) {
            to_front.wait();
            return true;
          }
          return to_front.wait_for(static_cast<long>(bound->count()));
        });
        if (w && *w == xenbus::wake::timed_out) ++timeouts;
        continue;
      }
      if (pol == policy::standard) {
        if (front.final_check(1)) continue;
        to_front.wait();
      } else {
        const auto k = static_cast<xenbus::ring_idx>(front.in_flight());
        if (front.final_check(k)) continue;
        // k == 1 is the standard contract: any peer notifies. Beyond that an unmodified
        // peer may never reach our event, so the sleep is bounded.
        if (k <= 1)
          to_front.wait();
        else if (!to_front.wait_for(moderation_timeout_ns))
          ++timeouts;
      }
      ++waits;
    }
    clock.stop();
  }
  back.stop();
  const double requests = total(state, notify_requests_per_iteration);
  rates(state, "requests", notify_requests_per_iteration, clock);
  value(state, "kicks_per_request", static_cast<double>(kicks + back_kicks) / requests);
  value(state, "waits_per_request", static_cast<double>(waits + back_waits) / requests);
  if (pol != policy::standard) value(state, "timeouts_per_request", static_cast<double>(timeouts) / requests);
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
