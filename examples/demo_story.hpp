// [posix] The two-domain demo's roles and story, whatever the machine: xenbus-demo runs them over
// the POSIX machine and our xenstore server, xenbus-xen-demo over a real Xen. The roles are
// templates on the store, event-channel and grant types; where processes run is a launcher's.
#pragma once

#include <xenbus/hosted/device.hpp>
#include <xenbus/posix/evtchn.hpp>

#include <chrono>
#include <cinttypes>
#include <concepts>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <time.h>
#include <unistd.h>

namespace demo {

using namespace xenbus;
using clock_type = std::chrono::steady_clock;

struct demo_request {
  std::uint64_t id;
  std::uint64_t payload;
};
struct demo_response {
  std::uint64_t id;
  std::uint64_t result;
};
/// The demo's device type: 4-page rings, one queue.
struct demo_protocol {
  using request = demo_request;
  using response = demo_response;
  static constexpr std::string_view type = "vdemo";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 2;
  static constexpr unsigned max_queues = 1;
};
/// What the backend answers to a request: a value the frontend checks.
constexpr std::uint64_t answer(std::uint64_t payload) noexcept { return payload * 2 + 1; }

// ---- the log ------------------------------------------------------------------------------

/// The log's times count from here; a process started by another is handed its parent's.
inline std::int64_t t0_ns = 0;

inline std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

/// One line, written with one write(2) so that the processes' lines do not interleave.
inline void say(std::string_view who, std::string_view what) {
  char buf[512];
  const double ms = static_cast<double>(now_ns() - t0_ns) / 1e6;
  const int n = std::snprintf(buf, sizeof buf, "%8.1f ms  %-14.*s %.*s\n", ms, static_cast<int>(who.size()), who.data(),
                              static_cast<int>(what.size()), what.data());
  if (n > 0) (void)!::write(STDOUT_FILENO, buf, static_cast<std::size_t>(n < 512 ? n : 511));
}

/// Set by SIGTERM: a role ends its loop and exits.
inline volatile std::sig_atomic_t stop_requested = 0;
inline void stop_on_sigterm() {
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
}

// ---- where the frontend domain reports ------------------------------------------------------

/// The frontend domain's corner of its home's data/, which libxl lets the guest write.
inline std::string data_dir(domid_t frontend_dom) {
  return "/local/domain/" + std::to_string(frontend_dom) + "/data/xenbus-demo";
}
/// A frontend process's result: "<answered> <seconds> <wrong>".
inline std::string result_path(domid_t frontend_dom, std::string_view who) {
  return data_dir(frontend_dom) + "/result/" + std::string(who);
}
/// Written by a handed-over frontend that saw the backend answer its successor and did nothing.
inline std::string quiet_path(domid_t frontend_dom, std::string_view who) {
  return data_dir(frontend_dom) + "/quiet/" + std::string(who);
}

template <device_store S>
bool node_gone(S& s, const std::string& path) {
  auto r = s.read(no_tx, path);
  return !r && r.error().code == store_errc::enoent;
}

/// What a role process is told.
struct role_options {
  std::string who;
  domid_t self = 0;                  ///< the domain this process runs in
  unsigned devid = 0;                ///< frontend: its device
  bool handover = false;             ///< frontend: take the device over from a running instance
  std::uint64_t requests = 2000000;  ///< frontend: how many to stream (at most one second of them)
  int lifetime_s = 30;               ///< no role outlives this
  bool until_idle = true;            ///< backend: exit once every device it served is gone
};

// ---- the backend --------------------------------------------------------------------------

/// The backend role: serves every vdemo device whose backend directory lies in our domain
/// (/local/domain/<self>/backend/vdemo/<frontend domid>/<devid>), as a backend domain's driver
/// does. A device the toolstack creates (backend state Initialising) gets a backend<>; one
/// whose device was removed is dropped, which unwatches and releases what it still held. One
/// store connection, one event-channel handle and one grant handle serve every device, so
/// a long-lived pool holds the same descriptors whatever comes and goes.
template <device_store S, event_channel E, grant_mapper G>
class backend_pool {
 public:
  using backend_type = backend<demo_protocol, S, E, G>;

  backend_pool(S& store, E& evtchn, G& grants, domid_t self, std::string who)
      : s_{store},
        ev_{evtchn},
        grants_{grants},
        self_{self},
        who_{std::move(who)},
        type_dir_{"/local/domain/" + std::to_string(self) + "/backend/" + std::string(demo_protocol::type)} {}

