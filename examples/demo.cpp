// xenbus-demo: a toolstack, a backend process and a frontend process standing in for two domains.
// They share our xenstore (served on a unix socket from the toolstack process) and pages of a
// POSIX machine (memfd grants, socket event channels). The demo prints the handshake with who
// drove each change, streams requests through the ring, performs the seed's kexec handover to
// a new frontend process while the old one stays quiet, unplugs, and ends with a summary.
// Exit status: 0 if every step passed.
#include <xenbus/hosted/device.hpp>
#include <xenbus/posix/device/client_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/xenstore/server.hpp>

#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

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

constexpr domid_t backend_dom = 0, frontend_dom = 1;
constexpr unsigned devid = 0;
const device_address address{frontend_dom, backend_dom, std::string(demo_protocol::type), devid};
const std::string results_dir = "/local/domain/0/data/xenbus-demo";

std::int64_t t0_ns = 0;

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

/// One line, written with one write(2) so that the processes' lines do not interleave.
void say(std::string_view who, std::string_view what) {
  char buf[512];
  const double ms = static_cast<double>(now_ns() - t0_ns) / 1e6;
  const int n = std::snprintf(buf, sizeof buf, "%8.1f ms  %-14.*s %.*s\n", ms, static_cast<int>(who.size()), who.data(),
                              static_cast<int>(what.size()), what.data());
  if (n > 0) (void)!::write(STDOUT_FILENO, buf, static_cast<std::size_t>(n < 512 ? n : 511));
}

struct options {
  std::string role = "toolstack", socket, who;
  int machine_fd = -1;
  bool handover = false;
  std::uint64_t requests = 2000000;
};

volatile std::sig_atomic_t stop_requested = 0;

// ---- the child processes ------------------------------------------------------------------

bool device_gone(client_store& s, const std::string& dir) {
  auto r = s.read(no_tx, dir + "/state");
  return !r && r.error().code == store_errc::enoent;
}

int run_backend(const options& o, client_store& s, posix::machine& m) {
  auto ev = posix::evtchn_handle::open(m, backend_dom);
  if (!ev) return 2;
  posix::grant_table grants{m, backend_dom};
  backend<demo_protocol, client_store, posix::evtchn_handle, posix::grant_table> be{
      s,
      *ev,
      grants,
      backend_dom,
      frontend_dom,
      devid,
      {.max_ring_page_order = 2, .features = {{"feature-demo", "1"}}}};
  be.set_logger([&](std::string_view l) { say(o.who, l); });
  if (!be.start()) return 3;
  std::uint64_t served = 0;
  const auto deadline = clock_type::now() + std::chrono::seconds(30);
  while (!stop_requested && clock_type::now() < deadline && !device_gone(s, address.backend_dir())) {
    deliver_watch_events(s, 0, be);
    if (!be.connected()) {
      posix::wait_readable(ev->fd(), 2);
      continue;
    }
    if (auto p = ev->pending()) (void)ev->unmask(*p);
    bool any = false;
    for (unsigned budget = 0; budget < 4096; ++budget) {  // bounded work per wakeup (XSA-391)
      auto req = be.take_request(0);
      if (!req || !*req) break;
      any = true;
      be.queue_at(0).ring->produce(demo_response{(*req)->id, (*req)->payload * 2 + 1});
      ++served;
    }
    if (any) {
      (void)be.push(0);
      continue;
    }
    auto more = be.queue_at(0).ring ? be.queue_at(0).ring->final_check() : result<bool, ring_error>{false};
    if (more && !*more) posix::wait_readable(ev->fd(), 2);
  }
  say(o.who, "served " + std::to_string(served) + " requests; exits (" + be.reason_text() + ")");
  return be.own() == state::closed ? 0 : 1;
}

