// Tests include/xenbus/hosted/device/{frontend,backend,toolstack}.hpp: every sequence of the standard
// table end to end, in-process and over the xenbus-xenstored socket server.
// <cerrno> first: <xen/io/xs_wire.h> defines xsd_errors[] only when EINVAL exists.
#include <cerrno>

#include "device_test_support.hpp"

#include <string_view>

using namespace devtest;
using xenbus::close_reason;
using xenbus::state;

// Which stores run the sequences: tests/device.cmake builds this file twice, once with the
// embedded store and libxenstore, once with our own client (threads, so also under TSan).
#ifndef DEVICE_ENVS
#define DEVICE_ENVS inproc_env, socket_env, client_env
#endif

// One error vocabulary (xenstore/errors.hpp): each device_store passes the server's errno
// name on unchanged. The store answers a watch beyond privileged_watches with E2BIG; before
// 0.2.0 every device_store folded it into ENOSPC ("quota").
TEST_CASE_TEMPLATE("a store's E2BIG reaches the driver as E2BIG, not as ENOSPC", Env, DEVICE_ENVS) {
  Env env{1};  // one watch per (privileged) connection
  REQUIRE(env.ok());
  auto& s = env.connect(0);
  REQUIRE(s.watch("/a", "one").has_value());
  auto again = s.watch("/b", "two");
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == xenbus::store_errc::e2big);
  CHECK(again.error().name() == std::string_view{"E2BIG"});
}

TEST_CASE("xen::errc_from_errno inverts libxenstore's errno for every name of xsd_errors[]") {
  for (const auto& e : xsd_errors) {
    CAPTURE(e.errstring);
    CHECK(xenbus::xenstore::to_string(xenbus::xen::errc_from_errno(e.errnum)) == std::string_view{e.errstring});
  }
  CHECK(xenbus::xen::errc_from_errno(EPIPE) == xenbus::store_errc::broken);
}

TEST_CASE_TEMPLATE("startup: InitWait, Initialised, Connected, and requests flow through the ring", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend({.max_ring_page_order = 1, .max_queues = 2});
  r.start_frontend({.ring_page_order = 2, .queues = 4});
  REQUIRE_MESSAGE(r.connected(), r.dump());
  // The frontend asked for more than the backend offered: it got the backend's limits.
  CHECK(r.fe().ring_page_order() == 1);
  CHECK(r.fe().queue_count() == 2);
  CHECK(r.be().negotiated().ring_page_order == 1);
  CHECK(r.be().negotiated().queues == 2);
  CHECK(r.fe().queue_at(0).ring->size() == r.be().queue_at(0).ring->size());
  CHECK(r.exchange(100));
  CHECK(r.logged("[backend-publishes-features]"));
  CHECK(r.logged("[frontend-publishes-transport]"));
  CHECK(r.logged("[backend-connects]"));
  CHECK(r.logged("[frontend-connects]"));
  // The keys as Linux and QEMU lay them out.
  auto key = [&](const std::string& path) { return r.ts_store.read(0, path).value_or("(missing)"); };
  const std::string fe = r.addr.frontend_dir(), be = r.addr.backend_dir();
  CHECK(key(be + "/hotplug-status") == "connected");
  CHECK(key(be + "/max-ring-page-order") == "1");
  CHECK(key(be + "/multi-queue-max-queues") == "2");
  CHECK(key(fe + "/ring-page-order") == "1");
  CHECK(key(fe + "/multi-queue-num-queues") == "2");
  CHECK(key(fe + "/protocol") == "x86_64-abi");
  for (const char* q : {"/queue-0", "/queue-1"}) {
    CAPTURE(q);
    CHECK(key(fe + q + "/ring-ref0") != "(missing)");
    CHECK(key(fe + q + "/ring-ref1") != "(missing)");
    CHECK(key(fe + q + "/ring-ref2") == "(missing)");
    CHECK(key(fe + q + "/event-channel") != "(missing)");
  }
  CHECK(key(fe + "/ring-ref") == "(missing)");
}