  ~backend_pool() {
    devices_.clear();
    (void)s_.unwatch(type_dir_, token_);
  }
  backend_pool(const backend_pool&) = delete;
  backend_pool& operator=(const backend_pool&) = delete;

  /// At most this many devices at once; the toolstack's further devices wait, unserved.
  static constexpr std::size_t max_devices = 256;

  /// Watches the type's directory; the watch fires once at once, which makes the first scan.
  result<void, store_error> start() { return s_.watch(type_dir_, token_); }

  /// Serves until SIGTERM, the lifetime, or (until_idle) the last device served is gone.
  /// Exit status 0 when every device dropped had ended Closed.
  int run(const role_options& o) {
    const auto deadline = clock_type::now() + std::chrono::seconds(o.lifetime_s);
    while (!stop_requested && clock_type::now() < deadline) {
      const bool busy = any_connected();
      deliver(busy ? 0 : 50);  // idle: wait for the store; serving: just look
      reap();
      if (o.until_idle && adopted_ > 0 && devices_.empty()) break;
      if (!busy) continue;
      for (int i = 0; i < 64; ++i) {  // unmask every raised port; the rings say what is new
        auto p = ev_.pending();
        if (!p) break;
        (void)ev_.unmask(*p);
      }
      if (!serve()) posix::wait_readable(ev_.fd(), 10);
    }
    const std::size_t left = devices_.size();
    devices_.clear();  // each backend unwatches and releases its mappings and ports
    say(who_, "exits: " + std::to_string(adopted_) + " device(s) served, " + std::to_string(served_total_) +
                  " requests, " + std::to_string(left) + " still present");
    return bad_ ? 1 : 0;
  }

 private:
  struct device {
    domid_t frontend;
    unsigned devid;
    std::unique_ptr<backend_type> be;
    std::uint64_t served = 0;
  };

  bool any_connected() const {
    for (const auto& d : devices_)
      if (d->be->connected()) return true;
    return false;
  }

  void deliver(int timeout_ms) {
    for (int n = 0; n < 1024; ++n) {  // bounded: a flood of events cannot pin us here
      auto ev = s_.next_watch_event(n == 0 ? timeout_ms : 0);
      if (!ev) return;
      if (ev->token == token_) {
        pool_event(ev->path);
        continue;
      }
      for (auto& d : devices_)
        if (d->be->handle(*ev)) break;
    }
  }

  /// Every write under the type's directory fires: only a device's own node or its state
  /// can announce a new device, and only the watch's first firing needs a full scan.
  void pool_event(const std::string& path) {
    if (path == type_dir_) return scan_all();
    if (!path.starts_with(type_dir_ + "/")) return;
    const std::string_view rest = std::string_view(path).substr(type_dir_.size() + 1);
    const auto a = rest.find('/');
    if (a == std::string_view::npos) return;
    const auto b = rest.find('/', a + 1);
    if (b != std::string_view::npos && rest.substr(b + 1) != "state") return;
    auto fe = parse_uint(rest.substr(0, a), 0x7fef);  // DOMID_FIRST_RESERVED - 1
    auto id =
        parse_uint(rest.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1), 0xffffffffu);
    if (fe && id) consider(static_cast<domid_t>(*fe), *id);
  }

  void scan_all() {
    auto doms = s_.directory(no_tx, type_dir_);
    if (!doms) return;
    for (const std::string& d : *doms) {
      auto fe = parse_uint(d, 0x7fef);
      auto ids = s_.directory(no_tx, type_dir_ + "/" + d);
      if (!fe || !ids) continue;
      for (const std::string& i : *ids)
        if (auto id = parse_uint(i, 0xffffffffu)) consider(static_cast<domid_t>(*fe), *id);
    }
  }

  /// Adopts a device the toolstack just created: its backend node reads Initialising.
  void consider(domid_t fe, unsigned devid) {
    for (const auto& d : devices_)
      if (d->frontend == fe && d->devid == devid) return;
    if (devices_.size() >= max_devices) return;
    auto st = s_.read(no_tx, type_dir_ + "/" + std::to_string(fe) + "/" + std::to_string(devid) + "/state");
    if (!st || *st != to_node_text(state::initialising)) return;
    auto d = std::make_unique<device>(device{fe, devid, nullptr, 0});
    d->be =
        std::make_unique<backend_type>(s_, ev_, grants_, self_, fe, devid,
                                       backend_options{.max_ring_page_order = 2, .features = {{"feature-demo", "1"}}});
    const std::string name = who_ + " " + std::to_string(fe) + "/" + std::to_string(devid);
    d->be->set_logger([name](std::string_view l) { say(name, l); });
    if (auto r = d->be->start(); !r) {
      say(name, "cannot start: " + std::string(to_string(r.error().code)));
      ++bad_;
      return;
    }
    ++adopted_;
    devices_.push_back(std::move(d));
  }

