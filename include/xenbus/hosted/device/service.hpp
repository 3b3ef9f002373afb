// [hosted] device_service<S, D>: a driver per device of a type, with retries, deadlines, shutdown and resume.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/frontend.hpp>
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/version.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// What a device_service needs of the drivers it runs. backend<> and frontend<> model it as
/// they are; a driver author usually derives from one of them and adds the optional hooks:
/// - `void on_connected()`: the driver reached Connected with its queues bound (start serving);
/// - `void on_notify(unsigned queue)`: that queue's event channel was raised (the loop already
///   unmasked it; see device_service::notify);
/// - `void on_disconnected()`: it left Connected, or is about to be destroyed (stop using the
///   queues; in-flight work must be finished or dropped now).
template <class D>
concept service_driver = requires(D& d, const D& cd, const watch_event& ev) {
  { d.start() } -> std::same_as<result<void, store_error>>;
  { d.handle(ev) } -> std::same_as<bool>;
  d.process();
  d.close();
  { cd.own() } -> std::same_as<state>;
  { cd.peer() } -> std::same_as<state>;
  { cd.active() } -> std::same_as<bool>;
  { cd.reason() } -> std::same_as<close_reason>;
  { cd.token() } -> std::convertible_to<std::string_view>;
};

/// Which end a service runs, and so which directory it watches in its own domain.
enum class service_side : std::uint8_t {
  backend,   ///< backend/<type>/<frontend-domid>/<devid>, one backend driver per device
  frontend,  ///< device/<type>/<devid>, one frontend driver per device
};

/// When a service sends XS_RESET_WATCHES at start() (Linux's xs_reset_watches at boot).
enum class xs_reset_watches : std::uint8_t {
  never,
  /// When the toolstack offers it: `control/platform-feature-xs_reset_watches` in our home
  /// reads as a number other than 0 (libxl writes "1"; Linux reads it so, and skips dom0).
  if_offered,
  always,
};

/// What a service is told about a device it should create a driver for (its factory's argument).
struct device_probe {
  device_address address;  ///< both domains, the type and devid (a frontend's backend_domid from backend-id)
  std::string dir;         ///< this end's directory
  unsigned attempt = 1;    ///< 1 for the first probe of this device, 2, 3... after failures
  /// Frontends: how to take the device over. `fresh` for a node at Initialising;
  /// `linux_reset` for one a previous kernel left in another state (Linux xenbus_reset_state);
  /// `handover` after resume() for a node still Connected (the rings are rebuilt).
  frontend_start start = frontend_start::fresh;
  int error = 0;       ///< a failing factory may set an errno here (default ENODEV)
  std::string reason;  ///< and why, for the error node
};

/// A service's settings. Times are per device, measured from the step's start.
struct service_config {
  service_side side = service_side::backend;
  domid_t self = 0;  ///< the domain this service runs in (its directories are in its home)
  std::string type;  ///< the device type, e.g. "vbd"
  /// Probes of one device (the factory, then start()) before the service gives up and writes
  /// the reason to the device's error node (as Linux's xenbus_dev_error does).
  unsigned max_attempts = 4;
  std::chrono::milliseconds retry_backoff{100};       ///< wait before the 2nd probe; doubled each time
  std::chrono::milliseconds retry_backoff_max{5000};  ///< the longest wait between probes
  /// A frontend's walk through Linux's reset (Closing, Closed, Initialising) waits this long
  /// for each answer of the backend. Linux waits 5 s a step: xenbus_reset_wait_for_backend()
  /// in drivers/xen/xenbus/xenbus_probe_frontend.c, wait_event_interruptible_timeout(...,
  /// 5 * HZ), then goes on to the next step. Here a step that times out counts as a failed
  /// probe (retried, then given up): the table does not let a frontend write Closed while its
  /// backend is still Connected, as Linux does after the timeout.
  std::chrono::milliseconds reset_step_timeout{5000};
  /// After this end wrote Closing (close(), shutdown(), a fatal error), how long it waits for
  /// the peer to follow before the driver is dropped. Linux waits 5 s a device at shutdown:
  /// xenbus_dev_shutdown() in drivers/xen/xenbus/xenbus_probe.c (later
  /// xenbus_frontend_dev_shutdown() in xenbus_probe_frontend.c), wait_for_completion_timeout(
  /// ..., 5 * HZ), "timeout closing device". Linux closes devices one after the other; a
  /// service closes all at once, so the whole shutdown takes one timeout.
  std::chrono::milliseconds close_timeout{5000};
  /// Each step of the connection (this end waiting for the peer to move, before both are
  /// Connected) may last this long; a timeout counts as a failed probe. 0: no deadline, as in
  /// Linux, whose drivers wait for a peer for ever (a guest may take long to boot).
  std::chrono::milliseconds connect_timeout{0};
  /// Frontends: walk Linux's reset for a device found in a state a previous kernel left
  /// (Linux xenbus_reset_state does it for Connected and Closed devices at boot).
  bool reset_stale = true;
  xs_reset_watches reset_watches = xs_reset_watches::if_offered;
  /// Devices tracked at once (drivers, retries, parked devices); more are refused and counted,
  /// and taken when a tracked device goes away.
  std::size_t max_devices = 4096;
};

