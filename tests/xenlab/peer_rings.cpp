// Ring runs between two domains (or two threads on the POSIX machine): the control page, each end's loop, the figures.
#include "peer_rings.hpp"

#include "xen_peer.h"  // bench/: the C macros' loops (compiled as C in peer_ring_c.c)

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <utility>

// The C loops kick and wait through these (peer_ring_c.c defines XP_KICK and XP_WAIT to
// them); `channel` is what the C++ side passed as kick_fd/wait_fd: an index into c_links.
extern "C" void xenlab_kick(int channel);
extern "C" void xenlab_wait(int channel);

namespace xenlab {
namespace {

// The link each end's C loops use, by channel: 0 the frontend's, 1 the backend's. Each
// slot is written and read only by the thread running that end (in posix-rings both ends
// are threads of one process), so plain pointers do.
link* c_links[2] = {nullptr, nullptr};
constexpr int front_channel = 0;
constexpr int back_channel = 1;

/*
 * Page 0 of the session, shared by both ends. The frontend describes each run and, at its
 * end, its own counters; the backend answers with its counters. Three hand-offs, each a
 * release store paired with the other end's acquire load:
 *  - run:  the frontend writes the run's fields and stop = 0, then run = n (release); the
 *          backend's acquire load of run sees n and then reads the fields.
 *  - stop: the frontend writes its counters, then stop = 1 (release); the backend's loops
 *          read stop with an acquire load (xb_should_stop) before they return, and the
 *          backend reads the counters after that.
 *  - done: the backend writes its counters, then done = n (release); the frontend's
 *          acquire load of done sees n and then reads them.
 * Everything else is relaxed: published by one of these. The backend validates every
 * value the frontend wrote (it is another domain); the frontend only logs the backend's.
 */
struct control_page {
  std::uint32_t run;  // frontend: the run it started, 1, 2, ...
  std::uint32_t implementation, how, carried, order, outstanding;
  std::uint64_t sleep_bound_ns, poll_budget_ns;  // frontend: the notify_tuning of both ends
  int stop;            // frontend: 1 once the run's last request is answered (int: the C loops read it)
  std::uint32_t done;  // backend: the run whose loop returned
  std::uint64_t requests, elapsed_ns, front_kicks, front_waits, front_timeouts, front_errors;
  std::uint64_t back_kicks, back_waits, back_errors;
};
static_assert(sizeof(int) == 4 && sizeof(control_page) <= xenbus::xen_page_size);

template <class T>
std::atomic_ref<T> at(T& field) {
  return std::atomic_ref<T>(field);
}

xp_payload to_c(payload p) { return p == payload::blkif ? XP_BLKIF : XP_NETIF_TX; }

xbench::policy to_policy(mode m) {
  if (m == mode::notify_moderated) return xbench::policy::moderated;
  if (m == mode::notify_polled) return xbench::policy::polled;
  return xbench::policy::standard;
}

const char* payload_name(payload p) { return p == payload::blkif ? "blkif" : "netif_tx"; }

// How a notify run's consumers sleep: the C macros' "standard" usage, our "default"
// (the same contract through our API), "moderated" or "polled".
const char* consumer_name(const run_spec& s) {
  if (s.how == mode::notify_moderated) return "moderated";
  if (s.how == mode::notify_polled) return "polled";
  return s.implementation == impl::c ? "standard" : "default";
}

/// Calls f(P{}) with the payload type of `p`.
template <class F>
auto with_payload(payload p, F&& f) {
  if (p == payload::blkif) return f(xbench::blkif_payload{});
  return f(xbench::netif_tx_payload{});
}

std::span<std::byte> ring_of(std::span<std::byte> area, unsigned order) {
  return area.subspan(xenbus::xen_page_size, xenbus::xen_page_size << order);
}

// Requests per call of a loop: as xenbus-bench's iterations (a notify loop drains the
// ring at the end of each call, so both implementations pay the same bubble).
std::uint64_t chunk_of(mode m) { return m == mode::stream ? 4096 : 256; }

// ---- The frontend ---------------------------------------------------------------------------

struct front_counts {
  std::uint64_t requests = 0, elapsed_ns = 0;
  xbench::notify_counts notify;
  std::uint64_t errors = 0;
};

using steady = std::chrono::steady_clock;

// Repeats `one_chunk()` until `seconds` have passed or it reports an error.
template <class Chunk>
void timed(double seconds, std::uint64_t chunk, front_counts& c, Chunk&& one_chunk) {
  const auto t0 = steady::now();
  const auto until = t0 + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  do {
    if (!one_chunk()) {
      ++c.errors;
      break;
    }
    c.requests += chunk;
  } while (steady::now() < until);
  c.elapsed_ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count());
}

// Ours: initialises the ring, lets `publish` start the backend, then runs.
template <class P, class Publish>
front_counts front_ours(link& l, std::span<std::byte> ring, const run_spec& s, const session_options& opt,
                        Publish&& publish) {
  xbench::frontend<P> front(ring);
  publish();
  front_counts c;
  const std::uint64_t chunk = chunk_of(s.how);
  timed(opt.seconds, chunk, c, [&] {
    const std::uint64_t end = front.next_seq() + chunk;
    if (s.how == mode::stream)
      xbench::stream_front(front, end);
    else
      xbench::notify_front(front, end, s.outstanding, to_policy(s.how), opt.tuning, l, c.notify);
    return !front.failed();
  });
  return c;
}

// The C macros' standard usage, through bench/xen_peer.c.
template <class Publish>
front_counts front_c(std::span<std::byte> ring, const run_spec& s, const session_options& opt, Publish&& publish) {
  xp_front* f = xp_front_new(to_c(s.carried), ring.data(), ring.size());
  if (f == nullptr) give_up("ring-front", "out of memory");
  publish();
  front_counts c;
  const std::uint64_t chunk = chunk_of(s.how);
  timed(opt.seconds, chunk, c, [&] {
    if (s.how == mode::stream)
      xp_stream(f, chunk);
    else
      xp_notify_stream(f, chunk, s.outstanding, front_channel, front_channel, &c.notify.kicks, &c.notify.waits);
    return xp_front_errors(f) == 0;
  });
  xp_front_free(f);
  return c;
}

// ---- The backend ----------------------------------------------------------------------------

struct back_counts {
  xbench::notify_counts notify;
  std::uint64_t errors = 0;
};

template <class P>
back_counts back_ours(link& l, std::span<std::byte> ring, const run_spec& s, const session_options& opt,
                      const int* stop) {
  xbench::backend<P> b(ring);
  back_counts c;
  const bool ok = s.how == mode::stream ? xbench::back_spin(b, stop)
                                        : xbench::notify_back(b, to_policy(s.how), opt.tuning, l, stop, c.notify);
  if (!ok) ++c.errors;
  return c;
}

back_counts back_c(std::span<std::byte> ring, const run_spec& s, const int* stop) {
  back_counts c;
  if (s.how == mode::stream)
    c.errors = xp_back_spin(to_c(s.carried), ring.data(), ring.size(), stop);
  else
    c.errors = xp_notify_back(to_c(s.carried), ring.data(), ring.size(), back_channel, back_channel, stop,
                              &c.notify.kicks, &c.notify.waits);
  return c;
}

// Slots of the ring a run uses (RING_SIZE), for the frontend's `outstanding`.
std::uint32_t slots_of(payload p, unsigned order) {
  return with_payload(
      p, [order]<class P>(P) { return xenbus::ring_size_for_order<typename P::request, typename P::response>(order); });
}

// The longest moderated sleep bound or poll budget a frontend may ask for.
constexpr std::uint64_t max_tuning_ns = 1'000'000'000;

// What the backend reads of a run, checked: the frontend is another domain.
bool valid_spec(const run_spec& s) {
  const bool known_mode = s.how <= mode::quit;
  const bool known_impl = s.implementation == impl::c || s.implementation == impl::ours;
  const bool c_can = s.implementation == impl::ours || s.how == mode::notify_standard || s.how == mode::stream;
  const bool known_payload = s.carried == payload::blkif || s.carried == payload::netif_tx;
  if (!known_mode || s.how == mode::quit) return known_mode;
  return known_impl && c_can && known_payload && s.order <= max_ring_order &&
         (s.how == mode::stream || (s.outstanding >= 1 && s.outstanding <= slots_of(s.carried, s.order)));
}

// Sums of the runs of one measure over the rounds.
struct tally {
  run_spec spec;
  std::uint64_t requests = 0, elapsed_ns = 0, front_kicks = 0, back_kicks = 0, waits = 0, timeouts = 0;
  double per_s() const {
    return elapsed_ns ? static_cast<double>(requests) * 1e9 / static_cast<double>(elapsed_ns) : 0;
  }
  double per_req(std::uint64_t n) const {
    return requests ? static_cast<double>(n) / static_cast<double>(requests) : 0;
  }
};

std::size_t request_bytes(payload p) { return xp_request_size(to_c(p)); }

void print_figures(const std::vector<std::string>& order, const std::map<std::string, tally>& tallies) {
  for (const auto& name : order) {
    const tally& t = tallies.at(name);
    figure(name + ".requests_per_s", t.per_s(), "req/s");
    if (t.spec.how == mode::stream) {
      figure(name + ".bytes_per_s", t.per_s() * static_cast<double>(request_bytes(t.spec.carried)), "B/s");
      continue;
    }
    figure(name + ".kicks_to_back_per_req", t.per_req(t.front_kicks), "kicks/req");
    figure(name + ".kicks_to_front_per_req", t.per_req(t.back_kicks), "kicks/req");
    figure(name + ".waits_per_req", t.per_req(t.waits), "waits/req");
    if (t.spec.how != mode::notify_standard) figure(name + ".timeouts_per_req", t.per_req(t.timeouts), "timeouts/req");
  }
  // Ratios ours/C, each against the C run of the same load or stream.
  for (const auto& name : order) {
    const tally& t = tallies.at(name);
    if (t.spec.implementation != impl::ours) continue;
    run_spec c_spec = t.spec;
    c_spec.implementation = impl::c;
    if (c_spec.how != mode::stream) c_spec.how = mode::notify_standard;
    const auto c = tallies.find(run_name(c_spec));
    if (c == tallies.end()) continue;
    const std::string base =
        t.spec.how == mode::stream
            ? "ratio.stream." + std::string(payload_name(t.spec.carried)) + ".order" + std::to_string(t.spec.order)
            : "ratio.notify.out" + std::to_string(t.spec.outstanding) + "." + consumer_name(t.spec) + "_vs_c";
    if (c->second.per_s() > 0) figure(base + ".requests_per_s", t.per_s() / c->second.per_s(), "x");
    if (t.spec.how == mode::stream) continue;
    const double ck = c->second.per_req(c->second.front_kicks + c->second.back_kicks);
    if (ck > 0) figure(base + ".kicks_per_req", t.per_req(t.front_kicks + t.back_kicks) / ck, "x");
  }
}

}  // namespace