  /// Drops the backends that stopped acting (their device was removed).
  void reap() {
    for (auto it = devices_.begin(); it != devices_.end();) {
      backend_type& be = *(*it)->be;
      if (be.active()) {
        ++it;
        continue;
      }
      const std::string name = who_ + " " + std::to_string((*it)->frontend) + "/" + std::to_string((*it)->devid);
      say(name, "served " + std::to_string((*it)->served) + " requests; stops (" + be.reason_text() + ")");
      if (be.own() != state::closed) ++bad_;
      it = devices_.erase(it);
    }
  }

  /// One bounded pass over every connected ring (XSA-391: bounded work per wakeup). True if
  /// any ring had work or may have more.
  bool serve() {
    bool any = false;
    for (auto& d : devices_) {
      backend_type& be = *d->be;
      if (!be.connected()) continue;
      auto& ring = *be.queue_at(0).ring;
      bool got = false;
      for (unsigned budget = 0; budget < 4096; ++budget) {
        auto req = be.take_request(0);
        if (!req || !*req) break;
        got = true;
        ring.produce(demo_response{(*req)->id, answer((*req)->payload)});
        ++d->served;
        ++served_total_;
      }
      if (got) {
        (void)be.push(0);
        any = true;
        continue;
      }
      if (!be.connected()) continue;  // a corrupted ring closed it
      auto more = ring.final_check();
      any = any || (more && *more);
    }
    return any;
  }

  S& s_;
  E& ev_;
  G& grants_;
  domid_t self_;
  std::string who_, type_dir_;
  std::string token_ = "xenbus-demo-backend-pool";
  std::vector<std::unique_ptr<device>> devices_;
  std::uint64_t adopted_ = 0, served_total_ = 0;
  int bad_ = 0;
};

// ---- the frontend -------------------------------------------------------------------------