/// What a service did, for tests and monitoring.
struct service_stats {
  std::uint64_t probes = 0;          ///< drivers created and started
  std::uint64_t failures = 0;        ///< probes that failed (factory, start(), a step timeout)
  std::uint64_t given_up = 0;        ///< devices whose error node was written after max_attempts
  std::uint64_t removed = 0;         ///< drivers dropped because their directory vanished
  std::uint64_t recreated = 0;       ///< devices found removed and created again at the same path
  std::uint64_t step_timeouts = 0;   ///< reset or connect steps the peer let time out
  std::uint64_t close_timeouts = 0;  ///< drivers dropped while the peer had not closed
  std::uint64_t other_end_gone = 0;  ///< drivers dropped because the peer's domain vanished
  std::uint64_t rescans = 0;         ///< full listings (start, lost events, resume)
  std::uint64_t refused = 0;         ///< devices beyond max_devices
  std::uint64_t stray_events = 0;    ///< watch events with a token nobody here registered
  std::uint64_t events = 0;          ///< watch events taken from the store
};

/// Runs one driver per device of one type in one domain, as Linux's xenbus_probe_backend and
/// xenbus_probe_frontend do: it watches `backend/<type>` (or `device/<type>`) in its home,
/// creates a driver through the factory when a device appears, drops it when the directory
/// vanishes (without writing anything: the directory may already belong to a new device),
/// probes again when the toolstack removed and re-created a device at the same path, even
/// inside one batch of watch events (Linux xenbus_dev_changed, "better handle backend
/// crash", 2026: a node back at Initialising while the driver had moved on, or a changed
/// peer link, is a new device), ignores events for devices it already runs, drops a driver
/// whose peer's domain is gone (`/local/domain/<id>` vanished), retries a failing probe with
/// backoff and gives up after max_attempts with the reason in `error/<dir>/error`.
///
/// Single-threaded, never blocks: call process() when the store's watch descriptor is
/// readable or next_deadline() has come (posix::service_runner does it on an event loop). The
/// service takes every watch event of its store connection (drivers it creates share it):
/// give it a connection of its own. `S` and the factory's drivers must outlive it.
template <device_store S, service_driver D>
class device_service {
 public:
  using clock = std::chrono::steady_clock;
  /// Creates the driver for a device (not started: the service calls start()). Returning
  /// null refuses the device; set probe.error/reason to say why.
  using factory = std::function<std::unique_ptr<D>(device_probe&)>;

  device_service(S& store, service_config cfg, factory make)
      : store_{&store},
        cfg_{std::move(cfg)},
        make_{std::move(make)},
        home_{"/local/domain/" + to_decimal(cfg_.self)},
        root_{home_ + (cfg_.side == service_side::backend ? "/backend/" : "/device/") + cfg_.type},
        token_{"xenbus-svc-" + std::string(cfg_.side == service_side::backend ? "be-" : "fe-") + cfg_.type + "-" +
               to_decimal(detail::next_instance())} {}

  device_service(const device_service&) = delete;
  device_service& operator=(const device_service&) = delete;
  /// Drops every driver without closing it (call shutdown() first for an orderly close).
  ~device_service() {
    for (auto& [key, e] : devices_) drop_driver(e);
    unwatch_all();
  }

  /// Sends XS_RESET_WATCHES if configured (before any watch of this connection exists),
  /// registers the watches and probes every device already present.
  result<void, store_error> start(clock::time_point now = clock::now()) {
    ++changes_;
    maybe_reset_watches();
    if (auto w = store_->watch(root_, token_); !w) return w;
    watching_ = true;
    if (cfg_.side == service_side::backend) {
      // A frontend domain that dies or appears: its devices are checked (best effort: an
      // unprivileged connection may not watch the special paths).
      specials_ = store_->watch(xenstore::release_domain_path, token_).has_value();
      if (specials_) (void)store_->watch(xenstore::introduce_domain_path, token_);
    }
    rescan();
    settle(now);
    return {};
  }

  /// Takes at most `budget` pending watch events and acts on them, then runs the deadlines
  /// that are due. True if events are left (call again without waiting for the descriptor).
  bool process(clock::time_point now = clock::now(), unsigned budget = 256) {
    if (suspended_ || finished_) return false;
    std::vector<watch_event> for_drivers;
    bool rescan_all = false, domains = false, more = false;
    for (unsigned n = 0;; ++n) {
      if (n == budget) {
        more = true;
        break;
      }
      auto ev = store_->next_watch_event(0);
      if (!ev) {
        if (ev.error().code != store_errc::timeout && !store_failed_) {
          store_failed_ = true;
          log("the store connection failed: " + std::string(to_string(ev.error().code)));
        }
        break;
      }
      ++stats_.events;
      if (ev->token != token_) {
        for_drivers.push_back(std::move(*ev));
        continue;
      }
      if (ev->lost) rescan_all = true;  // the queue overflowed: a device may have come and gone unseen
      if (ev->path == xenstore::release_domain_path || ev->path == xenstore::introduce_domain_path)
        domains = true;
      else if (auto key = key_of(ev->path))
        dirty_.insert(*key);
      else
        rescan_all = true;  // our root itself, a frontend domain's level, or an ancestor
    }
    if (rescan_all) rescan();
    if (domains) check_domains();
    // Reconcile first: a driver whose device was removed (and perhaps re-created) is dropped
    // before it could act on an event meant for the new device.
    settle(now);
    for (const watch_event& ev : for_drivers) {
      auto it = by_token_.find(ev.token);
      if (it == by_token_.end()) {
        ++stats_.stray_events;  // a dropped driver's, or nobody's
        continue;
      }
      entry& e = *it->second;
      (void)e.drv->handle(ev);
      after_step(e, now);
    }
    settle(now);
    expire(now);
    finish_shutdown(now);
    return more;
  }