TEST_CASE_TEMPLATE("startup: the frontend skips InitWait", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_frontend({.skip_init_wait = true});  // default parameters, no waiting
  CHECK(r.pump_until([&] { return r.fe().own() == state::initialised; }));
  r.start_backend();
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged("[frontend-skips-init-wait]"));
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("startup: the backend skips InitWait", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend({.skip_init_wait = true});
  r.start_frontend({.skip_init_wait = true});
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged("[backend-skips-init-wait]"));
  CHECK(r.logged("[backend-connects-after-skip]"));
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("close from either end ends with both Closed", Env, DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  SUBCASE("the frontend closes") {
    r.fe().close();
    REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
    CHECK(r.fe().reason() == close_reason::local_request);
    CHECK(r.logged("[backend-closes]"));
  }
  SUBCASE("the backend closes") {
    r.be().close();
    REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
    CHECK(r.be().reason() == close_reason::local_request);
    CHECK(r.logged("frontend: frontend: Connected -> Closing while the backend is Closing [frontend-closes]"));
  }
  // Both Closed: the toolstack may remove the device, and the drivers see it go.
  REQUIRE(r.tk.remove().has_value());
  CHECK(r.pump_until([&] { return !r.fe().active() && !r.be().active(); }));
  CHECK(r.fe().own() == state::closed);
}

TEST_CASE_TEMPLATE("toolstack unplug: online = 0 and backend Closing, both end Closed", Env, DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  REQUIRE(r.tk.unplug().has_value());
  REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
  CHECK(r.be().reason() == close_reason::toolstack_unplug);
  CHECK(r.logged("[toolstack-unplugs by toolstack]"));
  REQUIRE(r.tk.remove().has_value());
  CHECK(r.pump_until([&] { return !r.be().active(); }));
  CHECK(r.be().reason() == close_reason::toolstack_unplug);  // the first cause is kept
}

