// device_service (include/xenbus/hosted/device/service.hpp) with the event loop and runner
// (posix/event_loop.hpp, posix/device/service_loop.hpp): devices appearing, vanishing and
// re-created in one batch, duplicates, a frontend domain that is gone, bounded retries with
// the error node, deadlines for a silent peer, parallel shutdown, resume and
// XS_RESET_WATCHES. Every scenario runs over our in-process store and over our xenstore
// server on a socket (client_store).
#include "service_test_support.hpp"

#include <xenbus/xen/xs_store.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <type_traits>

using namespace svctest;

#define SERVICE_ENVS inproc_env, server_env

// Over libxenstore (a real xenstored; the lab's dom0) the service and its runner must compile
// whole: watch_fd() is xs_fileno(), and libxenstore has no XS_RESET_WATCHES call.
template class xenbus::device_service<xenbus::xen::xs_store, echo_back<xenbus::xen::xs_store>>;
template class xenbus::posix::service_runner<
    xenbus::device_service<xenbus::xen::xs_store, echo_back<xenbus::xen::xs_store>>>;

namespace {

constexpr unsigned vdev = 51712;

/// Milliseconds since `t0`.
long long ms_since(clock_type::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

}  // namespace

TEST_CASE_TEMPLATE("service: devices that appear get one driver each, and both ends connect", Env, SERVICE_ENVS) {
  world<Env> w;
  w.start_back();
  w.start_front();
  for (unsigned d = 0; d < 3; ++d) w.create(vdev + d);
  REQUIRE_MESSAGE(w.run_until([&] {
    for (unsigned d = 0; d < 3; ++d)
      if (!w.both_connected(vdev + d)) return false;
    return true;
  }),
                  w.dump_log());
  CHECK(w.back->drivers() == 3);
  CHECK(w.front->drivers() == 3);
  CHECK(w.bc.made == 3);
  CHECK(w.fc.made == 3);
  CHECK(w.bc.connected == 3);  // on_connected once per device
  CHECK(w.fc.connected == 3);
  for (unsigned d = 0; d < 3; ++d) CHECK(w.echo(vdev + d, 100 + d, 41 + d));
  CHECK(w.bc.served == 3);
  CHECK(w.back->stats().failures == 0);

  SUBCASE("devices present before the service starts are found by its first scan") {
    w.back_run.reset();
    w.back.reset();
    const int made = w.bc.made;
    w.start_back();
    CHECK(w.back->drivers() == 3);
    CHECK(w.bc.made == made + 3);
  }
}

TEST_CASE_TEMPLATE("service: a device whose directories vanish loses its driver, without a write", Env, SERVICE_ENVS) {
  world<Env> w;
  w.start_back();
  w.start_front();
  w.create(vdev);
  w.create(vdev + 1);
  REQUIRE(w.run_until([&] { return w.both_connected(vdev) && w.both_connected(vdev + 1); }));

  SUBCASE("removed by force (a crashed toolstack's cleanup)") {
    w.remove(vdev);
    REQUIRE_MESSAGE(w.run_until([&] { return w.back->drivers() == 1 && w.front->drivers() == 1; }), w.dump_log());
    CHECK(w.back->stats().removed == 1);
    CHECK(w.front->stats().removed == 1);
    CHECK(w.bc.destroyed == 1);
    CHECK(w.bc.disconnected == 1);  // on_disconnected before the driver went
    w.run_for(50ms);
    // Nothing brought the directories back (a late state write would re-create them).
    CHECK(w.read(world<Env>::address(vdev).backend_dir()) == "<ENOENT>");
    CHECK(w.read(world<Env>::address(vdev).frontend_dir()) == "<ENOENT>");
    CHECK(w.both_connected(vdev + 1));
    CHECK(w.echo(vdev + 1, 7, 7));
  }
  SUBCASE("unplugged, closed by both ends, then removed by the toolstack") {
    toolstack<typename Env::store_type> tk{w.ts, world<Env>::address(vdev)};
    REQUIRE(tk.unplug().has_value());
    REQUIRE(w.run_until([&] {
      auto* b = w.back_driver(vdev);
      auto* f = w.front_driver(vdev);
      return b && f && b->own() == state::closed && f->own() == state::closed;
    }));
    REQUIRE(tk.remove().has_value());
    REQUIRE(w.run_until([&] { return w.back->drivers() == 1 && w.front->drivers() == 1; }));
    CHECK(w.back->stats().removed == 1);
    CHECK(w.bc.made == 2);  // no new probe
  }
}

TEST_CASE_TEMPLATE("service: a device removed and created again in one batch gets a new driver", Env, SERVICE_ENVS) {
  // Linux xenbus_dev_changed (2026, "better handle backend crash"): if the toolstack puts a
  // new device at the old path before the watch runs, the new one must be probed, not left
  // to the old driver.
  world<Env> w;
  w.start_back();
  w.start_front();
  w.create(vdev);
  REQUIRE(w.run_until([&] { return w.both_connected(vdev); }));
  auto* old_back = w.back_driver(vdev);
  const std::string old_token = old_back->token();

  // Both changes happen while the services are not running: they see them in one batch.
  w.remove(vdev);
  w.create(vdev);
  REQUIRE_MESSAGE(w.run_until([&] {
    auto* b = w.back_driver(vdev);
    return b && b->token() != old_token && w.both_connected(vdev);
  }),
                  w.dump_log());
  CHECK(w.back->stats().recreated + w.back->stats().removed >= 1);
  CHECK(w.bc.made == 2);
  CHECK(w.fc.made == 2);
  CHECK(w.back->drivers() == 1);
  CHECK(w.echo(vdev, 1, 99));
}

TEST_CASE_TEMPLATE("service: duplicate and spurious events never make a second driver", Env, SERVICE_ENVS) {
  world<Env> w;
  w.start_back();
  w.create(vdev);
  REQUIRE(w.run_until([&] { return w.back_driver(vdev) && w.back_driver(vdev)->own() == state::init_wait; }));
  const std::string be = world<Env>::address(vdev).backend_dir();
  for (int i = 0; i < 50; ++i) w.write(be + "/extra-" + std::to_string(i % 5), std::to_string(i));
  w.write(be + "/state", "2");  // the same state again
  w.run_for(50ms);
  CHECK(w.bc.made == 1);
  CHECK(w.back->stats().probes == 1);
  CHECK(w.back->drivers() == 1);
  // A second service start on the same tree (a restart) finds it once too.
  CHECK(w.back_driver(vdev)->own() == state::init_wait);
}

TEST_CASE_TEMPLATE("service: a frontend domain that is gone", Env, SERVICE_ENVS) {
  world<Env> w;
  w.start_back();

  SUBCASE("its driver is dropped when /local/domain/<id> vanishes, and probed when it is back") {
    w.start_front();
    w.create(vdev);
    REQUIRE(w.run_until([&] { return w.both_connected(vdev); }));
    w.front_run.reset();
    w.front.reset();  // the guest's kernel is gone with its domain
    (void)w.ts.remove(no_tx, "/local/domain/" + std::to_string(guest));
    REQUIRE_MESSAGE(w.run_until([&] { return w.back->drivers() == 0; }), w.dump_log());
    CHECK(w.back->stats().other_end_gone == 1);
    CHECK(w.bc.destroyed == 1);
    // The backend directory stays (the toolstack removes it); no new probe meanwhile.
    CHECK(w.read(world<Env>::address(vdev).backend_dir() + "/frontend-id") == std::to_string(guest));
    w.run_for(30ms);
    CHECK(w.bc.made == 1);
    // A new domain with the same id: the toolstack creates the device again.
    w.create(vdev);
    REQUIRE(w.run_until([&] { return w.back->drivers() == 1; }));
    CHECK(w.bc.made == 2);
  }
  SUBCASE("a backend directory for a domain that does not exist is not probed") {
    const device_address a = world<Env>::address(vdev);
    w.write(a.backend_dir() + "/frontend", a.frontend_dir());
    w.write(a.backend_dir() + "/frontend-id", std::to_string(guest));
    w.write(a.backend_dir() + "/online", "1");
    w.write(a.backend_dir() + "/state", "1");
    w.run_for(50ms);
    CHECK(w.bc.made == 0);
    CHECK(w.back->drivers() == 0);
    // The domain appears with its device: now it is probed.
    w.create(vdev);
    REQUIRE(w.run_until([&] { return w.back->drivers() == 1; }));
    CHECK(w.bc.made == 1);
  }
}

TEST_CASE_TEMPLATE("service: a failing probe is retried with backoff, then given up in the error node", Env,
                   SERVICE_ENVS) {
  world<Env> w;
  using W = world<Env>;
  std::vector<clock_type::time_point> calls;
  int fail_first = 1000;  // every probe fails unless a subcase says otherwise
  auto cfg = W::backend_config();
  cfg.max_attempts = 3;
  cfg.retry_backoff = 40ms;
  cfg.retry_backoff_max = 1000ms;
  w.start_back(cfg, [&](device_probe& p) -> std::unique_ptr<typename W::be_type> {
    calls.push_back(clock_type::now());
    if (static_cast<int>(calls.size()) <= fail_first) {
      p.error = ENOENT;
      p.reason = "no image for " + p.dir;
      return nullptr;
    }
    return w.make_back(p);
  });
  const device_address a = W::address(vdev);
  const std::string error_node = "/local/domain/0/error/backend/vecho/3/51712/error";

  SUBCASE("every attempt fails: exactly max_attempts probes, backoff doubling, the reason written") {
    w.create(vdev);
    REQUIRE_MESSAGE(w.run_until([&] { return w.back->stats().given_up == 1; }, 3s), w.dump_log());
    REQUIRE(calls.size() == 3);
    // Backoff 40 ms, then 80 ms (generous upper bounds for a loaded machine).
    CHECK(calls[1] - calls[0] >= 40ms);
    CHECK(calls[2] - calls[1] >= 80ms);
    CHECK(w.read(error_node) == "2 probe: no image for " + a.backend_dir());
    // The backend tells the frontend it will not serve: Closing, as the table allows.
    CHECK(w.read(a.backend_dir() + "/state") == "5");
    // Never retried for ever: more time, no more calls.
    w.run_for(300ms);
    CHECK(calls.size() == 3);
    CHECK(w.back->drivers() == 0);
    CHECK(w.back->stats().failures == 3);

    SUBCASE("the toolstack creating the device again starts over") {
      w.remove(vdev);
      w.create(vdev);
      REQUIRE(w.run_until([&] { return calls.size() >= 4; }, 3s));
    }
  }
  SUBCASE("the second attempt works: no error node, the driver runs") {
    fail_first = 1;
    w.start_front();
    w.create(vdev);
    REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(vdev); }, 3s), w.dump_log());
    CHECK(calls.size() == 2);
    CHECK(w.read(error_node) == "<ENOENT>");
    CHECK(w.back->stats().failures == 1);
  }
  SUBCASE("start() fails (no frontend link): the store's errno is written") {
    fail_first = 0;
    w.write(a.frontend_dir() + "/state", "1");  // the frontend domain exists
    w.write(a.backend_dir() + "/frontend-id", std::to_string(guest));
    w.write(a.backend_dir() + "/state", "1");  // but `frontend` was never written
    REQUIRE_MESSAGE(w.run_until([&] { return w.back->stats().given_up == 1; }, 3s), w.dump_log());
    CHECK(calls.size() == 3);
    CHECK(w.read(error_node) == "2 start: ENOENT");
  }
}