  /// The earliest time process() must run even without a watch event (a retry, a step
  /// deadline, the end of shutdown), if any.
  std::optional<clock::time_point> next_deadline() const {
    if (suspended_ || finished_) return std::nullopt;
    if (shutting_down_) return shutdown_deadline_;  // the one deadline while shutting down
    std::optional<clock::time_point> t;
    auto take = [&t](clock::time_point at) {
      if (!t || at < *t) t = at;
    };
    for (const auto& [key, e] : devices_)
      if (e.ph == phase::waiting || (e.ph == phase::running && e.armed)) take(e.due);
    return t;
  }

  /// An event-channel port was raised: calls on_notify(queue) of the driver whose queue is
  /// bound to it. False if no driver of this service owns the port.
  bool notify(evtchn_port port) {
    auto it = ports_.find(port);
    if (it == ports_.end()) return false;
    if constexpr (requires(D & d, unsigned q) { d.on_notify(q); }) it->second.e->drv->on_notify(it->second.queue);
    return true;
  }

  /// Closes every device at once (no more probes): each driver writes Closing and follows
  /// its peer to Closed. Drivers still waiting when close_timeout has passed are dropped,
  /// so 100 silent peers cost one timeout, not 100. done() tells when it is over.
  void shutdown(clock::time_point now = clock::now()) {
    if (shutting_down_) return;
    ++changes_;
    shutting_down_ = true;
    shutdown_deadline_ = now + cfg_.close_timeout;
    log("shutting down " + to_decimal(drivers()) + " device(s)");
    for (auto& [key, e] : devices_) {
      if (e.ph == phase::waiting) park(e, "shut down before probing");
      if (e.ph != phase::running) continue;
      if (e.drv->active() && e.drv->own() != state::closed) e.drv->close();
      after_step(e, now);
    }
    finish_shutdown(now);
  }
  /// True once shutdown() has closed or dropped every driver.
  bool done() const noexcept { return finished_; }

  /// True between suspend() and resume().
  bool suspended() const noexcept { return suspended_; }
  /// Stops acting until resume(): events stay queued in the store, deadlines wait.
  void suspend() noexcept {
    ++changes_;
    suspended_ = true;
  }
  /// After the domain was suspended and restored (save/restore, migration) the old rings'
  /// grants and event channels are gone and the store connection may be new: registers the
  /// watches again, drops every driver without writing anything, and probes every device
  /// again. A frontend found Connected hands over (the seed's row, back to Initialising,
  /// which the backend answers with InitWait); a backend driver closes a stale connection
  /// first (backend<>::start). The new drivers build new rings.
  result<void, store_error> resume(clock::time_point now = clock::now()) {
    ++changes_;
    suspended_ = false;
    if (watching_) {
      unwatch_all();
      if (auto w = store_->watch(root_, token_); !w) return w;
      watching_ = true;
      if (cfg_.side == service_side::backend) {
        specials_ = store_->watch(xenstore::release_domain_path, token_).has_value();
        if (specials_) (void)store_->watch(xenstore::introduce_domain_path, token_);
      }
    }
    for (auto& [key, e] : devices_) {
      drop_driver(e);
      e.attempts = 0;
      e.resumed = true;
      e.ph = phase::waiting;
      e.due = now;
    }
    rescan();
    settle(now);
    return {};
  }

  /// Devices whose driver is still connecting (own state before Connected), counting those
  /// waiting for a retry, as Linux's wait_for_devices counts them. `essential_only`: 0 for
  /// the keyboard and framebuffer types (vkbd, vfb), which Linux does not wait 270 s for.
  std::size_t connecting(bool essential_only = false) const {
    if (essential_only && (cfg_.type == "vkbd" || cfg_.type == "vfb")) return 0;
    std::size_t n = 0;
    for (const auto& [key, e] : devices_) {
      if (e.ph == phase::waiting) ++n;
      if (e.ph == phase::running && e.drv->active() &&
          static_cast<int>(e.drv->own()) < static_cast<int>(state::connected))
        ++n;
    }
    return n;
  }