/// The frontend role: connects device `o.devid` of domain `o.self`, streams `o.requests`
/// through the ring and checks every answer, reports to its result node, then stays until its
/// device is removed (or SIGTERM). Started with `o.handover` it takes over from a running
/// instance (the seed's kexec); that older instance then stays alive and quiet, and reports it.
template <device_store S, event_channel E, grant_sharer G>
int run_frontend(const role_options& o, S& s, E& ev, G& grants) {
  frontend<demo_protocol, S, E, G> fe{
      s,      ev,      grants,
      o.self, o.devid, {.ring_page_order = 2, .start = o.handover ? frontend_start::handover : frontend_start::fresh}};
  fe.set_logger([&](std::string_view l) { say(o.who, l); });
  if (auto r = fe.start(); !r) {
    say(o.who, "cannot start: " + std::string(to_string(r.error().code)));
    return 3;
  }
  const std::string result = result_path(o.self, o.who);
  bool streamed = false, reported_quiet = false;
  std::uint64_t writes_at_handover = 0;
  std::int64_t last_look = 0;
  // Our driver knows when its device is removed; a handed-over one no longer looks, so it
  // reads the node itself, now and then.
  auto gone = [&] {
    if (fe.active()) return false;
    if (fe.reason() != close_reason::handed_over) return true;
    if (now_ns() - last_look < 200000000) return false;
    last_look = now_ns();
    return node_gone(s, fe.dir() + "/state");
  };
  const auto deadline = clock_type::now() + std::chrono::seconds(o.lifetime_s);
  while (!stop_requested && clock_type::now() < deadline && !gone()) {
    deliver_watch_events(s, 50, fe);
    if (fe.active()) writes_at_handover = fe.state_writes();
    if (!fe.active() && fe.reason() == close_reason::handed_over && !reported_quiet) {
      // The old kernel's frontend: its machine refuses every move now. Watch the backend
      // answer the new instance (InitWait, or already Connected to it: our node, which the
      // new instance writes, is Connected again), and check that the driver wrote nothing.
      const std::string b = s.read(no_tx, fe.peer_dir() + "/state").value_or("");
      const bool answered = b == to_node_text(state::init_wait) ||
                            (b == to_node_text(state::connected) &&
                             s.read(no_tx, fe.dir() + "/state").value_or("") == to_node_text(state::connected));
      if (answered && fe.state_writes() == writes_at_handover) {
        say(o.who,
            std::string("sees the backend ") +
                (b == to_node_text(state::init_wait) ? "answer with InitWait" : "Connected to the new instance") +
                " and ignores it: handed over, quiet");
        (void)s.write(no_tx, quiet_path(o.self, o.who), "quiet");
        reported_quiet = true;
      }
    }
    if (streamed || !fe.connected()) continue;
    // Stream requests: fill the ring, push (notify if asked), take responses, check each.
    auto& ring = *fe.queue_at(0).ring;
    std::uint64_t sent = 0, done = 0, bad = 0;
    const std::int64_t start = now_ns();
    const std::int64_t budget_ns = 1000000000;  // at most one second of streaming
    while (done < o.requests && now_ns() - start < budget_ns) {
      while (sent < o.requests && ring.produce(demo_request{sent, sent})) ++sent;
      if (!fe.push(0)) break;
      bool got = false;
      for (;;) {
        auto rsp = fe.take_response(0);
        if (!rsp || !*rsp) break;
        got = true;
        if ((*rsp)->result != answer((*rsp)->id)) ++bad;
        ++done;
      }
      if (!got) {
        auto more = ring.final_check();
        if (!more) break;
        if (!*more && posix::wait_readable(ev.fd(), 2))
          if (auto p = ev.pending()) (void)ev.unmask(*p);
      }
    }
    // Collect what is still in flight, so the ring is idle before anything else happens.
    for (int spins = 0; done < sent && spins < 1000; ++spins) {
      auto rsp = fe.take_response(0);
      if (rsp && *rsp) {
        if ((*rsp)->result != answer((*rsp)->id)) ++bad;
        ++done;
        continue;
      }
      if (posix::wait_readable(ev.fd(), 1))
        if (auto p = ev.pending()) (void)ev.unmask(*p);
    }
    const double secs = static_cast<double>(now_ns() - start) / 1e9;
    char line[200];
    std::snprintf(line, sizeof line,
                  "%" PRIu64 " requests answered in %.3f s: %.0f requests/s (%.2f M/s), %" PRIu64 " wrong", done, secs,
                  static_cast<double>(done) / secs, static_cast<double>(done) / secs / 1e6, bad);
    say(o.who, line);
    std::snprintf(line, sizeof line, "%" PRIu64 " %.6f %" PRIu64, done, secs, bad);
    (void)s.write(no_tx, result, line);
    streamed = true;
  }
  say(o.who, "exits (" + (fe.reason_text().empty() ? std::string("running") : fe.reason_text()) + ")");
  return fe.own() == state::closed || fe.reason() == close_reason::handed_over ? 0 : 1;
}

// ---- the toolstack's story ----------------------------------------------------------------

struct step {
  std::string name, detail;
  bool ok;
};

/// Starts the story's processes wherever they run, and collects them at the end.
template <class L>
concept story_launcher = requires(L& l, const char* who, bool handover, int seconds) {
  l.start_backend();
  l.start_frontend(who, handover);
  l.stop_frontend(who);
  { l.wait_all(seconds) } -> std::same_as<int>;  ///< how many exited badly (or not at all)
};