TEST_CASE_TEMPLATE("service: a frontend resets a device a previous kernel left, with deadlines per step", Env,
                   SERVICE_ENVS) {
  world<Env> w;
  using W = world<Env>;
  const device_address a = W::address(vdev);
  auto cfg = W::frontend_config();
  cfg.reset_step_timeout = 150ms;
  cfg.max_attempts = 2;
  cfg.retry_backoff = 20ms;

  SUBCASE("a live backend follows Linux's walk: Closing, Closed, Initialising, then connected") {
    w.start_back();
    w.create(vdev);
    // A first kernel connects, then is replaced without closing (kexec, kdump).
    w.start_front();
    REQUIRE(w.run_until([&] { return w.both_connected(vdev); }));
    w.front_run.reset();
    w.front.reset();
    const int made = w.fc.made;
    w.start_front(cfg);
    REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(vdev); }), w.dump_log());
    CHECK(w.fc.made == made + 1);
    CHECK(w.front->stats().step_timeouts == 0);
    CHECK(w.echo(vdev, 5, 10));
  }
  SUBCASE("a silent backend: each step times out, retries are bounded, the error node says why") {
    w.create(vdev);
    w.write(a.frontend_dir() + "/state", "4");  // what the previous kernel left
    w.write(a.backend_dir() + "/state", "4");   // and a backend that never answers
    const auto t0 = clock_type::now();
    w.start_front(cfg);
    REQUIRE_MESSAGE(w.run_until([&] { return w.front->stats().given_up == 1; }, 5s), w.dump_log());
    const auto took = ms_since(t0);
    CHECK(w.front->stats().step_timeouts == 2);
    // Two attempts of one 150 ms step each, plus a 20 ms backoff.
    CHECK(took >= 300);
    CHECK(took < 3000);
    CHECK(w.read("/local/domain/3/error/device/vecho/51712/error").starts_with("110 timeout: "));
    CHECK(w.front->drivers() == 0);
  }
}