  /// The driver of device `devid` (of frontend domain `frontend_domid` on a backend), if running.
  D* find(unsigned devid, domid_t frontend_domid = 0) {
    auto it = devices_.find(key_for(frontend_domid, devid));
    return it == devices_.end() || it->second.ph != phase::running ? nullptr : it->second.drv.get();
  }
  /// Calls fn(address, driver) for every running driver.
  template <class F>
  void for_each(F&& fn) {
    for (auto& [key, e] : devices_)
      if (e.ph == phase::running) fn(std::as_const(e.addr), *e.drv);
  }
  /// Running drivers.
  std::size_t drivers() const noexcept {
    std::size_t n = 0;
    for (const auto& [key, e] : devices_) n += e.ph == phase::running ? 1u : 0u;
    return n;
  }
  const service_stats& stats() const noexcept { return stats_; }
  const service_config& config() const noexcept { return cfg_; }
  S& store() noexcept { return *store_; }
  /// Counts the calls that move deadlines outside process() (start, shutdown, suspend,
  /// resume): a runner re-reads next_deadline() when it changes.
  std::uint64_t changes() const noexcept { return changes_; }
  /// The store connection failed (not a timeout): the service stopped reading it.
  bool store_failed() const noexcept { return store_failed_; }
  /// The directory this service watches (/local/domain/<self>/backend/<type> or .../device/<type>).
  const std::string& root() const noexcept { return root_; }
  /// A line for each thing the service does (probe, removal, retry, timeout, give-up).
  void set_logger(device_logger log) { log_ = std::move(log); }

 private:
  enum class phase : std::uint8_t {
    waiting,  ///< no driver yet: probe at `due`
    running,  ///< a driver runs the device
    parked,   ///< no driver (given up, stopped, closed); probed again only if re-created
    gone,     ///< no driver: the peer's domain is gone; probed again when it is back
  };
  struct queue_ref;
  struct entry {
    std::string key;
    device_address addr;
    std::string dir;
    std::unique_ptr<D> drv;
    phase ph = phase::waiting;
    unsigned attempts = 0;    // failed probes since the device appeared
    clock::time_point due{};  // waiting: next probe; running: the step deadline (if armed)
    bool armed = false;       // running: a step deadline is set
    bool tracked = false;     // running: seen_* hold the driver's last states
    state seen_own = state::unknown, seen_peer = state::unknown;
    bool resetting = false;  // a frontend walking Linux's reset
    bool resumed = false;    // the next probe follows a resume()
    bool connected = false;  // on_connected was called for the current connection
    std::vector<evtchn_port> ports;
    std::string parked_state;  // the state text when parked
    std::string peer_link;     // the peer directory the device named when probed
  };
  struct queue_ref {
    entry* e;
    unsigned queue;
  };

  // ---- Paths and keys --------------------------------------------------------------------

  std::string key_for(domid_t other, unsigned devid) const {
    return cfg_.side == service_side::backend ? to_decimal(other) + "/" + to_decimal(devid) : to_decimal(devid);
  }
  std::string_view link_key() const noexcept {
    return cfg_.side == service_side::backend ? keys::frontend : keys::backend;
  }

  /// The device key an event path under our root names ("<frontend-domid>/<devid>" or
  /// "<devid>"), or nothing for the root itself, a frontend domain's level, or elsewhere.
  std::optional<std::string> key_of(std::string_view path) const {
    if (!path.starts_with(root_) || path.size() <= root_.size() + 1 || path[root_.size()] != '/') return std::nullopt;
    std::string_view rest = path.substr(root_.size() + 1);
    const unsigned levels = cfg_.side == service_side::backend ? 2 : 1;
    std::size_t end = 0;
    for (unsigned l = 0; l < levels; ++l) {
      if (l > 0) {
        if (end >= rest.size()) return std::nullopt;  // only "<frontend-domid>": its devices are listed again
        ++end;                                        // the '/'
      }
      const std::size_t slash = rest.find('/', end);
      end = slash == std::string_view::npos ? rest.size() : slash;
    }
    return std::string(rest.substr(0, end));
  }

  /// Parses a key into its entry's address and directory; false for names that are not
  /// numbers (not a device of this protocol).
  bool parse_key(const std::string& key, device_address& a, std::string& dir) const {
    a.type = cfg_.type;
    if (cfg_.side == service_side::backend) {
      const auto slash = key.find('/');
      if (slash == std::string::npos) return false;
      auto fe = parse_uint(std::string_view(key).substr(0, slash), 0xffff);
      auto id = parse_uint(std::string_view(key).substr(slash + 1), 0xffffffffu);
      if (!fe || !id) return false;
      a.frontend_domid = static_cast<domid_t>(*fe);
      a.backend_domid = cfg_.self;
      a.devid = *id;
      dir = a.backend_dir();
    } else {
      auto id = parse_uint(key, 0xffffffffu);
      if (!id) return false;
      a.frontend_domid = cfg_.self;
      a.devid = *id;
      dir = a.frontend_dir();
    }
    return true;
  }
  domid_t other_domid(const entry& e) const noexcept {
    return cfg_.side == service_side::backend ? e.addr.frontend_domid : e.addr.backend_domid;
  }

  // ---- Watches ---------------------------------------------------------------------------

