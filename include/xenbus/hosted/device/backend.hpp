// [hosted] backend<Protocol>: offers features, maps the frontend's transport, follows it by the table, closes.
#pragma once

#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE

struct backend_options {
  unsigned max_ring_page_order = 0;  ///< offered as max-ring-page-order
  unsigned max_queues = 1;           ///< offered as multi-queue-max-queues (when > 1)
  bool skip_init_wait = false;       ///< go Initialising -> Initialised (blkif.h allows it)
  /// A frontend back in Initialising while we are Connected: reset at once and answer
  /// InitWait (the seed, libxenbe), or close first (QEMU, FreeBSD). Both are table rows.
  bool reset_at_once = true;
  /// Extra feature keys (name, value) published with the limits, e.g. {"feature-flush", "1"}.
  std::vector<std::pair<std::string, std::string>> features{};
};

namespace detail {
template <class P, class G>
using backend_queue = device_queue<typename G::mapping, typename protocol_rings<P>::back>;
}  // namespace detail

/// The backend of a device of type `P` over store `S`, event channels `E` and grants `G`
/// (all three must outlive it). Single-threaded, never blocks: feed it its store's watch
/// events (handle(), deliver_watch_events()); once connected, queue_at(q).ring serves
/// requests.
/// How it follows the frontend, row by row, is in the tables at the end of the class.
template <device_protocol P, device_store S, event_channel E, grant_mapper G>
class backend {
  using core_type = detail::device_core<role::backend, S, E, detail::backend_queue<P, G>>;
  friend core_type;

 public:
  using ring_type = typename detail::protocol_rings<P>::back;
  using queue = typename core_type::queue;
  using machine_type = typename core_type::machine_type;

  /// The backend in domain `self` of device `devid` of domain `frontend_domid`.
  backend(S& store, E& evtchn, G& grants, domid_t self, domid_t frontend_domid, unsigned devid,
          backend_options opts = {})
      : core_(store, evtchn, device_address{frontend_domid, self, std::string(P::type), devid}.backend_dir(), self,
              "xenbus-be-" + to_decimal(self) + "-" + to_decimal(frontend_domid) + "-" + to_decimal(devid) + "-" +
                  to_decimal(detail::next_instance())),
        grants_{&grants},
        frontend_domid_{frontend_domid},
        opts_{std::move(opts)} {}

  /// Called when the toolstack moved us to Reconfiguring: rescan what the device exports.
  void on_reconfigure(std::function<void()> f) { reconfigure_hook_ = std::move(f); }

  /// Finds the frontend (`frontend`, `frontend-id`), watches both nodes and begins. A node
  /// left by a previous backend instance (a restart) is closed first, so that the frontend
  /// starts over with us.
  result<void, store_error> start() {
    if (auto a = core_.attach(keys::frontend); !a) return a;
    const state now = own();
    if (now != state::initialising && now != state::closed && now != state::closing) {
      core_.log("found our node " + std::string(to_string(now)) + " from a previous instance: closing it");
      core_.move(*this, state::closing, &backend::stop_io);  // row "backend-closes"
    }
    process();
    return {};
  }

  bool connected() const noexcept { return own() == state::connected && connected_; }
  /// The transport the frontend published, as accepted.
  const transport& negotiated() const noexcept { return accepted_; }

  /// Copies the next request of queue q out of the ring, once; a ring the peer corrupted is
  /// reported (error node, Closing) and stays broken.
  auto take_request(unsigned q) {
    auto r = core_.queue_at(q).ring->take_request();
    if (!r) fatal(close_reason::ring_broken, to_string(r.error()));
    return r;
  }

  // What every end offers (detail::device_core does the work).