int run_frontend(const options& o, client_store& s, posix::machine& m) {
  auto ev = posix::evtchn_handle::open(m, frontend_dom);
  if (!ev) return 2;
  posix::grant_table grants{m, frontend_dom};
  frontend<demo_protocol, client_store, posix::evtchn_handle, posix::grant_table> fe{
      s,      *ev,
      grants, frontend_dom,
      devid,  {.ring_page_order = 2, .start = o.handover ? frontend_start::handover : frontend_start::fresh}};
  fe.set_logger([&](std::string_view l) { say(o.who, l); });
  if (!fe.start()) return 3;
  bool streamed = false, reported_quiet = false;
  std::uint64_t writes_at_handover = 0;
  const auto deadline = clock_type::now() + std::chrono::seconds(30);
  while (!stop_requested && clock_type::now() < deadline && !device_gone(s, address.frontend_dir())) {
    deliver_watch_events(s, 2, fe);
    if (fe.active()) writes_at_handover = fe.state_writes();
    if (!fe.active() && fe.reason() == close_reason::handed_over && !reported_quiet) {
      // The old kernel's frontend: its machine refuses every move now. Watch the backend
      // answer the new instance with InitWait, and check that the driver wrote nothing.
      auto b = s.read(no_tx, fe.peer_dir() + "/state");
      if (b && *b == to_node_text(state::init_wait) && fe.state_writes() == writes_at_handover) {
        say(o.who, "sees the backend's InitWait and ignores it: handed over, quiet");
        (void)s.write(no_tx, results_dir + "/" + o.who, "quiet");
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
        if ((*rsp)->result != (*rsp)->id * 2 + 1) ++bad;
        ++done;
      }
      if (!got) {
        auto more = ring.final_check();
        if (!more) break;
        if (!*more && posix::wait_readable(ev->fd(), 2))
          if (auto p = ev->pending()) (void)ev->unmask(*p);
      }
    }
    // Collect what is still in flight, so the ring is idle before anything else happens.
    for (int spins = 0; done < sent && spins < 1000; ++spins) {
      auto rsp = fe.take_response(0);
      if (rsp && *rsp) {
        ++done;
        continue;
      }
      posix::wait_readable(ev->fd(), 1);
    }
    const double secs = static_cast<double>(now_ns() - start) / 1e9;
    char line[200];
    std::snprintf(line, sizeof line, "%" PRIu64 " requests answered in %.3f s: %.2f M requests/s, %" PRIu64 " wrong",
                  done, secs, static_cast<double>(done) / secs / 1e6, bad);
    say(o.who, line);
    std::snprintf(line, sizeof line, "%" PRIu64 " %.6f %" PRIu64, done, secs, bad);
    (void)s.write(no_tx, results_dir + "/" + o.who, line);
    streamed = true;
  }
  say(o.who, "exits (" + (fe.reason_text().empty() ? std::string("running") : fe.reason_text()) + ")");
  return fe.own() == state::closed || fe.reason() == close_reason::handed_over ? 0 : 1;
}

int run_child(const options& o) {
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  auto m = posix::machine::attach(o.machine_fd);
  auto s = client_store::connect(o.socket);
  if (!m || !s) return 2;
  return o.role == "backend" ? run_backend(o, *s, *m) : run_frontend(o, *s, *m);
}

// ---- the toolstack ------------------------------------------------------------------------

struct step {
  std::string name, detail;
  bool ok;
};

pid_t spawn(const options& o, const char* role, const char* who, bool handover) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const std::string fd = std::to_string(o.machine_fd), t0 = std::to_string(t0_ns), n = std::to_string(o.requests);
  std::vector<const char*> argv{"xenbus-demo",  role,       "--socket",   o.socket.c_str(),
                                "--machine-fd", fd.c_str(), "--t0",       t0.c_str(),
                                "--who",        who,        "--requests", n.c_str()};
  if (handover) argv.push_back("--handover");
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
  ::_exit(127);
}