  void maybe_reset_watches() {
    bool want = cfg_.reset_watches == xs_reset_watches::always;
    if (cfg_.reset_watches == xs_reset_watches::if_offered) {
      auto v = store_->read(no_tx, home_ + "/control/platform-feature-xs_reset_watches");
      auto n = v ? parse_uint(*v, 0xffffffffu) : result<std::uint32_t, negotiation_errc>{0u};
      want = n && *n != 0;
    }
    if (!want) return;
    if constexpr (requires(S & s) {
                    { s.reset_watches() } -> std::same_as<result<void, store_error>>;
                  }) {
      // As Linux's xs_reset_watches: EEXIST is not a failure; any other only a warning.
      auto r = store_->reset_watches();
      if (r || r.error().code == store_errc::eexist) {
        watches_reset_ = true;
        log("sent XS_RESET_WATCHES: watches a previous user of this connection left are gone");
      } else {
        log("XS_RESET_WATCHES failed: " + std::string(to_string(r.error().code)));
      }
    } else {
      log("this store cannot send XS_RESET_WATCHES; stale watches stay");
    }
  }
  void unwatch_all() {
    if (!watching_) return;
    (void)store_->unwatch(root_, token_);
    if (specials_) {
      (void)store_->unwatch(xenstore::release_domain_path, token_);
      (void)store_->unwatch(xenstore::introduce_domain_path, token_);
    }
    watching_ = specials_ = false;
  }

 public:
  /// Whether start() sent XS_RESET_WATCHES successfully.
  bool watches_reset() const noexcept { return watches_reset_; }

 private:
  // ---- Reconciliation --------------------------------------------------------------------

  /// Lists every device under our root and marks each, and each known one, to be looked at.
  void rescan() {
    ++stats_.rescans;
    for (auto& [key, e] : devices_) dirty_.insert(key);
    auto top = store_->directory(no_tx, root_);
    if (!top) return;  // ENOENT: no device; known ones are found gone by reconcile
    for (const std::string& a : *top) {
      if (cfg_.side == service_side::frontend) {
        dirty_.insert(a);
        continue;
      }
      auto devs = store_->directory(no_tx, root_ + "/" + a);
      if (!devs) continue;
      for (const std::string& d : *devs) dirty_.insert(a + "/" + d);
    }
  }

  /// Reconciles every marked device until none is left (bounded: a reconciliation marks
  /// nothing new except through a driver's own stop, at most once per device per round).
  void settle(clock::time_point now) {
    for (int round = 0; round < 4 && !dirty_.empty(); ++round) {
      std::set<std::string> batch;
      batch.swap(dirty_);
      for (const std::string& key : batch) reconcile(key, now);
    }
  }

  /// Looks at one device in the store and makes the service agree with it.
  void reconcile(const std::string& key, clock::time_point now) {
    auto it = devices_.find(key);
    device_address addr;
    std::string dir;
    if (it == devices_.end() && !parse_key(key, addr, dir)) return;  // not a device of ours
    const std::string& d = it == devices_.end() ? dir : it->second.dir;
    auto text = store_->read(no_tx, d + "/state");
    if (!text) {
      if (text.error().code == store_errc::enoent && it != devices_.end()) {
        log(d + ": removed");
        if (it->second.ph == phase::running) ++stats_.removed;
        drop_driver(it->second);
        devices_.erase(it);
        if (refused_waiting_) {  // a place is free: look for the devices refused meanwhile
          refused_waiting_ = false;
          rescan();
        }
      }
      return;  // other errors are transient: the next event looks again
    }
    const auto st = parse_state(*text);
    if (it == devices_.end()) {
      if (shutting_down_) return;
      if (devices_.size() >= cfg_.max_devices) {
        ++stats_.refused;
        refused_waiting_ = true;
        log(dir + ": refused, " + to_decimal(cfg_.max_devices) + " devices already tracked");
        return;
      }
      entry& e = devices_[key];
      e.key = key;
      e.addr = std::move(addr);
      e.dir = std::move(dir);
      log(e.dir + ": appeared (state " + std::string(st ? to_string(*st) : std::string_view("garbage")) + ")");
      if (!st) return park(e, *text);
      probe(e, *st, now);
      return;
    }
    entry& e = it->second;
    switch (e.ph) {
      case phase::running:
        if (recreated(e, st)) {
          ++stats_.recreated;
          log(e.dir + ": removed and created again: a new driver for the new device");
          drop_driver(e);
          e.attempts = 0;
          if (shutting_down_) return park(e, *text);
          probe(e, *st, now);
          return;
        }
        if (!e.drv->active()) {
          // The driver stopped: its node was removed (and is back, but not as a new device)
          // or another instance writes it. Leave the device to whoever owns it now.
          park(e, *text);
          return;
        }
        return;  // a duplicate: the device already has its driver
      case phase::waiting:
        return;  // the retry timer probes it
      case phase::parked:
        if (!shutting_down_ && st && *st == state::initialising &&
            (e.parked_state != to_node_text(state::initialising) || link_changed(e))) {
          ++stats_.recreated;
          log(e.dir + ": created again after it was given up: probing");
          e.attempts = 0;
          probe(e, *st, now);
        }
        return;
      case phase::gone:
        if (!shutting_down_ && st && domain_exists(other_domid(e))) probe(e, *st, now);
        return;
    }
  }