  /// The queues of the current connection (empty while not connected).
  std::span<queue> queues() noexcept { return core_.queues(); }
  queue& queue_at(unsigned q) noexcept { return core_.queue_at(q); }
  /// Raises queue q's event channel (after moving bytes through a byte ring, say).
  result<void, evtchn_error> notify(unsigned q) { return core_.notify(q); }
  /// Publishes queue q's produced responses and notifies the frontend if it asked to be. A
  /// ring the frontend corrupted is reported (error node, Closing) and stays broken.
  result<bool, ring_error> push(unsigned q) { return core_.push(*this, q); }
  /// This end's state, as its machine holds it.
  state own() const noexcept { return core_.own(); }
  /// The frontend's state, as last seen.
  state peer() const noexcept { return core_.peer(); }
  /// Why this end closed or stopped (none while running normally).
  close_reason reason() const noexcept { return core_.reason(); }
  /// The reason with details ("state text has a leading zero", the refused key...).
  const std::string& reason_text() const noexcept { return core_.reason_text(); }
  /// False once this end was handed over or its device removed: it no longer acts.
  bool active() const noexcept { return core_.active(); }
  const machine_type& machine() const noexcept { return core_.machine(); }
  /// How many times this end wrote its state node (a quiet, handed-over end stops counting).
  std::uint64_t state_writes() const noexcept { return core_.state_writes(); }
  const std::string& dir() const noexcept { return core_.dir(); }
  const std::string& peer_dir() const noexcept { return core_.peer_dir(); }
  /// The token of this instance's watches ("xenbus-be-<dom>-<frontend dom>-<devid>-<instance>").
  const std::string& token() const noexcept { return core_.token(); }
  /// Where this end writes its fatal errors: /local/domain/<self>/error/<relative dir>/error.
  std::string error_path() const { return core_.error_path(); }
  void set_logger(device_logger log) { core_.set_logger(std::move(log)); }
  /// Feeds a watch event; returns false (and does nothing) if it was not for this driver.
  bool handle(const watch_event& ev) { return core_.handle(*this, ev); }
  /// Re-reads both nodes and acts; safe to call at any time (spurious calls do nothing).
  void process() { core_.process(*this); }
  /// Starts closing this end (Closing, then Closed once the frontend follows).
  void close() { core_.close(*this); }
  /// Reports a fatal error the way Linux's xenbus_dev_fatal does: writes the error node,
  /// then closes this end.
  void fatal(close_reason why, std::string_view detail) { core_.fatal(*this, why, detail); }

 private:
  enum class when : std::uint8_t {
    always,
    init_wait,
    skip_init_wait,
    reset_at_once,
    close_first,
    reconnect,
    peer_moved
  };
  using row = detail::reaction<backend, when>;
  using duty_row = detail::duty_row<backend>;
  using st = state;

  bool holds(when g) {
    switch (g) {  // guards are policy, not states: each reads an option or the store
      case when::always:
        return true;
      case when::init_wait:
        return !opts_.skip_init_wait;
      case when::skip_init_wait:
        return opts_.skip_init_wait;
      case when::reset_at_once:
        return opts_.reset_at_once;
      case when::close_first:
        return !opts_.reset_at_once;
      case when::peer_moved:
        return core_.peer_events();  // pciback: on the frontend's next change
      case when::reconnect: {
        if (core_.local_close()) return false;
        auto online = core_.store().read(no_tx, core_.dir() + "/" + std::string(keys::online));
        return online && *online == "1";
      }
    }
    return false;
  }

  void own_node_changed(state now) {
    // Fix: give each state a toolstack row can write into the backend's node exactly one row
    // in on_toolstack (`ignore` where it asks nothing of us).
    static_assert(covers_toolstack_moves(),
                  "xenbus device driver: a state the toolstack can write into the backend's node has no row, or "
                  "more than one, in on_toolstack");
    observation o = core_.machine().observe_toolstack(now);
    core_.log(describe(o).view());
    if (!o.explained()) {
      // Not the toolstack: another backend instance writes our node. It owns the device.
      core_.stop(close_reason::handed_over, describe(o).view());
      return;
    }
    for (const toolstack_row& r : on_toolstack)
      if (r.to == now) (this->*r.action)();
  }

  void toolstack_unplugs() {
    core_.set_reason(close_reason::toolstack_unplug, "online = 0");
    core_.set_local_close();
    (void)stop_io();
  }
  void toolstack_reconfigures() {
    if (reconfigure_hook_) reconfigure_hook_();
  }

