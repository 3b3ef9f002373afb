// Device teardown with removal and watch events interleaved. The input is a script: the
// toolstack removes the frontend's directory, the backend's, or both (at once, or between
// any two store operations of a driver), unplugs or reconfigures; the drivers close,
// re-read, report fatal errors, lose a watch, are destroyed and started again; their watch
// events are fetched and delivered one at a time, all at once, coalesced or twice. After
// every step: no removed directory has come back (a xenstore write creates missing
// parents), and the step did a bounded amount of store work. At the end each driver left
// is Closing or Closed, or has stopped, with a reason. ASan and UBSan watch for the rest.
#include "device_removal.hpp"

#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace xenbus;

struct msg {
  std::uint64_t id;
  std::uint32_t op, len;
};
struct proto {
  using request = msg;
  using response = msg;
  static constexpr std::string_view type = "vtear";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 1;
  static constexpr unsigned max_queues = 2;
};

constexpr domid_t back = 0, front = 1;
constexpr unsigned devid = 7;
using S = devtest::removing_store<embedded_store>;
using fe_type = frontend<proto, S, posix::evtchn_handle, posix::grant_table>;
using be_type = backend<proto, S, posix::evtchn_handle, posix::grant_table>;

/// Store operations one step may cost: a step runs at most a few process() calls or one
/// delivery of a bounded queue, each a bounded number of rounds (driver.hpp).
constexpr std::uint64_t max_ops_per_step = 4000;
/// Watch events held for one driver (the fuzzer's queue; the store holds the rest).
constexpr std::size_t max_pending = 64;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "device teardown invariant broken: %s\n", what);
  std::abort();
}

/// One driver end: its connection, its hypervisor handles, the driver (while it lives) and
/// the watch events fetched for it but not yet delivered.
template <class D>
struct end {
  std::optional<S> store;
  std::optional<posix::evtchn_handle> evtchn;
  std::optional<posix::grant_table> grants;
  std::optional<D> drv;
  std::deque<watch_event> pending;

  void fetch() {
    while (pending.size() < max_pending) {
      auto ev = store->next_watch_event(0);
      if (!ev) return;
      pending.push_back(std::move(*ev));
    }
  }
  /// Delivers the oldest event; `coalesce` folds every later event for the same path into
  /// it (xenstore may deliver several changes as one event); `twice` delivers it again
  /// (a spurious event).
  bool deliver_one(bool coalesce, bool twice) {
    if (pending.empty()) return false;
    watch_event ev = std::move(pending.front());
    pending.pop_front();
    if (coalesce)
      std::erase_if(pending, [&](const watch_event& e) { return e.path == ev.path && e.token == ev.token; });
    if (drv) {
      (void)drv->handle(ev);
      if (twice) (void)drv->handle(ev);
    }
    return true;
  }
};

struct world {
  posix::machine m;
  xenstore::store st;
  embedded_store ts_conn, fe_conn, be_conn;
  device_address addr{front, back, std::string(proto::type), devid};
  toolstack<embedded_store> tk{ts_conn, addr};
  end<fe_type> fe;
  end<be_type> be;
  bool fe_removed = false, be_removed = false;
  frontend_options fo;
  backend_options bo;

  explicit world(posix::machine mm) : m{std::move(mm)}, ts_conn{st, 0}, fe_conn{st, front}, be_conn{st, back} {
    fe.store.emplace(fe_conn);
    be.store.emplace(be_conn);
    auto fev = posix::evtchn_handle::open(m, front);
    auto bev = posix::evtchn_handle::open(m, back);
    if (!fev || !bev) std::abort();
    fe.evtchn.emplace(std::move(*fev));
    be.evtchn.emplace(std::move(*bev));
    fe.grants.emplace(m, front);
    be.grants.emplace(m, back);
  }

