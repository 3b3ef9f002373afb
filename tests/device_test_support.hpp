// Test rigs for the device drivers: the same scenarios in-process (embedded store) and over
// the xenbus-xenstored socket server (libxenstore clients), with a POSIX machine for grants.
#pragma once

#include <xenbus/hosted/device.hpp>
#include <xenbus/posix/device/client_store.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/xen/xs_store.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace devtest {

using namespace xenbus;

struct test_request {
  std::uint64_t id;
  std::uint32_t op;
  std::uint32_t value;
};
struct test_response {
  std::uint64_t id;
  std::int32_t status;
  std::uint32_t value;
};
/// A device type for the tests: up to 4 pages per ring and 4 queues.
struct test_protocol {
  using request = test_request;
  using response = test_response;
  static constexpr std::string_view type = "vtest";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 2;
  static constexpr unsigned max_queues = 4;
};

inline constexpr domid_t front_dom = 3, back_dom = 0;
inline constexpr unsigned devid = 51712;

/// In-process: one embedded store, one connection per party.
struct inproc_env {
  using store_type = embedded_store;
  static constexpr const char* name = "in-process";
  static constexpr bool live = false;  // nothing changes the store while we wait
  xenstore::store store;
  /// `privileged_watches`: the store's limit of that name (0: the default).
  explicit inproc_env(std::size_t privileged_watches = 0) : store{with_watches(privileged_watches)} {}
  static xenstore::limits with_watches(std::size_t n) {
    xenstore::limits l;
    if (n) l.privileged_watches = n;
    return l;
  }
  std::deque<embedded_store> conns;
  bool ok() const { return true; }
  store_type& connect(domid_t d) { return conns.emplace_back(store, d, true); }
};

/// Over the socket: a xenbus-xenstored process, one libxenstore connection per party.
struct socket_env {
  using store_type = xen::xs_store;
  static constexpr const char* name = "xenbus-xenstored socket";
  static constexpr bool live = true;
  std::string dir, socket;
  pid_t server = -1;
  std::deque<xen::xs_store> conns;