  /// The toolstack removed the device and created it again at the same path: its node is
  /// back at Initialising while the driver had moved on, or it names another peer.
  bool recreated(entry& e, const result<state, state_parse_error>& st) {
    if (!st || *st != state::initialising) return false;
    if (e.drv->own() != state::initialising) return true;
    return link_changed(e);
  }
  bool link_changed(const entry& e) {
    auto link = store_->read(no_tx, e.dir + "/" + std::string(link_key()));
    return link && *link != e.peer_link;
  }

  bool domain_exists(domid_t id) {
    auto r = store_->read(no_tx, "/local/domain/" + to_decimal(id));
    return r || r.error().code != store_errc::enoent;  // EACCES and the like: assume it lives
  }

  /// A domain came or went: drop drivers whose peer's domain is gone, probe devices whose
  /// peer's domain is back.
  void check_domains() {
    std::map<domid_t, bool> exists;
    for (auto& [key, e] : devices_) {
      if (e.ph != phase::running && e.ph != phase::gone) continue;
      const domid_t id = other_domid(e);
      auto [it, fresh] = exists.try_emplace(id, false);
      if (fresh) it->second = domain_exists(id);
      if (!it->second && e.ph == phase::running) other_end_gone(e);
      if (it->second && e.ph == phase::gone) dirty_.insert(key);
    }
  }

  void other_end_gone(entry& e) {
    ++stats_.other_end_gone;
    log(e.dir + ": domain " + to_decimal(other_domid(e)) + " is gone: driver dropped");
    drop_driver(e);
    e.ph = phase::gone;
  }

  // ---- Probing, failures and deadlines ---------------------------------------------------

  frontend_start start_mode(const entry& e, state st) const {
    if (cfg_.side != service_side::frontend || st == state::initialising) return frontend_start::fresh;
    if (e.resumed && st == state::connected) return frontend_start::handover;
    return cfg_.reset_stale || e.resumed ? frontend_start::linux_reset : frontend_start::fresh;
  }

  void probe(entry& e, state st, clock::time_point now) {
    if (cfg_.side == service_side::backend && !domain_exists(e.addr.frontend_domid)) {
      log(e.dir + ": frontend domain " + to_decimal(e.addr.frontend_domid) + " does not exist: not probed");
      e.ph = phase::gone;
      return;
    }
    auto link = store_->read(no_tx, e.dir + "/" + std::string(link_key()));
    e.peer_link = link ? *link : std::string();
    if (cfg_.side == service_side::frontend) {
      auto id = store_->read(no_tx, e.dir + "/" + std::string(keys::backend_id));
      auto n = id ? parse_uint(*id, 0xffff) : result<std::uint32_t, negotiation_errc>{0u};
      e.addr.backend_domid = static_cast<domid_t>(n ? *n : 0u);
    }
    device_probe p{e.addr, e.dir, e.attempts + 1, start_mode(e, st), 0, {}};
    e.resumed = false;
    std::unique_ptr<D> drv = make_ ? make_(p) : nullptr;
    if (!drv) {
      const std::string why = p.reason.empty() ? std::string("the driver factory refused the device") : p.reason;
      return failure(e, p.error ? p.error : ENODEV, "probe: " + why, now);
    }
    if constexpr (requires(const D& cd) {
                    { cd.dir() } -> std::convertible_to<std::string_view>;
                  }) {
      if (std::string_view(drv->dir()) != e.dir)
        return failure(e, EINVAL, "probe: the factory made a driver for " + std::string(drv->dir()), now);
    }
    if (auto s = drv->start(); !s) return failure(e, errno_of(s.error().code), "start: " + errc_text(s.error()), now);
    e.drv = std::move(drv);
    by_token_[std::string(std::string_view(e.drv->token()))] = &e;
    e.ph = phase::running;
    e.tracked = false;
    e.resetting = p.start == frontend_start::linux_reset;
    ++stats_.probes;
    log(e.dir + ": driver started (attempt " + to_decimal(p.attempt) + ", " + std::string(to_string(e.drv->own())) +
        "/" + std::string(to_string(e.drv->peer())) + ")");
    after_step(e, now);
  }

  /// A probe failed: retry after a backoff that doubles each time, or give up.
  void failure(entry& e, int errnum, const std::string& what, clock::time_point now) {
    drop_driver(e);
    ++stats_.failures;
    ++e.attempts;
    if (e.attempts >= cfg_.max_attempts || shutting_down_) return give_up(e, errnum, what);
    auto wait = cfg_.retry_backoff;
    for (unsigned k = 1; k < e.attempts && wait < cfg_.retry_backoff_max; ++k) wait *= 2;
    wait = std::min(wait, cfg_.retry_backoff_max);
    e.ph = phase::waiting;
    e.due = std::max(now, clock::now()) + wait;  // from the failure, not from the start of process()
    log(e.dir + ": " + what + "; attempt " + to_decimal(e.attempts) + " of " + to_decimal(cfg_.max_attempts) +
        " failed, next in " + to_decimal(static_cast<std::uint64_t>(wait.count())) + " ms");
  }

