// Test rigs for device_service and the event loop: a toolstack, a backend service in dom0 and
// a frontend service in a guest, over our in-process store (embedded_store) or our xenstore
// server on a socket (client_store, a reader thread per connection), with a POSIX machine for
// grants and event channels, all on one posix::event_loop.
#pragma once

#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/posix/device/client_store.hpp>
#include <xenbus/posix/device/service_loop.hpp>
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/xenstore/server.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

namespace svctest {

using namespace xenbus;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct echo_request {
  std::uint64_t id;
  std::uint32_t value;
  std::uint32_t pad;
};
struct echo_response {
  std::uint64_t id;
  std::uint32_t value;
  std::int32_t status;
};
/// The tests' device type: one page, one queue; the backend answers value + 1.
struct echo_protocol {
  using request = echo_request;
  using response = echo_response;
  static constexpr std::string_view type = "vecho";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 0;
  static constexpr unsigned max_queues = 1;
};

inline constexpr domid_t dom0 = 0, guest = 3;

/// What the drivers of one end did (shared by all of that end's drivers).
struct counters {
  int made = 0, destroyed = 0, connected = 0, disconnected = 0, served = 0, answered = 0;
};

/// A backend as a driver author writes one for the service: derive, add the hooks.
template <class S>
struct echo_back final : backend<echo_protocol, S, posix::evtchn_handle, posix::grant_table> {
  using base = backend<echo_protocol, S, posix::evtchn_handle, posix::grant_table>;
  echo_back(counters& c, S& s, posix::evtchn_handle& e, posix::grant_table& g, domid_t fe, unsigned devid)
      : base(s, e, g, dom0, fe, devid), c_{&c} {
    ++c_->made;
  }
  ~echo_back() { ++c_->destroyed; }
  void on_connected() { ++c_->connected; }
  void on_disconnected() { ++c_->disconnected; }
  void on_notify(unsigned q) {
    for (;;) {
      for (;;) {
        auto r = this->take_request(q);
        if (!r || !*r) break;
        (void)this->queue_at(q).ring->produce(echo_response{(*r)->id, (*r)->value + 1, 0});
        ++c_->served;
      }
      (void)this->push(q);
      auto more = this->queue_at(q).ring->final_check();
      if (!more || !*more) break;
    }
  }
  counters* c_;
};

/// A frontend that sends requests and collects the answers.
template <class S>
struct echo_front final : frontend<echo_protocol, S, posix::evtchn_handle, posix::grant_table> {
  using base = frontend<echo_protocol, S, posix::evtchn_handle, posix::grant_table>;
  echo_front(counters& c, S& s, posix::evtchn_handle& e, posix::grant_table& g, unsigned devid, frontend_options o)
      : base(s, e, g, guest, devid, o), c_{&c} {
    ++c_->made;
  }
  ~echo_front() { ++c_->destroyed; }
  void on_connected() { ++c_->connected; }
  void on_disconnected() { ++c_->disconnected; }
  void on_notify(unsigned q) {
    for (;;) {
      for (;;) {
        auto r = this->take_response(q);
        if (!r || !*r) break;
        answers[(*r)->id] = (*r)->value;
        ++c_->answered;
      }
      auto more = this->queue_at(q).ring->final_check();
      if (!more || !*more) break;
    }
  }
  bool send(std::uint64_t id, std::uint32_t value) {
    return this->connected() && this->queue_at(0).ring->produce(echo_request{id, value, 0}) && this->push(0);
  }
  std::map<std::uint64_t, std::uint32_t> answers;
  counters* c_;
};

inline std::string temp_socket(const char* what) {
  static std::atomic<int> n{0};
  return "/tmp/xenbus-svc-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n++) + ".sock";
}

/// In-process: one xenstore::store, one embedded connection per party (no descriptor: the
/// runner polls the store on every turn).
struct inproc_env {
  using store_type = embedded_store;
  static constexpr const char* name = "in-process store";
  xenstore::store store;
  std::deque<embedded_store> conns;
  store_type& connect(domid_t d) { return conns.emplace_back(store, d, true); }
};

/// Our xenstore server on a socket, one client_store (xenstore::client) per party.
struct server_env {
  using store_type = client_store;
  static constexpr const char* name = "xenbus server on a socket";
  xenstore::server_thread server{temp_socket("srv")};
  std::deque<client_store> conns;
  server_env() { REQUIRE(server.ok()); }
  ~server_env() {
    conns.clear();
    server.stop();
    ::unlink(server.path().c_str());
  }
  store_type& connect(domid_t) {
    auto c = client_store::connect(server.path());
    REQUIRE(c.has_value());
    return conns.emplace_back(std::move(*c));
  }
};

/// One host: the toolstack's connection, a backend service in dom0 and (optionally) a
/// frontend service in the guest, both on one event loop with their event channels.
template <class Env>
struct world {
  using S = typename Env::store_type;
  using be_type = echo_back<S>;
  using fe_type = echo_front<S>;
  using be_service = device_service<S, be_type>;
  using fe_service = device_service<S, fe_type>;