  detail::prep nothing() { return detail::prep::ready; }
  void ignore() {}
  void on_stop_io() { (void)stop_io(); }
  void on_release() { release_now(); }
  void on_reset() {
    release_now();
    core_.log("frontend restarted: old transport released");
  }
  void on_transport() {
    if (own() == state::init_wait || own() == state::initialised) (void)connect();
  }

  detail::prep offer_features() {
    const std::string d = core_.dir() + "/";
    auto w = in_transaction(core_.store(), [&](store_tx tx) -> result<void, store_error> {
      if (auto e = core_.own_node_exists(tx); !e) return e;  // never re-create a removed device
      if (auto r = core_.store().write(tx, d + std::string(keys::max_ring_page_order),
                                       to_decimal(opts_.max_ring_page_order));
          !r)
        return r;
      if (opts_.max_queues > 1)
        if (auto r = core_.store().write(tx, d + std::string(keys::max_queues), to_decimal(opts_.max_queues)); !r)
          return r;
      for (const auto& [k, v] : opts_.features)
        if (auto r = core_.store().write(tx, d + k, v); !r) return r;
      return core_.store().write(tx, d + std::string(keys::hotplug_status), "connected");
    });
    if (!w && w.error().code == store_errc::enoent) {
      core_.removed();
      return detail::prep::failed;
    }
    if (!w) {
      fatal(close_reason::store_failed, "offering features: " + std::string(to_string(w.error().code)));
      return detail::prep::failed;
    }
    return detail::prep::ready;
  }

  /// Reads and checks the frontend's keys, maps its pages, binds its event channels.
  detail::prep connect() {
    if (connected_) return detail::prep::ready;
    auto t = read_transport(core_.store(), no_tx, core_.peer_dir(), opts_.max_ring_page_order, opts_.max_queues, P::abi,
                            detail::event_channel_key<P>());
    if (!t) {
      std::string why(to_string(t.error().code));
      fatal(close_reason::negotiation_failed, why);
      return detail::prep::failed;
    }
    core_.queues().resize(t->queues);
    for (unsigned q = 0; q < t->queues; ++q) {
      queue& qu = core_.queue_at(q);
      auto pages = grants_->map(frontend_domid_, std::span<const grant_ref>(t->queue[q].refs.data(), t->pages()), true);
      if (!pages) return fail_resource("mapping ring-ref: " + std::string(to_string(pages.error().code)));
      qu.pages.emplace(std::move(*pages));
      auto ring = detail::protocol_rings<P>::make_back(
          std::span<std::byte>(static_cast<std::byte*>(qu.pages->data()), qu.pages->size()));
      if (!ring) return fail_resource("ring: " + std::string(to_string(ring.error())));
      qu.ring.emplace(std::move(*ring));
      auto port = core_.evtchn().bind_interdomain(frontend_domid_, t->queue[q].port);
      if (!port) return fail_resource("binding event-channel: " + std::string(to_string(port.error().code)));
      qu.port = *port;
    }
    connected_ = true;
    core_.log("mapped transport: ring-page-order " + to_decimal(t->ring_page_order) + ", " + to_decimal(t->queues) +
              " queue(s), event-channel " + to_decimal(t->queue[0].port));
    accepted_ = std::move(*t);
    return detail::prep::ready;
  }
  detail::prep fail_resource(const std::string& what) {
    release_now();
    fatal(close_reason::resource_failed, what);
    return detail::prep::failed;
  }
  detail::prep stop_io() {
    connected_ = false;
    return detail::prep::ready;
  }
  detail::prep release() {
    release_now();
    return detail::prep::ready;
  }
  void release_now() {
    core_.release_queues();
    connected_ = false;
  }