/// The toolstack's side of the demo: creates the device, has the backend and a frontend
/// started, and watches every change either end makes, reading each against the table (who
/// drove it). Then it checks the stream, the handover to a second frontend process while the
/// first stays alive and quiet, unplugs, waits for both ends Closed, removes the device, and
/// collects the processes. Every wait is `patience` times the POSIX demo's.
template <device_store S, story_launcher L>
std::vector<step> run_story(S& s, const device_address& address, L& launch, int patience = 1) {
  std::vector<step> steps;
  auto check = [&](std::string name, bool ok, std::string detail = {}) {
    steps.push_back({std::move(name), std::move(detail), ok});
    if (!ok) say("toolstack", "FAILED: " + steps.back().name);
    return ok;
  };
  const std::string results = data_dir(address.frontend_domid) + "/result";
  (void)s.remove(no_tx, results);  // a previous run's
  (void)s.remove(no_tx, data_dir(address.frontend_domid) + "/quiet");
  toolstack<S> tk{s, address};
  tk.set_logger([](std::string_view l) { say("toolstack", l); });
  check("device created", tk.create().has_value(), address.frontend_dir());
  (void)s.watch(address.frontend_dir() + "/state", "frontend");
  (void)s.watch(address.backend_dir() + "/state", "backend");
  (void)s.watch(results, "results");
  toolstack_machine seen{state::initialising, state::initialising};

  // Every change either end makes, as the toolstack reads it against the table: who drove it.
  auto watch_until = [&](auto done, int seconds) {
    const auto deadline = clock_type::now() + std::chrono::seconds(seconds * patience);
    while (!done() && clock_type::now() < deadline) {
      auto ev = s.next_watch_event(20);
      if (!ev || ev->token == "results") continue;
      const role end = ev->token == "frontend" ? role::frontend : role::backend;
      auto text = s.read(no_tx, ev->path);
      if (!text) continue;
      observation obs = seen.observe(end, std::string_view(*text));
      if (obs.kind != change_kind::unchanged) say("  (toolstack)", describe(obs).view());
    }
    return done();
  };
  auto node = [&](const std::string& p) { return s.read(no_tx, p); };
  auto both = [&](state f, state b) {
    return [&s, &address, f, b] {
      auto fs = s.read(no_tx, address.frontend_dir() + "/state");
      auto bs = s.read(no_tx, address.backend_dir() + "/state");
      return fs && bs && *fs == to_node_text(f) && *bs == to_node_text(b);
    };
  };

  say("toolstack", "starting the backend and the frontend processes");
  launch.start_backend();
  launch.start_frontend("frontend-1", false);
  check("handshake: both Connected", watch_until(both(state::connected, state::connected), 5));

  auto result = [&](const char* who) {
    return [&, who] { return node(result_path(address.frontend_domid, who)).has_value(); };
  };
  auto streamed = [&](const char* who, std::string& detail) {
    auto r = node(result_path(address.frontend_domid, who));
    unsigned long long n = 0, bad = 1;
    double secs = 1;
    if (!r || std::sscanf(r->c_str(), "%llu %lf %llu", &n, &secs, &bad) != 3) return false;
    char line[120];
    std::snprintf(line, sizeof line, "%llu requests in %.2f s = %.0f requests/s", n, secs,
                  static_cast<double>(n) / secs);
    detail = line;
    return n > 0 && bad == 0;
  };
  std::string detail = "no result";
  bool ok = watch_until(result("frontend-1"), 5) && streamed("frontend-1", detail);
  check("requests through the ring", ok, detail);

  say("toolstack", "kexec: starting a new frontend instance; the old one stays alive");
  launch.start_frontend("frontend-2", true);
  detail = "no result";
  ok = watch_until(result("frontend-2"), 8) && streamed("frontend-2", detail) &&
       watch_until(both(state::connected, state::connected), 5);
  check("handover: new frontend Connected", ok, detail);
  ok = watch_until([&] { return node(quiet_path(address.frontend_domid, "frontend-1")).value_or("") == "quiet"; }, 2);
  check("old frontend stayed quiet", ok, "saw the backend answer the new instance, did nothing");

  check("unplug: online = 0, backend Closing", tk.unplug().has_value());
  check("both ends Closed", watch_until(both(state::closed, state::closed), 5));
  check("device removed", tk.remove().has_value());

  // The drivers notice the removal and exit; the old frontend is told to stop.
  launch.stop_frontend("frontend-1");
  const int bad_exits = launch.wait_all(3 * patience);
  check("processes exited cleanly", bad_exits == 0, std::to_string(bad_exits) + " bad exit(s)");
  (void)s.unwatch(address.frontend_dir() + "/state", "frontend");
  (void)s.unwatch(address.backend_dir() + "/state", "backend");
  (void)s.unwatch(results, "results");
  return steps;
}

/// Prints the summary; returns how many steps failed.
inline int print_summary(const char* title, const std::vector<step>& steps) {
  int failed = 0;
  std::printf("\n== %s summary ==\n", title);
  for (const step& st : steps) {
    failed += st.ok ? 0 : 1;
    std::printf("  [%s] %-38s %s\n", st.ok ? " ok " : "FAIL", st.name.c_str(), st.detail.c_str());
  }
  std::printf("%s: %zu steps, %d failed\n", failed ? "FAILED" : "PASSED", steps.size(), failed);
  std::fflush(stdout);
  return failed;
}

}  // namespace demo