  Env env;
  posix::machine machine = make_machine();
  posix::evtchn_handle bev = open_evtchn(dom0), fev = open_evtchn(guest);
  posix::grant_table bgrants{machine, dom0}, fgrants{machine, guest};
  S& ts = env.connect(dom0);
  S& bs = env.connect(dom0);
  S& fs = env.connect(guest);
  posix::event_loop loop;
  counters bc, fc;
  std::vector<std::string> log;
  std::optional<be_service> back;
  std::optional<fe_service> front;
  std::optional<posix::service_runner<be_service>> back_run;
  std::optional<posix::service_runner<fe_service>> front_run;
  posix::event_loop::handle bev_h = 0, fev_h = 0;

  world() { REQUIRE(loop.ok()); }
  ~world() {
    loop.remove(bev_h);
    loop.remove(fev_h);
    back_run.reset();
    front_run.reset();
    back.reset();
    front.reset();
  }

  static posix::machine make_machine() {
    auto m = posix::machine::create({.frames = 1024, .domains = 8, .grants_per_domain = 1024, .ports_per_domain = 512});
    REQUIRE(m.has_value());
    return std::move(*m);
  }
  posix::evtchn_handle open_evtchn(domid_t d) {
    auto e = posix::evtchn_handle::open(machine, d);
    REQUIRE(e.has_value());
    return std::move(*e);
  }

  static service_config backend_config() {
    return service_config{.side = service_side::backend,
                          .self = dom0,
                          .type = std::string(echo_protocol::type),
                          .retry_backoff = 10ms,
                          .retry_backoff_max = 40ms};
  }
  static service_config frontend_config() {
    service_config c = backend_config();
    c.side = service_side::frontend;
    c.self = guest;
    return c;
  }

  /// The default backend factory; a test may wrap it to fail.
  std::unique_ptr<be_type> make_back(device_probe& p) {
    return std::make_unique<be_type>(bc, bs, bev, bgrants, p.address.frontend_domid, p.address.devid);
  }
  std::unique_ptr<fe_type> make_front(device_probe& p) {
    return std::make_unique<fe_type>(fc, fs, fev, fgrants, p.address.devid, frontend_options{.start = p.start});
  }

  be_service& start_back(service_config cfg = backend_config(), typename be_service::factory make = {}) {
    if (!make) make = [this](device_probe& p) { return make_back(p); };
    back.emplace(bs, std::move(cfg), std::move(make));
    back->set_logger([this](std::string_view l) { log.emplace_back("be " + std::string(l)); });
    REQUIRE(back->start().has_value());
    back_run.emplace(loop, *back);
    bev_h = posix::attach_evtchn(loop, bev, *back);
    return *back;
  }
  fe_service& start_front(service_config cfg = frontend_config(), typename fe_service::factory make = {}) {
    if (!make) make = [this](device_probe& p) { return make_front(p); };
    front.emplace(fs, std::move(cfg), std::move(make));
    front->set_logger([this](std::string_view l) { log.emplace_back("fe " + std::string(l)); });
    REQUIRE(front->start().has_value());
    front_run.emplace(loop, *front);
    fev_h = posix::attach_evtchn(loop, fev, *front);
    return *front;
  }

  static device_address address(unsigned devid) {
    return device_address{guest, dom0, std::string(echo_protocol::type), devid};
  }
  /// Creates a device's two directories as libxl does (both Initialising).
  void create(unsigned devid) { REQUIRE(toolstack<S>{ts, address(devid)}.create().has_value()); }
  /// Removes both directories at once, as a toolstack does after a crash (no handshake).
  void remove(unsigned devid) {
    (void)ts.remove(no_tx, address(devid).frontend_dir());
    (void)ts.remove(no_tx, address(devid).backend_dir());
  }
  std::string read(const std::string& path) {
    auto r = ts.read(no_tx, path);
    return r ? *r : std::string("<") + std::string(to_string(r.error().code)) + ">";
  }
  void write(const std::string& path, std::string_view value) { REQUIRE(ts.write(no_tx, path, value).has_value()); }

  template <class Pred>
  bool run_until(Pred p, std::chrono::milliseconds limit = 5s) {
    return loop.run_until(p, limit);
  }
  /// Runs the loop for `t` whatever happens.
  void run_for(std::chrono::milliseconds t) {
    (void)loop.run_until([] { return false; }, t);
  }

  be_type* back_driver(unsigned devid) { return back ? back->find(devid, guest) : nullptr; }
  fe_type* front_driver(unsigned devid) { return front ? front->find(devid) : nullptr; }
  bool both_connected(unsigned devid) {
    auto* b = back_driver(devid);
    auto* f = front_driver(devid);
    return b && f && b->connected() && f->connected();
  }
  /// A request through the ring and its answer, through both services' on_notify.
  bool echo(unsigned devid, std::uint64_t id, std::uint32_t value) {
    auto* f = front_driver(devid);
    if (!f || !f->send(id, value)) return false;
    return run_until([&] {
      auto* g = front_driver(devid);
      return g && g->answers.count(id) && g->answers[id] == value + 1;
    });
  }
  std::string dump_log() const {
    std::string s;
    for (const auto& l : log) s += l + "\n";
    return s;
  }
};

}  // namespace svctest