std::string run_name(const run_spec& s) {
  const char* who = s.implementation == impl::c ? "c" : "ours";
  if (s.how == mode::stream)
    return std::string("stream.") + who + "." + payload_name(s.carried) + ".order" + std::to_string(s.order);
  return std::string("notify.") + who + "." + consumer_name(s) + ".out" + std::to_string(s.outstanding);
}

std::vector<run_spec> make_plan(const std::vector<unsigned>& loads, const std::vector<run_spec>& streams,
                                unsigned rounds) {
  std::vector<run_spec> plan;
  for (unsigned r = 0; r < rounds; ++r) {
    for (unsigned k : loads) {
      plan.push_back({impl::c, mode::notify_standard, payload::blkif, 0, k});
      for (mode m : {mode::notify_standard, mode::notify_moderated, mode::notify_polled})
        plan.push_back({impl::ours, m, payload::blkif, 0, k});
    }
    for (const run_spec& s : streams) {
      plan.push_back({impl::c, mode::stream, s.carried, s.order, 0});
      plan.push_back({impl::ours, mode::stream, s.carried, s.order, 0});
    }
  }
  return plan;
}

bool front_session(link& l, std::span<std::byte> area, const std::vector<run_spec>& plan, const session_options& opt) {
  auto& ctl = *reinterpret_cast<control_page*>(area.data());
  c_links[front_channel] = &l;
  bool ok = true;
  std::uint32_t run = 0;
  auto start = [&](const run_spec& s) {
    ++run;
    // Relaxed: published by the release store of run below.
    at(ctl.implementation).store(static_cast<std::uint32_t>(s.implementation), std::memory_order_relaxed);
    at(ctl.how).store(static_cast<std::uint32_t>(s.how), std::memory_order_relaxed);
    at(ctl.carried).store(static_cast<std::uint32_t>(s.carried), std::memory_order_relaxed);
    at(ctl.order).store(s.order, std::memory_order_relaxed);
    at(ctl.outstanding).store(s.outstanding, std::memory_order_relaxed);
    at(ctl.sleep_bound_ns).store(static_cast<std::uint64_t>(opt.tuning.sleep_bound_ns), std::memory_order_relaxed);
    at(ctl.poll_budget_ns).store(static_cast<std::uint64_t>(opt.tuning.poll_budget.count()), std::memory_order_relaxed);
    at(ctl.stop).store(0, std::memory_order_relaxed);
    // Release: the fields above and the initialised ring before the run number; pairs
    // with the backend's acquire load of run.
    at(ctl.run).store(run, std::memory_order_release);
    l.kick();  // the backend may sleep waiting for a run
  };
  auto await_done = [&] {
    // Acquire: pairs with the backend's release store of done; its counters are visible.
    while (at(ctl.done).load(std::memory_order_acquire) != run) l.wait();
  };
  for (const run_spec& s : plan) {
    if (s.how != mode::stream && s.outstanding > slots_of(s.carried, s.order))
      give_up("ring-plan", run_name(s) + ": more outstanding requests than the ring has slots");
    const auto ring = ring_of(area, s.order);
    auto publish = [&] { start(s); };
    const front_counts c =
        s.implementation == impl::c
            ? front_c(ring, s, opt, publish)
            : with_payload(s.carried, [&]<class P>(P) { return front_ours<P>(l, ring, s, opt, publish); });
    // Relaxed: published by the release store of stop.
    at(ctl.requests).store(c.requests, std::memory_order_relaxed);
    at(ctl.elapsed_ns).store(c.elapsed_ns, std::memory_order_relaxed);
    at(ctl.front_kicks).store(c.notify.kicks, std::memory_order_relaxed);
    at(ctl.front_waits).store(c.notify.waits, std::memory_order_relaxed);
    at(ctl.front_timeouts).store(c.notify.timeouts, std::memory_order_relaxed);
    at(ctl.front_errors).store(c.errors, std::memory_order_relaxed);
    // Release: every request answered and the counters above before stop; pairs with the
    // acquire load of stop in the backend's loop (xb_should_stop).
    at(ctl.stop).store(1, std::memory_order_release);
    l.kick();
    await_done();
    const std::uint64_t back_errors = at(ctl.back_errors).load(std::memory_order_relaxed);
    XENLAB_INFO("frontend %s: %llu requests in %.3f s, %llu kicks, %llu waits, %llu timeouts, errors %llu/%llu",
                run_name(s).c_str(), static_cast<unsigned long long>(c.requests),
                static_cast<double>(c.elapsed_ns) / 1e9, static_cast<unsigned long long>(c.notify.kicks),
                static_cast<unsigned long long>(c.notify.waits), static_cast<unsigned long long>(c.notify.timeouts),
                static_cast<unsigned long long>(c.errors), static_cast<unsigned long long>(back_errors));
    if (c.errors != 0) {
      XENLAB_FAIL("ring-run %s the frontend saw a wrong response id or index", run_name(s).c_str());
      ok = false;
    }
  }
  start(run_spec{impl::c, mode::quit, payload::blkif, 0, 0});
  await_done();
  return ok;
}

