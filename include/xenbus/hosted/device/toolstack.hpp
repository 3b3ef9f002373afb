// [hosted] toolstack<Store>: creates a device's two directories, unplugs, reconfigures and removes it.
#pragma once

#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/version.hpp>

#include <span>
#include <string>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// Why a toolstack operation was not done.
enum class toolstack_errc : std::uint8_t {
  refused,       ///< the table does not let the toolstack make this change now
  store_failed,  ///< the store refused a write
};

struct toolstack_error {
  toolstack_errc code;
  store_errc store = store_errc::eother;
};

/// The toolstack's side of one device, as libxl does it: both directories with their
/// back-links, `online`, and every state write checked by the toolstack's state machine.
/// Over a store that sets permissions (permission_store: libxenstore, our client, the
/// embedded store) each directory is owned by its end's domain and readable by the other
/// end, as libxl sets them; over any other store every party must be privileged.
template <device_store S>
class toolstack {
 public:
  toolstack(S& store, device_address addr) : s_{&store}, addr_{std::move(addr)} {}

  const device_address& address() const noexcept { return addr_; }
  state frontend_state() const noexcept { return m_.frontend(); }
  state backend_state() const noexcept { return m_.backend(); }
  void set_logger(device_logger log) { log_ = std::move(log); }

  /// Creates both directories in one transaction, each with state Initialising.
  result<void, toolstack_error> create() {
    auto t = m_;
    if (auto r = t.create(); !r) return unexpected{toolstack_error{toolstack_errc::refused}};
    const std::string fe = addr_.frontend_dir(), be = addr_.backend_dir();
    auto w = in_transaction(*s_, [&](store_tx tx) -> result<void, store_error> {
      if constexpr (permission_store<S>) {
        // First the directories with their owners, as libxl does: the keys written next
        // inherit the directory's permissions.
        if (auto r = make_directory(tx, fe, addr_.frontend_domid, addr_.backend_domid); !r) return r;
        if (auto r = make_directory(tx, be, addr_.backend_domid, addr_.frontend_domid); !r) return r;
      }
      const std::pair<std::string, std::string> nodes[] = {
          {fe + "/backend", be},
          {fe + "/backend-id", to_decimal(addr_.backend_domid)},
          {fe + "/state", std::string(to_node_text(state::initialising))},
          {be + "/frontend", fe},
          {be + "/frontend-id", to_decimal(addr_.frontend_domid)},
          {be + "/online", "1"},
          {be + "/state", std::string(to_node_text(state::initialising))},
      };
      for (const auto& [path, value] : nodes)
        if (auto r = s_->write(tx, path, value); !r) return r;
      return {};
    });
    if (!w) return unexpected{toolstack_error{toolstack_errc::store_failed, w.error().code}};
    m_ = t;
    log("toolstack: created " + fe + " and " + be + " (both Initialising) [toolstack-creates-device]");
    return {};
  }

  /// Unplugs: `online` = 0 and backend Closing, in one transaction ("toolstack-unplugs").
  result<void, toolstack_error> unplug() {
    if (auto r = refresh(); !r) return r;
    auto t = m_;
    if (!t.unplug()) return unexpected{toolstack_error{toolstack_errc::refused}};
    const std::string be = addr_.backend_dir();
    auto w = in_transaction(*s_, [&](store_tx tx) -> result<void, store_error> {
      if (auto r = backend_exists(tx); !r) return r;
      if (auto r = s_->write(tx, be + "/online", "0"); !r) return r;
      return s_->write(tx, be + "/state", to_node_text(state::closing));
    });
    if (!w) return unexpected{toolstack_error{toolstack_errc::store_failed, w.error().code}};
    m_ = t;
    log("toolstack: online = 0, backend Closing [toolstack-unplugs]");
    return {};
  }

  /// Asks a connected backend to reconfigure (backend Reconfiguring, "toolstack-reconfigures").
  result<void, toolstack_error> reconfigure() {
    if (auto r = refresh(); !r) return r;
    auto t = m_;
    auto tr = t.request(role::backend, state::reconfiguring);
    if (!tr) return unexpected{toolstack_error{toolstack_errc::refused}};
    auto w = in_transaction(*s_, [&](store_tx tx) -> result<void, store_error> {
      if (auto r = backend_exists(tx); !r) return r;
      return s_->write(tx, addr_.backend_dir() + "/state", to_node_text(state::reconfiguring));
    });
    if (!w) return unexpected{toolstack_error{toolstack_errc::store_failed, w.error().code}};
    m_ = t;
    log(std::string("toolstack: ") + std::string(describe(*tr).view()));
    return {};
  }