  /// `privileged_watches`: the server's limit of that name, through --limit (0: the default).
  explicit socket_env(std::size_t privileged_watches = 0) {
    char tmpl[] = "/tmp/xenbus-device-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir = tmpl;
    socket = dir + "/socket";
    std::string bin = XENBUS_XENSTORED_BINARY;
    std::string limit = "privileged_watches=" + std::to_string(privileged_watches);
    char* argv[] = {bin.data(),
                    const_cast<char*>("--no-fork"),
                    const_cast<char*>("--socket"),
                    socket.data(),
                    privileged_watches ? const_cast<char*>("--limit") : nullptr,
                    limit.data(),
                    nullptr};
    if (::posix_spawn(&server, bin.c_str(), nullptr, nullptr, argv, environ) != 0) server = -1;
    // The socket file appears at bind(), before listen(): wait until a connect succeeds.
    for (int i = 0; i < 1000 && server > 0 && !accepts(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ::setenv("XENSTORED_PATH", socket.c_str(), 1);
  }
  ~socket_env() {
    conns.clear();
    if (server > 0) {
      ::kill(server, SIGTERM);
      ::waitpid(server, nullptr, 0);
    }
    if (!dir.empty()) {
      ::unlink(socket.c_str());
      ::rmdir(dir.c_str());
    }
  }
  bool ok() const { return server > 0 && accepts(); }
  bool accepts() const {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (socket.size() >= sizeof a.sun_path) return false;
    std::memcpy(a.sun_path, socket.data(), socket.size());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    if (fd >= 0) ::close(fd);
    return ok;
  }
  store_type& connect(domid_t) {
    auto s = xen::xs_store::open();
    REQUIRE(s.has_value());
    return conns.emplace_back(std::move(*s));
  }
};

/// Over the socket with our own client (xenstore::client) instead of libxenstore.
struct client_env : socket_env {
  using store_type = client_store;
  static constexpr const char* name = "xenbus-xenstored socket, xenstore::client";
  using socket_env::socket_env;
  std::deque<client_store> clients;
  ~client_env() { clients.clear(); }
  store_type& connect(domid_t) {
    auto s = client_store::connect(socket);
    REQUIRE(s.has_value());
    return clients.emplace_back(std::move(*s));
  }
};

/// One device's world: the toolstack, a backend and a frontend, each on its own store
/// connection and with its own event-channel handle, like separate domains.
template <class Env>
struct rig {
  using S = typename Env::store_type;
  using fe_type = frontend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;
  using be_type = backend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;

  /// A domain's kernel: its store connection and hypervisor handles.
  struct kernel {
    S* store;
    std::optional<posix::evtchn_handle> evtchn;
    posix::grant_table grants;
  };

  Env env;
  posix::machine machine = make_machine();
  device_address addr{front_dom, back_dom, std::string(test_protocol::type), devid};
  S& ts_store = env.connect(0);
  toolstack<S> tk{ts_store, addr};
  std::deque<kernel> kernels;
  std::deque<fe_type> frontends;  // the last one is the current instance
  std::deque<be_type> backends;
  std::vector<std::string> log;  // every line any party logged, prefixed by who
  /// A frontend instance whose watch events pump_until leaves queued (it reads nothing).
  std::optional<std::size_t> held_frontend;

  rig() {
    REQUIRE(env.ok());
    tk.set_logger([this](std::string_view l) { log.emplace_back(l); });
  }

  static posix::machine make_machine() {
    auto m = posix::machine::create({.frames = 512, .domains = 8, .grants_per_domain = 512, .ports_per_domain = 32});
    REQUIRE(m.has_value());
    return std::move(*m);
  }

  kernel& boot(domid_t d) {
    S& s = env.connect(d);
    auto e = posix::evtchn_handle::open(machine, d);
    REQUIRE(e.has_value());
    kernel& k = kernels.emplace_back(kernel{&s, std::nullopt, posix::grant_table{machine, d}});
    k.evtchn.emplace(std::move(*e));
    return k;
  }

  fe_type& start_frontend(frontend_options o = {}, std::string who = "frontend") {
    kernel& k = boot(front_dom);
    fe_type& f = frontends.emplace_back(*k.store, *k.evtchn, k.grants, front_dom, devid, o);
    f.set_logger([this, who](std::string_view l) { log.push_back(who + ": " + std::string(l)); });
    fe_store.push_back(k.store);
    REQUIRE(f.start().has_value());
    return f;
  }
  be_type& start_backend(backend_options o = {}) {
    kernel& k = boot(back_dom);
    be_type& b = backends.emplace_back(*k.store, *k.evtchn, k.grants, back_dom, front_dom, devid, std::move(o));
    b.set_logger([this](std::string_view l) { log.push_back("backend: " + std::string(l)); });
    be_store.push_back(k.store);
    REQUIRE(b.start().has_value());
    return b;
  }
  /// Creates the device, starts a backend and a frontend, and runs them to Connected.
  void up(backend_options b = {}, frontend_options f = {}, std::string fe_name = "frontend") {
    REQUIRE(tk.create().has_value());
    start_backend(std::move(b));
    start_frontend(f, std::move(fe_name));
    REQUIRE_MESSAGE(connected(), dump());
  }

  /// The current frontend's kernel goes away (kexec, crash): the driver object is destroyed.
  void kill_frontend() {
    frontends.pop_back();
    fe_store.pop_back();
  }
  void kill_backend() {
    backends.pop_back();
    be_store.pop_back();
  }
  fe_type& fe() { return frontends.back(); }
  be_type& be() { return backends.back(); }

  /// Delivers watch events to every driver until `done()` or nothing can happen any more
  /// (in-process) or 5 s passed (socket): a liveness bound, never a timing assertion.
  template <class Done>
  bool pump_until(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (int rounds = 0; !done(); ++rounds) {
      if (rounds > 200) return false;  // drivers that keep each other busy forever
      bool any = false;
      for (std::size_t i = 0; i < frontends.size(); ++i)
        if (held_frontend != i) any |= drain(*fe_store[i], [&](auto& ev) { frontends[i].handle(ev); });
      for (std::size_t i = 0; i < backends.size(); ++i)
        any |= drain(*be_store[i], [&](auto& ev) { backends[i].handle(ev); });
      any |= drain(ts_store, [](auto&) {});
      if (!any) {
        if (!Env::live || std::chrono::steady_clock::now() > deadline) return done();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    return true;
  }
  bool both(state f, state b) {
    return pump_until([&] { return fe().own() == f && be().own() == b && fe().peer() == b && be().peer() == f; });
  }
  bool connected() {
    return pump_until([&] { return fe().connected() && be().connected() && fe().peer() == state::connected; });
  }

  /// Sends `n` requests through queue 0 and has the backend answer each; true if every
  /// response came back with its id and the value doubled.
  bool exchange(unsigned n) {
    auto& fq = fe().queue_at(0);
    auto& bq = be().queue_at(0);
    unsigned answered = 0;
    for (unsigned i = 0; i < n; ++i) {
      if (!fq.ring->produce(test_request{i, 1, i})) return false;
      if (!fe().push(0)) return false;
      auto req = bq.ring->take_request();
      if (!req || !*req) return false;
      if (!bq.ring->produce(test_response{(*req)->id, 0, (*req)->value * 2})) return false;
      if (!be().push(0)) return false;
      auto rsp = fq.ring->take_response();
      if (rsp && *rsp && (*rsp)->id == i && (*rsp)->value == 2 * i) ++answered;
    }
    return answered == n;
  }

  bool logged(std::string_view needle) const {
    for (const auto& l : log)
      if (l.find(needle) != std::string::npos) return true;
    return false;
  }
  std::string dump() const {
    // The last lines tell what happened; a runaway exchange would flood the report.
    std::string all;
    const std::size_t from = log.size() > 60 ? log.size() - 60 : 0;
    if (from) all += "... " + std::to_string(from) + " earlier lines\n";
    for (std::size_t i = from; i < log.size(); ++i) all += log[i] + "\n";
    return all;
  }

 private:
  template <class F>
  static bool drain(S& s, F&& f) {
    bool any = false;
    for (int k = 0; k < 256; ++k) {
      auto ev = s.next_watch_event(0);
      if (!ev) break;
      any = true;
      f(*ev);
    }
    return any;
  }
  std::vector<S*> fe_store, be_store;
};

}  // namespace devtest