bool back_session(link& l, std::span<std::byte> area) {
  auto& ctl = *reinterpret_cast<control_page*>(area.data());
  c_links[back_channel] = &l;
  const int* stop = &ctl.stop;
  std::map<std::string, tally> tallies;
  std::vector<std::string> order;  // names in first-run order
  bool ok = true;
  for (std::uint32_t last = 0;;) {
    std::uint32_t run;
    // Acquire: pairs with the frontend's release store of run (the fields and the ring).
    while ((run = at(ctl.run).load(std::memory_order_acquire)) == last) l.wait();
    if (run != last + 1)
      give_up("ring-back", "the frontend skipped from run " + std::to_string(last) + " to " + std::to_string(run));
    last = run;
    // Relaxed: published by the release store of run, seen above.
    const run_spec s{static_cast<impl>(at(ctl.implementation).load(std::memory_order_relaxed)),
                     static_cast<mode>(at(ctl.how).load(std::memory_order_relaxed)),
                     static_cast<payload>(at(ctl.carried).load(std::memory_order_relaxed)),
                     at(ctl.order).load(std::memory_order_relaxed),
                     at(ctl.outstanding).load(std::memory_order_relaxed)};
    const std::uint64_t bound_ns = at(ctl.sleep_bound_ns).load(std::memory_order_relaxed);
    const std::uint64_t poll_ns = at(ctl.poll_budget_ns).load(std::memory_order_relaxed);
    if (!valid_spec(s) || bound_ns > max_tuning_ns || poll_ns > max_tuning_ns)
      give_up("ring-back", "the frontend asked for a run that does not exist (run " + std::to_string(run) + ")");
    session_options opt;
    opt.tuning.sleep_bound_ns = static_cast<long>(bound_ns);
    opt.tuning.poll_budget = std::chrono::nanoseconds(poll_ns);
    if (s.how == mode::quit) {
      // Release: pairs with the frontend's acquire load of done.
      at(ctl.done).store(run, std::memory_order_release);
      l.kick();
      break;
    }
    const auto ring = ring_of(area, s.order);
    const back_counts b =
        s.implementation == impl::c
            ? back_c(ring, s, stop)
            : with_payload(s.carried, [&]<class P>(P) { return back_ours<P>(l, ring, s, opt, stop); });
    // Acquire: the loops returned after an acquire load of stop == 1; this one orders the
    // reads below after it in this function too (pairs with the frontend's release of stop).
    const bool stopped = at(ctl.stop).load(std::memory_order_acquire) == 1;
    tally r{s};
    r.requests = at(ctl.requests).load(std::memory_order_relaxed);
    r.elapsed_ns = at(ctl.elapsed_ns).load(std::memory_order_relaxed);
    r.front_kicks = at(ctl.front_kicks).load(std::memory_order_relaxed);
    r.back_kicks = b.notify.kicks;
    r.waits = at(ctl.front_waits).load(std::memory_order_relaxed) + b.notify.waits;
    r.timeouts = at(ctl.front_timeouts).load(std::memory_order_relaxed);
    const std::uint64_t front_errors = at(ctl.front_errors).load(std::memory_order_relaxed);
    // Relaxed: published by the release store of done.
    at(ctl.back_kicks).store(b.notify.kicks, std::memory_order_relaxed);
    at(ctl.back_waits).store(b.notify.waits, std::memory_order_relaxed);
    at(ctl.back_errors).store(b.errors, std::memory_order_relaxed);
    // Release: pairs with the frontend's acquire load of done.
    at(ctl.done).store(run, std::memory_order_release);
    l.kick();

    const std::string name = run_name(s);
    // The frontend's counters are another domain's numbers: plausible or the run fails. A
    // run lasts seconds, never an hour; no loop kicks, waits or times out more than twice
    // per request plus once per call.
    const std::uint64_t bound = 2 * r.requests + 2 * (r.requests / chunk_of(s.how) + 1);
    const bool plausible = stopped && r.requests > 0 && r.elapsed_ns > 0 && r.elapsed_ns < 3'600'000'000'000ULL &&
                           r.front_kicks <= bound && r.waits <= 2 * bound && r.timeouts <= bound;
    const std::string detail =
        std::to_string(r.requests) + " requests in " + std::to_string(static_cast<double>(r.elapsed_ns) / 1e9) +
        " s, kicks " + std::to_string(r.front_kicks) + " to the backend and " + std::to_string(r.back_kicks) +
        " to the frontend, errors: frontend " + std::to_string(front_errors) + ", backend " + std::to_string(b.errors);
    if (!check(plausible && front_errors == 0 && b.errors == 0, ("ring-run " + name).c_str(), detail)) {
      ok = false;
      continue;
    }
    auto [it, fresh] = tallies.try_emplace(name, tally{s});
    if (fresh) order.push_back(name);
    tally& t = it->second;
    t.requests += r.requests;
    t.elapsed_ns += r.elapsed_ns;
    t.front_kicks += r.front_kicks;
    t.back_kicks += r.back_kicks;
    t.waits += r.waits;
    t.timeouts += r.timeouts;
  }
  print_figures(order, tallies);
  return ok;
}

}  // namespace xenlab

extern "C" void xenlab_kick(int channel) { xenlab::c_links[channel]->kick(); }
extern "C" void xenlab_wait(int channel) { xenlab::c_links[channel]->wait(); }