  void remove(bool f, bool b) {
    auto r = in_transaction(ts_conn, [&](store_tx tx) -> result<void, store_error> {
      if (f)
        if (auto e = ts_conn.remove(tx, addr.frontend_dir()); !e && e.error().code != store_errc::enoent) return e;
      if (b)
        if (auto e = ts_conn.remove(tx, addr.backend_dir()); !e && e.error().code != store_errc::enoent) return e;
      return {};
    });
    if (!r) fail("the toolstack could not remove a directory");
    fe_removed |= f;
    be_removed |= b;
  }

  void start_frontend() {
    if (fe.drv) return;
    fe.drv.emplace(*fe.store, *fe.evtchn, *fe.grants, front, devid, fo);
    if (!fe.drv->start()) fe.drv.reset();  // the device is gone (or half gone): nothing to run
  }
  void start_backend() {
    if (be.drv) return;
    be.drv.emplace(*be.store, *be.evtchn, *be.grants, back, front, devid, bo);
    if (!be.drv->start()) be.drv.reset();
  }

  std::uint64_t ops() const { return fe.store->ops() + be.store->ops(); }

  /// A removed directory must stay removed: nobody in this world creates one again.
  void check_removed() {
    const std::string id = to_decimal(devid);
    if (fe_removed) {
      auto c = devtest::children(ts_conn, devtest::frontend_parent(addr));
      if (std::find(c.begin(), c.end(), id) != c.end()) fail("the frontend directory came back after its removal");
    }
    if (be_removed) {
      auto c = devtest::children(ts_conn, devtest::backend_parent(addr));
      if (std::find(c.begin(), c.end(), id) != c.end()) fail("the backend directory came back after its removal");
    }
  }