TEST_CASE_TEMPLATE("service: a connect deadline, when configured, bounds a silent peer", Env, SERVICE_ENVS) {
  world<Env> w;
  auto cfg = world<Env>::backend_config();
  cfg.connect_timeout = 100ms;
  cfg.max_attempts = 1;
  w.start_back(cfg);
  w.create(vdev);  // no frontend ever runs
  const auto t0 = clock_type::now();
  REQUIRE_MESSAGE(w.run_until([&] { return w.back->stats().given_up == 1; }, 3s), w.dump_log());
  CHECK(ms_since(t0) >= 90);
  CHECK(w.back->stats().step_timeouts == 1);
  CHECK(w.read("/local/domain/0/error/backend/vecho/3/51712/error").starts_with("110 timeout: InitWait"));

  SUBCASE("by default there is none (Linux backends wait for a guest for ever)") {
    world<Env> w2;
    w2.start_back();
    w2.create(vdev);
    w2.run_for(300ms);
    CHECK(w2.back->drivers() == 1);
    CHECK(w2.back->next_deadline() == std::nullopt);
  }
}

TEST_CASE_TEMPLATE("service: 100 devices shut down in parallel, within about one close timeout", Env, SERVICE_ENVS) {
  world<Env> w;
  constexpr unsigned n = 100;
  auto cfg = world<Env>::backend_config();
  cfg.close_timeout = 500ms;

  SUBCASE("silent frontends: every device waits out the one deadline together") {
    w.start_back(cfg);
    for (unsigned d = 0; d < n; ++d) w.create(d);
    REQUIRE(w.run_until([&] { return w.back->drivers() == n; }, 30s));
    const auto t0 = clock_type::now();
    const bool all_closed = posix::shut_down(w.loop, *w.back_run);
    const auto took = ms_since(t0);
    MESSAGE("100 silent peers: shutdown took " << took << " ms (close timeout 500 ms)");
    CHECK_FALSE(all_closed);
    CHECK(w.back->done());
    CHECK(w.back->stats().close_timeouts == n);
    CHECK(w.back->drivers() == 0);
    CHECK(took >= 490);  // it did wait for the peers
    CHECK(took < 4000);  // one timeout and the work, not 100 timeouts (50 s)
    for (unsigned d = 0; d < n; d += 33) CHECK(w.read(world<Env>::address(d).backend_dir() + "/state") == "5");
  }
  SUBCASE("live frontends: every device closes long before the timeout") {
    cfg.close_timeout = 5s;  // a generous bound: closing must not depend on it
    w.start_back(cfg);
    w.start_front();
    for (unsigned d = 0; d < n; ++d) w.create(d);
    REQUIRE(w.run_until(
        [&] {
          for (unsigned d = 0; d < n; ++d)
            if (!w.both_connected(d)) return false;
          return true;
        },
        60s));
    const auto t0 = clock_type::now();
    const bool all_closed = posix::shut_down(w.loop, *w.back_run);
    const auto took = ms_since(t0);
    MESSAGE("100 live peers: shutdown took " << took << " ms");
    CHECK(all_closed);
    CHECK(w.back->stats().close_timeouts == 0);
    CHECK(took < 5000);
    CHECK(w.bc.disconnected == static_cast<int>(n));
    for (unsigned d = 0; d < n; d += 33) {
      CHECK(w.read(world<Env>::address(d).backend_dir() + "/state") == "6");
      CHECK(w.read(world<Env>::address(d).frontend_dir() + "/state") == "6");
    }
  }
}