  /// As Linux's xenbus_dev_error() (xenbus_va_dev_error() in drivers/xen/xenbus/
  /// xenbus_client.c): the text "<errno> <what>" (its "%i " of -err, then the message) in the
  /// node `error` under "error/" + the device's path relative to our home, that is
  /// /local/domain/<self>/error/backend/<type>/<fe>/<devid>/error. Then this end moves to
  /// Closing where the table lets it (Linux's xenbus_dev_probe() failure path switches to
  /// Closed; the table has this end close first), never re-creating a removed node.
  void give_up(entry& e, int errnum, const std::string& what) {
    ++stats_.given_up;
    const std::string rel = e.dir.substr(home_.size() + 1);
    const std::string text = to_decimal(static_cast<std::uint64_t>(errnum < 0 ? -errnum : errnum)) + " " + what;
    (void)store_->write(no_tx, home_ + "/error/" + rel + "/error", text);
    (void)in_transaction(*store_, [&](store_tx tx) -> result<void, store_error> {
      auto own_text = store_->read(tx, e.dir + "/state");
      if (!own_text) return unexpected{own_text.error()};  // gone: nothing to tell
      auto own = parse_state(*own_text);
      if (!own) return {};
      state peer = state::unknown;
      if (!e.peer_link.empty())
        if (auto p = store_->read(tx, e.peer_link + "/state"))
          if (auto ps = parse_state(*p)) peer = *ps;
      const bool may = cfg_.side == service_side::backend
                           ? state_machine<standard_table, role::backend>{*own, peer}.may(state::closing)
                           : state_machine<standard_table, role::frontend>{*own, peer}.may(state::closing);
      if (!may) return {};
      return store_->write(tx, e.dir + "/state", to_node_text(state::closing));
    });
    log(e.dir + ": gave up after " + to_decimal(e.attempts) + " attempt(s): " + text);
    auto st = store_->read(no_tx, e.dir + "/state");
    park(e, st ? *st : std::string());
  }

  void park(entry& e, std::string state_text) {
    drop_driver(e);
    e.ph = phase::parked;
    e.parked_state = std::move(state_text);
  }

  /// After the driver acted: follow its states (deadlines), its connection (hooks, ports),
  /// and a stop or a vanished peer.
  void after_step(entry& e, clock::time_point now) {
    if (e.ph != phase::running) return;
    D& d = *e.drv;
    const state own = d.own(), peer = d.peer();
    if (!e.tracked || own != e.seen_own || peer != e.seen_peer) {
      e.tracked = true;
      e.seen_own = own;
      e.seen_peer = peer;
      if (e.resetting && (own == state::initialised || own == state::connected ||
                          (own == state::initialising && peer == state::init_wait)))
        e.resetting = false;  // Linux's last reset step waits for InitWait
      arm(e, now);
      // The driver tells a gone domain apart (peer_domain_gone) when it sees the home vanish
      // itself; when it saw only the device directory go, the domain is checked here.
      if (d.reason() == close_reason::peer_domain_gone ||
          (d.reason() == close_reason::peer_vanished && !domain_exists(other_domid(e))))
        return other_end_gone(e);
    }
    track_connection(e);
    if (!d.active()) dirty_.insert(e.key);  // reconcile decides: removed, created again, or someone else's
  }

  /// The deadline of the step the driver is in now: closing (close_timeout), a frontend's
  /// reset walk (reset_step_timeout), connecting (connect_timeout), or none when settled.
  void arm(entry& e, clock::time_point now) {
    std::chrono::milliseconds t{0};
    const state own = e.seen_own, peer = e.seen_peer;
    if (shutting_down_ || !e.drv->active())
      t = std::chrono::milliseconds{0};  // shutdown has one deadline for all
    else if (e.resetting)
      t = cfg_.reset_step_timeout;  // Closing here is a step of the reset walk
    else if (own == state::closing)
      t = cfg_.close_timeout;
    else if (own == state::closed || (own == state::connected && peer == state::connected) ||
             own == state::reconfiguring || own == state::reconfigured)
      t = std::chrono::milliseconds{0};
    else
      t = cfg_.connect_timeout;
    e.armed = t.count() > 0;
    e.due = now + t;
  }

  /// Runs every deadline that has come: retries, step timeouts.
  void expire(clock::time_point now) {
    if (shutting_down_) return;
    for (auto& [key, e] : devices_) {
      if (e.ph == phase::waiting && e.due <= now) {
        auto text = store_->read(no_tx, e.dir + "/state");
        auto st = text ? parse_state(*text) : result<state, state_parse_error>{state::unknown};
        if (!text) {
          dirty_.insert(key);  // gone meanwhile: reconcile drops it
          continue;
        }
        if (!st) {
          park(e, *text);
          continue;
        }
        probe(e, *st, now);
      } else if (e.ph == phase::running && e.armed && e.due <= now) {
        step_timeout(e, now);
      }
    }
    settle(now);
  }