TEST_CASE_TEMPLATE("Linux frontend reset after kexec: Closing, Closed, Initialising, then connected again", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  r.kill_frontend();  // the old kernel is gone (kexec)
  r.start_frontend({.start = frontend_start::linux_reset}, "new frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged("new frontend: frontend: Connected -> Closing"));
  CHECK(r.logged("[frontend-closed]"));
  CHECK(r.logged("[frontend-resets]"));
  CHECK(r.logged("[backend-prepares-for-reconnect]"));
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("the seed's handover is seen by an old instance that reads only once the new one is Connected", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend();
  auto& old = r.start_frontend({}, "old frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  r.held_frontend = 0;  // its watch events wait: by the time it reads, its node says Connected again
  r.start_frontend({.start = frontend_start::handover}, "new frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(old.active());
  r.held_frontend.reset();
  CHECK(r.pump_until([&] { return !old.active(); }));
  CHECK(old.reason() == close_reason::handed_over);
  CHECK(r.logged("old frontend: stops: handed over to a new instance: own node set to Connected"));
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("the seed's handover: a new frontend takes over, the old one stays quiet", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend();
  auto& old = r.start_frontend({}, "old frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  const std::size_t before = r.log.size();
  r.start_frontend({.start = frontend_start::handover}, "new frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged(
      "new frontend: frontend: Connected -> Initialising while the backend is Connected [frontend-hands-over]"));
  CHECK(r.logged("[backend-resets-at-once]"));
  // The old instance saw its node change under it and stopped acting: it never answered
  // the backend's InitWait and wrote nothing. (Over a socket its watch event may still be on
  // the way when both ends are Connected: wait for it.)
  CHECK(r.pump_until([&] { return !old.active(); }));
  CHECK_FALSE(old.active());
  CHECK(old.reason() == close_reason::handed_over);
  CHECK(old.machine().handed_over());
  for (std::size_t i = before; i < r.log.size(); ++i) {
    const std::string& line = r.log[i];
    if (!line.starts_with("old frontend: ")) continue;
    INFO(line);
    CHECK((line.find(" saw ") != std::string::npos || line.find(" stops: ") != std::string::npos));
  }
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("a backend that closes first answers a reset frontend after it is Closed", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend({.reset_at_once = false});  // QEMU and FreeBSD
  r.start_frontend({.reconnect = true});
  REQUIRE(r.connected());
  r.start_frontend({.reconnect = true, .start = frontend_start::handover}, "new frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged("backend: backend: Connected -> Closing while the frontend is Initialising [backend-closes]"));
  CHECK(r.logged("[backend-prepares-for-reconnect]"));
  CHECK(r.exchange(5));
}

TEST_CASE_TEMPLATE("backend restart: the new instance closes the stale node and the frontend reconnects", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  r.up({}, {.reconnect = true});
  r.kill_backend();  // the backend process dies
  r.start_backend();
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.logged("from a previous instance: closing it"));
  CHECK(r.logged("[frontend-resets]"));
  CHECK(r.exchange(10));
}

TEST_CASE_TEMPLATE("reconfiguration: Reconfiguring, Reconfigured, and back to Connected", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  int rescans = 0;
  r.start_backend().on_reconfigure([&] { ++rescans; });
  r.start_frontend();
  REQUIRE(r.connected());
  REQUIRE(r.tk.reconfigure().has_value());
  CHECK_MESSAGE(r.pump_until([&] { return r.logged("[backend-reconnects]"); }), r.dump());
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(rescans == 1);
  CHECK(r.logged("[toolstack-reconfigures]"));
  CHECK(r.logged("[backend-reconfigured]"));
  CHECK(r.logged("[frontend-reconfigures]"));
  CHECK(r.logged("[frontend-reconfigured]"));
  CHECK(r.exchange(5));
}

TEST_CASE_TEMPLATE("a peer that vanishes mid-handshake leaves a clean Closed and a reason", Env, DEVICE_ENVS) {
  rig<Env> r;
  REQUIRE(r.tk.create().has_value());
  SUBCASE("the backend directory is removed while the frontend waits in Initialised") {
    r.start_frontend({.skip_init_wait = true});
    REQUIRE(r.pump_until([&] { return r.fe().own() == state::initialised; }));
    REQUIRE(r.ts_store.remove(0, r.addr.backend_dir()).has_value());
    REQUIRE_MESSAGE(r.pump_until([&] { return r.fe().own() == state::closed; }), r.dump());
    CHECK(r.fe().reason() == close_reason::peer_vanished);
    auto err = r.ts_store.read(0, r.fe().error_path());
    REQUIRE(err.has_value());
    CHECK(err->find("vanished") != std::string::npos);
  }
  SUBCASE("the backend's state node holds garbage") {
    r.start_backend();
    r.start_frontend();
    REQUIRE(r.connected());
    REQUIRE(r.ts_store.write(0, r.addr.backend_dir() + "/state", "4 ").has_value());
    REQUIRE_MESSAGE(r.pump_until([&] { return r.fe().own() == state::closed; }), r.dump());
    CHECK(r.fe().reason() == close_reason::peer_garbage);
    CHECK(r.fe().reason_text().find("not a decimal digit") != std::string::npos);
  }
  SUBCASE("someone writes garbage into the frontend's own state node") {
    r.start_backend();
    r.start_frontend();
    REQUIRE(r.connected());
    const auto writes = r.fe().state_writes();
    REQUIRE(r.ts_store.write(0, r.addr.frontend_dir() + "/state", "04").has_value());
    REQUIRE(r.pump_until([&] { return !r.fe().active(); }));
    CHECK(r.fe().reason() == close_reason::own_node_garbage);
    CHECK(r.fe().state_writes() == writes);  // it stopped acting instead of guessing
  }
  SUBCASE("the frontend directory is removed while the backend waits in InitWait") {
    r.start_backend();
    REQUIRE(r.pump_until([&] { return r.be().own() == state::init_wait; }));
    REQUIRE(r.ts_store.remove(0, r.addr.frontend_dir()).has_value());
    REQUIRE_MESSAGE(r.pump_until([&] { return r.be().own() == state::closed; }), r.dump());
    CHECK(r.be().reason() == close_reason::peer_vanished);
  }
  SUBCASE("the frontend publishes a ring order above what the backend offered") {
    r.start_backend({.max_ring_page_order = 0});
    r.start_frontend({.skip_init_wait = true});
    REQUIRE(r.pump_until([&] { return r.fe().own() == state::initialised; }));
    // A hostile frontend rewrites its keys: order 3, beyond the backend's 0.
    REQUIRE(r.ts_store.write(0, r.addr.frontend_dir() + "/ring-page-order", "3").has_value());
    REQUIRE(r.ts_store.write(0, r.addr.frontend_dir() + "/state", "3").has_value());
    REQUIRE_MESSAGE(r.pump_until([&] { return r.be().own() == state::closed || r.be().own() == state::closing; }),
                    r.dump());
    CHECK(r.be().reason() == close_reason::negotiation_failed);
    CHECK(r.be().reason_text().find("max-ring-page-order") != std::string::npos);
  }
}

// The toolstack removes both directories at once (a forced detach, a destroyed domain)
// while both drivers still run; each then closes or moves before it has handled the
// removal's watch events. A state write outside a transaction would create the missing
// parents again and leave both directories behind as orphans (state 6); Linux's
// xenbus_switch_state writes in a transaction that first reads the node, and skips the
// write when it is gone.
TEST_CASE_TEMPLATE("a removed device stays removed when its drivers close or move before they see the removal", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  const std::string fe = r.addr.frontend_dir(), be = r.addr.backend_dir();
  const std::string fe_parent = fe.substr(0, fe.rfind('/')), be_parent = be.substr(0, be.rfind('/'));
  auto children = [&](const std::string& parent) {
    auto d = r.ts_store.directory(0, parent);
    return d ? *d : std::vector<std::string>{};
  };
  REQUIRE(children(fe_parent) == std::vector<std::string>{std::to_string(devid)});
  REQUIRE(children(be_parent) == std::vector<std::string>{std::to_string(devid)});
  REQUIRE(r.ts_store.remove(0, fe).has_value());
  REQUIRE(r.ts_store.remove(0, be).has_value());
  bool fatal_first = false;  // a fatal error's reason is kept over the removal's
  SUBCASE("both close, the frontend first") {
    r.fe().close();
    r.be().close();
  }
  SUBCASE("both close, the backend first") {
    r.be().close();
    r.fe().close();
  }
  SUBCASE("both report a fatal error (which moves them to Closing)") {
    r.be().fatal(close_reason::resource_failed, "test");
    r.fe().fatal(close_reason::resource_failed, "test");
    fatal_first = true;
  }
  SUBCASE("the frontend closes, the backend re-reads before any event") {
    r.fe().close();
    r.be().process();
  }
  SUBCASE("the frontend's kernel goes away, the backend closes") {
    r.kill_frontend();
    r.be().close();
  }
  const bool settled = r.pump_until([&] {
    for (auto& f : r.frontends)
      if (f.active()) return false;
    for (auto& b : r.backends)
      if (b.active()) return false;
    return true;
  });
  CHECK_MESSAGE(settled, r.dump());
  CHECK_MESSAGE(children(fe_parent).empty(), r.dump());
  CHECK_MESSAGE(children(be_parent).empty(), r.dump());
  CHECK(r.ts_store.read(0, fe + "/state").error().code == store_errc::enoent);
  CHECK(r.ts_store.read(0, be + "/state").error().code == store_errc::enoent);
  const close_reason expected = fatal_first ? close_reason::resource_failed : close_reason::device_removed;
  for (auto& f : r.frontends) CHECK(f.reason() == expected);
  for (auto& b : r.backends) CHECK(b.reason() != close_reason::none);
}

// The toolstack itself: an unplug or a reconfiguration asked for after someone else removed
// the device must not write the backend's directory back into existence.
TEST_CASE_TEMPLATE("the toolstack does not re-create a removed device when it unplugs or reconfigures", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  const std::string be = r.addr.backend_dir();
  const std::string be_parent = be.substr(0, be.rfind('/'));
  REQUIRE(r.tk.refresh().has_value());  // the toolstack saw both ends Connected
  REQUIRE(r.tk.backend_state() == state::connected);
  REQUIRE(r.ts_store.remove(0, r.addr.frontend_dir()).has_value());
  REQUIRE(r.ts_store.remove(0, be).has_value());
  SUBCASE("unplug") {
    auto u = r.tk.unplug();
    REQUIRE_FALSE(u.has_value());
    CHECK(u.error().store == store_errc::enoent);
  }
  SUBCASE("reconfigure") {
    auto c = r.tk.reconfigure();
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().store == store_errc::enoent);
  }
  auto d = r.ts_store.directory(0, be_parent);
  CHECK((!d || d->empty()));
}