TEST_CASE_TEMPLATE("service: resume rebuilds the rings", Env, SERVICE_ENVS) {
  world<Env> w;
  w.start_back();
  w.start_front();
  w.create(vdev);
  REQUIRE(w.run_until([&] { return w.both_connected(vdev); }));
  REQUIRE(w.echo(vdev, 1, 1));
  const device_address a = world<Env>::address(vdev);
  const std::string back_token = w.back_driver(vdev)->token();
  const std::string front_token = w.front_driver(vdev)->token();

  w.front->suspend();
  w.write(a.backend_dir() + "/extra", "x");  // events while suspended wait
  w.run_for(30ms);
  CHECK(w.fc.made == 1);
  REQUIRE(w.front->resume().has_value());
  REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(vdev) && w.fc.made == 2; }), w.dump_log());
  // A new frontend driver granted and published a new ring (the old grants were ended with
  // the old driver); the backend, the same driver, reset and mapped it.
  CHECK(w.front_driver(vdev)->token() != front_token);
  CHECK(w.back_driver(vdev)->token() == back_token);
  CHECK(w.fc.connected == 2);
  CHECK(w.bc.connected == 2);
  CHECK(w.bc.disconnected == 1);
  CHECK(w.echo(vdev, 2, 20));
}

TEST_CASE_TEMPLATE("service: XS_RESET_WATCHES at start when control/platform-feature-xs_reset_watches says so", Env,
                   SERVICE_ENVS) {
  world<Env> w;
  using S = typename Env::store_type;
  bool offered = false;
  SUBCASE("offered: the stale watch is gone") { offered = true; }
  SUBCASE("not offered: it stays (control)") { offered = false; }
  // A previous kernel's watch on the same connection, which nobody here owns: registered in
  // the server behind the store adapter's back (the raw client), or in the embedded store.
  std::optional<xenstore::watch> stale;
  if constexpr (std::is_same_v<S, client_store>) {
    auto sw = w.fs.client().watch("/local/domain/3/data");
    REQUIRE(sw.has_value());
    stale.emplace(std::move(*sw));
    REQUIRE(stale->next(1000ms).has_value());  // the registration event
  } else {
    REQUIRE(w.fs.watch("/local/domain/3/data", "stale-token").has_value());
  }
  if (offered) w.write("/local/domain/3/control/platform-feature-xs_reset_watches", "1");
  w.start_front();
  CHECK(w.front->watches_reset() == offered);
  w.run_for(20ms);
  const auto before = w.front->stats().stray_events;
  w.write("/local/domain/3/data/x", "1");
  w.run_for(50ms);
  if constexpr (std::is_same_v<S, client_store>) {
    // After a reset the server sends nothing more for it (with the control, the write's event).
    CHECK(stale->next(200ms).has_value() == !offered);
  } else {
    // The event for a token nobody here owns reaches the service as a stray one.
    CHECK((w.front->stats().stray_events > before) == !offered);
  }
  // The service's own watch works after the reset.
  w.start_back();
  w.create(vdev);
  CHECK(w.run_until([&] { return w.both_connected(vdev); }));
}