  // The rows come after the member functions they name (a row can name only what is declared).
  // Each row: when our node is `own` and the frontend's is in `peer` and the guard holds, do
  // the action (what the new state promises the frontend, done before the node says so), then
  // move to `to`. The first matching row decides.
  // clang-format off
  static constexpr std::array<row, 14> reactions{{
    // own              peer                                                       to                guard                  action
    {st::initialising,  state_set{st::unknown, st::initialising, st::initialised}, st::init_wait,    when::init_wait,       &backend::offer_features},  // backend-publishes-features
    {st::initialising,  state_set{st::unknown, st::initialising, st::initialised}, st::initialised,  when::skip_init_wait,  &backend::offer_features},  // backend-skips-init-wait
    {st::init_wait,     state_set{st::initialised, st::connected},                 st::connected,    when::always,          &backend::connect},         // backend-connects
    {st::initialised,   state_set{st::initialised, st::connected},                 st::connected,    when::always,          &backend::connect},         // backend-connects-after-skip
    {st::connected,     state_set{st::initialising},                               st::init_wait,    when::reset_at_once,   &backend::offer_features},  // backend-resets-at-once (seed)
    {st::connected,     state_set{st::initialising},                               st::closing,      when::close_first,     &backend::stop_io},         // backend-closes (QEMU, FreeBSD)
    {st::init_wait,     state_set{st::closing, st::closed},                        st::closing,      when::always,          &backend::stop_io},         // backend-closes
    {st::initialised,   state_set{st::closing, st::closed},                        st::closing,      when::always,          &backend::stop_io},         // backend-closes
    {st::connected,     state_set{st::closing, st::closed, st::unknown},           st::closing,      when::always,          &backend::stop_io},         // backend-closes
    {st::reconfiguring, state_set{st::connected, st::reconfiguring},               st::reconfigured, when::always,          &backend::nothing},         // backend-reconfigured: the hook ran when the toolstack asked
    {st::reconfigured,  state_set{st::connected},                                  st::connected,    when::peer_moved,      &backend::connect},         // backend-reconnects
    {st::reconfigured,  state_set{st::closing, st::closed},                        st::closing,      when::always,          &backend::stop_io},         // backend-closes
    {st::closing,       state_set{st::closed, st::unknown},                        st::closed,       when::always,          &backend::release},         // backend-closed
    {st::closed,        state_set{st::initialising},                               st::init_wait,    when::reconnect,       &backend::offer_features},  // backend-prepares-for-reconnect
  }};

  // What each duty the frontend's moves leave us asks of us (found by the duty it names).
  static constexpr std::array<duty_row, duty_count> duties{{
    {duty::read_backend_features,   &backend::ignore},        // a frontend duty
    {duty::connect_transport,       &backend::on_transport},  // the frontend published (maybe unseen)
    {duty::read_backend_properties, &backend::ignore},        // a frontend duty
    {duty::stop_io,                 &backend::on_stop_io},
    {duty::release_transport,       &backend::on_release},
    {duty::reset_for_new_peer,      &backend::on_reset},      // a new frontend instance
    {duty::reconfigure,             &backend::ignore},        // the frontend walks Reconfiguring; we follow by rows
    {duty::forget_device,           &backend::ignore},        // read_peer reports the vanished peer
  }};

  // What a toolstack write into our node asks of us, by the state it wrote: every state a
  // toolstack row of the table drives our node to has a row (checked below).
  struct toolstack_row {
    state to;
    void (backend::*action)();
  };
  static constexpr std::array<toolstack_row, 4> on_toolstack{{
    {st::unknown,       &backend::ignore},                  // toolstack-removes-device: read_own stops us
    {st::initialising,  &backend::ignore},                  // toolstack-creates-device
    {st::closing,       &backend::toolstack_unplugs},       // toolstack-unplugs: online = 0
    {st::reconfiguring, &backend::toolstack_reconfigures},  // toolstack-reconfigures
  }};
  // clang-format on
  static constexpr bool covers_toolstack_moves() noexcept {
    for (state s : all_states) {
      std::size_t n = 0;
      for (const toolstack_row& r : on_toolstack) n += r.to == s ? 1u : 0u;
      if (n != (standard_table::can_drive_to(by::toolstack_on_backend, s) ? 1u : 0u)) return false;
    }
    return true;
  }

  // What this end does before it writes Closing on its own (close(), a fatal error).
  static constexpr detail::prep (backend::*close_action)() = &backend::stop_io;

  core_type core_;  // first: built before the members below, destroyed after them (it releases the queues)
  G* grants_;
  domid_t frontend_domid_;
  backend_options opts_;
  transport accepted_{};
  bool connected_ = false;
  std::function<void()> reconfigure_hook_;
};

XENBUS_END_NAMESPACE