  /// Removes both directories once both ends are Closed ("toolstack-removes-device"). An
  /// end whose state node is gone already counts as removed: a destroyed domain takes its
  /// home, and the frontend directory in it, with it (libxl removes /local/domain/<domid>),
  /// so the backend's Closed directory is all that is left to remove. Removing never
  /// writes: a missing directory stays missing.
  result<void, toolstack_error> remove() {
    auto gone = read_nodes();
    if (!gone) return unexpected{gone.error()};
    auto t = m_;
    if (gone->frontend) (void)t.observe(role::frontend, state::unknown);
    if (gone->backend) (void)t.observe(role::backend, state::unknown);
    if (t.frontend() != state::unknown && !t.request(role::frontend, state::unknown))
      return unexpected{toolstack_error{toolstack_errc::refused}};
    if (t.backend() != state::unknown && !t.request(role::backend, state::unknown))
      return unexpected{toolstack_error{toolstack_errc::refused}};
    auto w = in_transaction(*s_, [&](store_tx tx) -> result<void, store_error> {
      for (const std::string& d : {addr_.frontend_dir(), addr_.backend_dir()}) {
        if (auto r = s_->remove(tx, d); !r && r.error().code != store_errc::enoent) return r;
        // The directory above it (device/<type>, backend/<type>/<frontend domid>) goes too
        // once empty, as libxl's path cleanup does, so that devices coming and going for
        // one domain after another leave nothing behind. A parent that is gone stays gone.
        const std::string parent = d.substr(0, d.rfind('/'));
        if (auto kids = s_->directory(tx, parent); kids && kids->empty())
          if (auto r = s_->remove(tx, parent); !r && r.error().code != store_errc::enoent) return r;
      }
      return {};
    });
    if (!w) return unexpected{toolstack_error{toolstack_errc::store_failed, w.error().code}};
    m_ = t;
    log("toolstack: removed both directories [toolstack-removes-device]");
    return {};
  }

  /// Reads both state nodes into the toolstack's machine (what the ends wrote since). A
  /// node that is gone leaves the machine as it was.
  result<void, toolstack_error> refresh() {
    auto r = read_nodes();
    if (!r) return unexpected{r.error()};
    return {};
  }

 private:
  struct missing_nodes {
    bool frontend = false, backend = false;
  };
  /// refresh(), telling which state nodes are gone.
  result<missing_nodes, toolstack_error> read_nodes() {
    missing_nodes gone;
    for (role end : {role::frontend, role::backend}) {
      const std::string dir = end == role::frontend ? addr_.frontend_dir() : addr_.backend_dir();
      auto text = s_->read(no_tx, dir + "/state");
      if (!text) {
        if (text.error().code != store_errc::enoent)
          return unexpected{toolstack_error{toolstack_errc::store_failed, text.error().code}};
        (end == role::frontend ? gone.frontend : gone.backend) = true;
        continue;
      }
      (void)m_.observe(end, std::string_view(*text));
    }
    return gone;
  }

  /// Inside `tx`: creates directory `dir` owned by domain `owner`, which alone may write it,
  /// and readable by domain `reader` (the other end), as libxl's device add does.
  /// (Instantiated only where S is a permission_store.)
  result<void, store_error> make_directory(store_tx tx, const std::string& dir, domid_t owner, domid_t reader) {
    if (auto r = s_->write(tx, dir, ""); !r) return r;
    const xenstore::perm both[] = {{xenstore::access::none, owner}, {xenstore::access::read, reader}};
    // One domain at both ends (a loopback test in dom0) needs no second entry.
    return s_->set_perms(tx, dir, std::span<const xenstore::perm>(both, owner == reader ? 1 : 2));
  }

  /// Inside `tx`: ENOENT once the backend's state node is gone. A xenstore write creates
  /// missing parents, so a write into a device someone else removed would bring it back.
  result<void, store_error> backend_exists(store_tx tx) {
    auto r = s_->read(tx, addr_.backend_dir() + "/state");
    if (!r) return unexpected{r.error()};
    return {};
  }

  void log(std::string_view line) const {
    if (log_) log_(line);
  }
  S* s_;
  device_address addr_;
  toolstack_machine m_{};
  device_logger log_;
};

XENBUS_END_NAMESPACE