TEST_CASE_TEMPLATE("service: Linux's boot wait for devices", Env, SERVICE_ENVS) {
  world<Env> w;
  w.create(vdev);  // present at boot: the service's first scan finds it
  w.start_front();
  REQUIRE(w.front->connecting() == 1);

  SUBCASE("returns once every device connected") {
    w.start_back();
    const auto t0 = clock_type::now();
    CHECK(posix::wait_for_devices(w.loop, {}, *w.front_run) == 0);
    CHECK(ms_since(t0) < 5000);
    CHECK(w.both_connected(vdev));
  }
  SUBCASE("a silent backend: waits `all`, then `essential` in all, and reports the device") {
    const auto t0 = clock_type::now();
    CHECK(posix::wait_for_devices(w.loop, {.all = 100ms, .essential = 300ms}, *w.front_run) == 1);
    const auto took = ms_since(t0);
    CHECK(took >= 290);
    CHECK(took < 3000);
  }
}

TEST_CASE_TEMPLATE("service: at most max_devices devices are tracked, more are refused and counted", Env,
                   SERVICE_ENVS) {
  world<Env> w;
  auto cfg = world<Env>::backend_config();
  cfg.max_devices = 2;
  w.start_back(cfg);
  for (unsigned d = 0; d < 3; ++d) w.create(vdev + d);
  REQUIRE_MESSAGE(w.run_until([&] { return w.back->stats().refused >= 1 && w.back->drivers() == 2; }), w.dump_log());
  CHECK(w.bc.made == 2);
  // A tracked device going away makes room: the refused one is taken then.
  unsigned refused = 0, tracked = 0;
  for (unsigned d = vdev; d < vdev + 3; ++d) (w.back_driver(d) ? tracked : refused) = d;
  REQUIRE(refused != 0);
  w.remove(tracked);
  REQUIRE_MESSAGE(w.run_until([&] { return w.back_driver(refused) != nullptr; }), w.dump_log());
  CHECK(w.back_driver(tracked) == nullptr);
  CHECK(w.back->drivers() == 2);
}