int run_toolstack(options o) {
  std::vector<step> steps;
  auto check = [&](std::string name, bool ok, std::string detail = {}) {
    steps.push_back({std::move(name), std::move(detail), ok});
    if (!ok) say("toolstack", "FAILED: " + steps.back().name);
    return ok;
  };
  char tmpl[] = "/tmp/xenbus-demo-XXXXXX";
  if (!::mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl;
  o.socket = dir + "/socket";
  xenstore::server_thread server{o.socket};
  check("xenstore server on a unix socket", server.ok(), o.socket);
  auto m = posix::machine::create({.frames = 256, .domains = 4, .grants_per_domain = 128, .ports_per_domain = 16});
  check("shared memory machine (memfd)", m && m->inheritable(), "grant and event-channel tables");
  auto conn = client_store::connect(o.socket);
  if (!server.ok() || !m || !conn) return 2;
  client_store& s = *conn;
  o.machine_fd = m->fd();

  toolstack<client_store> tk{s, address};
  tk.set_logger([](std::string_view l) { say("toolstack", l); });
  check("device created", tk.create().has_value(), address.frontend_dir());
  (void)s.watch(address.frontend_dir() + "/state", "frontend");
  (void)s.watch(address.backend_dir() + "/state", "backend");
  (void)s.watch(results_dir, "results");
  toolstack_machine seen{state::initialising, state::initialising};

  // Every change either end makes, as the toolstack reads it against the table: who drove it.
  auto watch_until = [&](auto done, int seconds) {
    const auto deadline = clock_type::now() + std::chrono::seconds(seconds);
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
    return [&s, f, b] {
      auto fs = s.read(no_tx, address.frontend_dir() + "/state");
      auto bs = s.read(no_tx, address.backend_dir() + "/state");
      return fs && bs && *fs == to_node_text(f) && *bs == to_node_text(b);
    };
  };

  say("toolstack", "starting the backend and the frontend processes");
  const pid_t be = spawn(o, "backend", "backend", false);
  const pid_t fe1 = spawn(o, "frontend", "frontend-1", false);
  check("handshake: both Connected", watch_until(both(state::connected, state::connected), 5));

  // A frontend's result node: "<answered> <seconds> <wrong>", or "quiet" once handed over.
  auto result = [&](const char* who) { return [&, who] { return node(results_dir + "/" + who).has_value(); }; };
  auto streamed = [&](const char* who, std::string& detail) {
    auto r = node(results_dir + "/" + who);
    unsigned long long n = 0, bad = 1;
    double secs = 1;
    if (!r || std::sscanf(r->c_str(), "%llu %lf %llu", &n, &secs, &bad) != 3) return false;
    char line[120];
    std::snprintf(line, sizeof line, "%llu requests in %.2f s = %.2f M/s", n, secs,
                  static_cast<double>(n) / secs / 1e6);
    detail = line;
    return n > 0 && bad == 0;
  };
  std::string detail = "no result";
  bool ok = watch_until(result("frontend-1"), 5) && streamed("frontend-1", detail);
  check("requests through the ring", ok, detail);

  say("toolstack", "kexec: starting a new frontend instance; the old one stays alive");
  const pid_t fe2 = spawn(o, "frontend", "frontend-2", true);
  detail = "no result";
  ok = watch_until(result("frontend-2"), 8) && streamed("frontend-2", detail) &&
       watch_until(both(state::connected, state::connected), 5);
  check("handover: new frontend Connected", ok, detail);
  ok = watch_until([&] { return node(results_dir + "/frontend-1").value_or("") == "quiet"; }, 2);
  check("old frontend stayed quiet", ok, "saw the backend's InitWait, did nothing");

  check("unplug: online = 0, backend Closing", tk.unplug().has_value());
  check("both ends Closed", watch_until(both(state::closed, state::closed), 5));
  check("device removed", tk.remove().has_value());

  // The drivers notice the removal and exit; the old frontend is told to stop.
  ::kill(fe1, SIGTERM);
  int bad_exits = 0;
  for (pid_t pid : {be, fe2, fe1}) {
    int status = 0;
    const auto deadline = clock_type::now() + std::chrono::seconds(3);
    pid_t r = 0;
    while ((r = ::waitpid(pid, &status, WNOHANG)) == 0 && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (r == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad_exits;
  }
  check("processes exited cleanly", bad_exits == 0, std::to_string(bad_exits) + " bad exit(s)");
  server.stop();
  ::unlink(o.socket.c_str());
  ::rmdir(dir.c_str());

  int failed = 0;
  std::printf("\n== xenbus-demo summary ==\n");
  for (const step& st : steps) {
    failed += st.ok ? 0 : 1;
    std::printf("  [%s] %-38s %s\n", st.ok ? " ok " : "FAIL", st.name.c_str(), st.detail.c_str());
  }
  std::printf("%s: %zu steps, %d failed\n", failed ? "FAILED" : "PASSED", steps.size(), failed);
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  int i = 1;
  if (argc > 1 && (std::strcmp(argv[1], "backend") == 0 || std::strcmp(argv[1], "frontend") == 0)) o.role = argv[i++];
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--socket")
      o.socket = v, ++i;
    else if (a == "--machine-fd")
      o.machine_fd = std::atoi(v), ++i;
    else if (a == "--t0")
      t0_ns = std::atoll(v), ++i;
    else if (a == "--who")
      o.who = v, ++i;
    else if (a == "--requests")
      o.requests = std::strtoull(v, nullptr, 10), ++i;
    else if (a == "--handover")
      o.handover = true;
    else {
      std::fprintf(stderr, "usage: %s [--requests N]\n", argv[0]);
      return 2;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (o.role != "toolstack") return run_child(o);
  t0_ns = now_ns();
  return run_toolstack(o);
}