  void step_timeout(entry& e, clock::time_point now) {
    const std::string what =
        "timeout: " + std::string(to_string(e.seen_own)) + " waited for the peer (" +
        std::string(to_string(e.seen_peer)) + ") longer than " +
        to_decimal(static_cast<std::uint64_t>((e.resetting                    ? cfg_.reset_step_timeout
                                               : e.seen_own == state::closing ? cfg_.close_timeout
                                                                              : cfg_.connect_timeout)
                                                  .count())) +
        " ms";
    if (!e.resetting && e.seen_own == state::closing) {
      // Linux xenbus_dev_shutdown logs "timeout closing device" and moves on: so do we.
      ++stats_.close_timeouts;
      log(e.dir + ": " + what + ": driver dropped");
      park(e, std::string(to_node_text(state::closing)));
      return;
    }
    ++stats_.step_timeouts;
    failure(e, ETIMEDOUT, what, now);
  }

  void finish_shutdown(clock::time_point now) {
    if (!shutting_down_ || finished_) return;
    bool all = true;
    for (auto& [key, e] : devices_)
      if (e.ph == phase::running && e.drv->active() && e.drv->own() != state::closed) all = false;
    if (!all && now < shutdown_deadline_) return;
    for (auto& [key, e] : devices_) {
      if (e.ph != phase::running) continue;
      if (e.drv->active() && e.drv->own() != state::closed) {
        ++stats_.close_timeouts;
        log(e.dir + ": timeout closing device (" + std::string(to_string(e.drv->own())) + ", peer " +
            std::string(to_string(e.drv->peer())) + ")");
      }
      park(e, std::string(to_node_text(e.drv->own())));
    }
    finished_ = true;
    log("shut down");
  }

  // ---- Driver lifetime, connection and ports ---------------------------------------------

  static bool is_connected(D& d) {
    if constexpr (requires(const D& cd) {
                    { cd.connected() } -> std::same_as<bool>;
                  })
      return d.connected();
    else
      return d.own() == state::connected;
  }

  void track_connection(entry& e) {
    D& d = *e.drv;
    const bool now_connected = d.active() && is_connected(d);
    std::vector<evtchn_port> ports;
    if constexpr (requires(D & dd) { dd.queues(); }) {
      if (now_connected)
        for (const auto& q : d.queues()) ports.push_back(q.port);
    }
    if (e.connected && (!now_connected || ports != e.ports)) disconnect(e);
    if (now_connected && !e.connected) {
      e.connected = true;
      e.ports = std::move(ports);
      for (unsigned q = 0; q < e.ports.size(); ++q) ports_[e.ports[q]] = queue_ref{&e, q};
      if constexpr (requires(D & dd) { dd.on_connected(); }) d.on_connected();
    }
  }

  void disconnect(entry& e) {
    if (!e.connected) return;
    for (evtchn_port p : e.ports) {
      auto it = ports_.find(p);
      if (it != ports_.end() && it->second.e == &e) ports_.erase(it);
    }
    e.ports.clear();
    e.connected = false;
    if constexpr (requires(D & dd) { dd.on_disconnected(); }) e.drv->on_disconnected();
  }

  /// Destroys the driver without writing to the store (its destructor unwatches and releases
  /// the rings): the directory may already belong to a new device.
  void drop_driver(entry& e) {
    if (!e.drv) return;
    disconnect(e);
    by_token_.erase(std::string(std::string_view(e.drv->token())));
    e.drv.reset();
    e.armed = false;
  }

  // ---- Small helpers ---------------------------------------------------------------------

  static int errno_of(store_errc c) noexcept {
    switch (c) {
      case store_errc::einval:
        return EINVAL;
      case store_errc::eacces:
        return EACCES;
      case store_errc::eexist:
        return EEXIST;
      case store_errc::eisdir:
        return EISDIR;
      case store_errc::enoent:
        return ENOENT;
      case store_errc::enomem:
        return ENOMEM;
      case store_errc::enospc:
        return ENOSPC;
      case store_errc::eio:
        return EIO;
      case store_errc::enotempty:
        return ENOTEMPTY;
      case store_errc::enosys:
        return ENOSYS;
      case store_errc::erofs:
        return EROFS;
      case store_errc::ebusy:
        return EBUSY;
      case store_errc::eagain:
        return EAGAIN;
      case store_errc::eisconn:
        return EISCONN;
      case store_errc::e2big:
        return E2BIG;
      case store_errc::eperm:
        return EPERM;
      case store_errc::timeout:
        return ETIMEDOUT;
      default:
        return EIO;
    }
  }
  static std::string errc_text(const store_error& e) { return std::string(to_string(e.code)); }

  void log(const std::string& line) const {
    if (log_) log_("service " + cfg_.type + ": " + line);
  }

  S* store_;
  service_config cfg_;
  factory make_;
  std::string home_, root_, token_;
  std::map<std::string, entry> devices_;  // node-based: entry addresses stay valid
  std::unordered_map<std::string, entry*> by_token_;
  std::unordered_map<evtchn_port, queue_ref> ports_;
  std::set<std::string> dirty_;
  service_stats stats_;
  device_logger log_;
  clock::time_point shutdown_deadline_{};
  std::uint64_t changes_ = 0;
  bool watching_ = false, specials_ = false, watches_reset_ = false;
  bool suspended_ = false, shutting_down_ = false, finished_ = false, store_failed_ = false;
  bool refused_waiting_ = false;  // a device was refused for max_devices since the last rescan
};

XENBUS_END_NAMESPACE