  template <class D>
  static void check_end(const std::optional<D>& d) {
    if (!d) return;
    if (d->reason() == close_reason::none) fail("a driver ended without a reason");
    if (d->active() && d->own() != state::closed && d->own() != state::closing)
      fail("a driver that was closed is neither Closing nor Closed, nor stopped");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  auto m = posix::machine::create({.frames = 32, .domains = 2, .grants_per_domain = 32, .ports_per_domain = 8});
  if (!m) std::abort();
  world w{std::move(*m)};
  // The first byte picks the options and whether the script starts from Connected.
  const std::uint8_t flags = data[0];
  w.bo.skip_init_wait = (flags & 1) != 0;
  w.bo.reset_at_once = (flags & 2) == 0;
  w.bo.max_ring_page_order = 1;
  w.bo.max_queues = 2;
  w.fo.skip_init_wait = (flags & 4) != 0;
  w.fo.reconnect = (flags & 8) != 0;
  w.fo.queues = (flags & 16) != 0 ? 2 : 1;
  if (!w.tk.create()) std::abort();
  w.start_backend();
  w.start_frontend();
  if (!w.fe.drv || !w.be.drv) std::abort();
  if ((flags & 32) != 0)
    for (int i = 0; i < 16; ++i) {  // run the handshake to its end first
      w.fe.fetch();
      w.be.fetch();
      bool any = false;
      while (w.fe.deliver_one(false, false)) any = true;
      while (w.be.deliver_one(false, false)) any = true;
      if (!any) break;
    }

  std::size_t i = 1;
  auto next = [&]() -> std::uint8_t { return i < size ? data[i++] : 0; };
  for (unsigned steps = 0; i < size && steps < 512; ++steps) {
    const std::uint64_t before = w.ops();
    const std::uint8_t op = next();
    switch (op % 28) {
      case 0:
        w.remove(true, false);
        break;
      case 1:
        w.remove(false, true);
        break;
      case 2:
        w.remove(true, true);
        break;
      case 3:  // the ordinary removal: refused unless both ends are Closed
        if (w.tk.remove()) w.fe_removed = w.be_removed = true;
        break;
      case 4:
        if (w.fe.drv) w.fe.drv->close();
        break;
      case 5:
        if (w.be.drv) w.be.drv->close();
        break;
      case 6:
        if (w.fe.drv) w.fe.drv->process();
        break;  // re-read and make whatever move is due
      case 7:
        if (w.be.drv) w.be.drv->process();
        break;
      case 8:
        if (w.fe.drv) w.fe.drv->fatal(close_reason::resource_failed, "fuzz");
        break;
      case 9:
        if (w.be.drv) w.be.drv->fatal(close_reason::resource_failed, "fuzz");
        break;
      case 10:
        w.fe.fetch();
        w.be.fetch();
        break;
      case 11:
        (void)w.fe.deliver_one(false, false);
        break;
      case 12:
        (void)w.be.deliver_one(false, false);
        break;
      case 13:
        while (w.fe.deliver_one(false, false)) {
        }
        break;
      case 14:
        while (w.be.deliver_one(false, false)) {
        }
        break;
      case 15:
        (void)w.fe.deliver_one(true, false);
        break;
      case 16:
        (void)w.be.deliver_one(true, false);
        break;
      case 17:
        (void)w.fe.deliver_one(false, true);
        break;
      case 18:
        (void)w.be.deliver_one(false, true);
        break;
      case 19:  // the store loses the driver's watch on its own node; teardown meets ENOENT
        if (w.fe.drv) (void)w.fe.store->unwatch(w.fe.drv->dir() + "/state", w.fe.drv->token());
        break;
      case 20:
        if (w.be.drv) (void)w.be.store->unwatch(w.be.drv->peer_dir() + "/state", w.be.drv->token());
        break;
      case 21:
        w.fe.drv.reset();
        break;  // the driver (its kernel, its process) goes away
      case 22:
        w.be.drv.reset();
        break;
      case 23: {  // the removal lands between two store operations of one driver, later
        const std::uint8_t arg = next();
        const bool rf = (arg & 1) != 0, rb = (arg & 2) != 0 || !rf;
        const auto later = static_cast<std::uint64_t>(arg >> 3);  // 0..31 operations from now
        auto hook = [&w, rf, rb] { w.remove(rf, rb); };
        if ((arg & 4) != 0)
          w.be.store->arm(w.be.store->ops() + later, hook);
        else
          w.fe.store->arm(w.fe.store->ops() + later, hook);
        break;
      }
      case 24:
        w.start_frontend();
        break;  // a new instance (after a destruction)
      case 25:
        w.start_backend();
        break;
      case 26:
        (void)w.tk.unplug();
        break;  // online = 0, backend Closing (refused once removed)
      case 27:
        (void)w.tk.reconfigure();
        break;  // backend Reconfiguring (refused unless Connected)
    }
    if (w.ops() - before > max_ops_per_step) fail("one step did unbounded store work");
    w.check_removed();
  }

  // The end: every driver left is told to close and sees every event; a driver that lost
  // a watch re-reads its nodes, as one would on a timeout.
  if (w.fe.drv) w.fe.drv->close();
  if (w.be.drv) w.be.drv->close();
  for (int round = 0; round < 16; ++round) {
    const std::uint64_t before = w.ops();
    w.fe.fetch();
    w.be.fetch();
    while (w.fe.deliver_one(false, false)) {
    }
    while (w.be.deliver_one(false, false)) {
    }
    if (w.fe.drv) w.fe.drv->process();
    if (w.be.drv) w.be.drv->process();
    if (w.ops() - before > max_ops_per_step) fail("the final round did unbounded store work");
    w.check_removed();
  }
  world::check_end(w.fe.drv);
  world::check_end(w.be.drv);
  // A driver whose own directory was removed has stopped: it does not act on a device
  // that is gone.
  if (w.fe_removed && w.fe.drv && w.fe.drv->active()) fail("a frontend still acts after its removal");
  if (w.be_removed && w.be.drv && w.be.drv->active()) fail("a backend still acts after its removal");
  return 0;
}
