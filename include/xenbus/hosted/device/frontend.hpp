// [hosted] frontend<Protocol>: publishes the transport, follows the backend by the table, hands over and closes.
#pragma once

#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/version.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// How a frontend instance finds its device when it starts.
enum class frontend_start : std::uint8_t {
  fresh,        ///< the toolstack just created it: our node is Initialising
  handover,     ///< the seed's handover: an older instance is Connected; go straight back
                ///< to Initialising, the backend resets and answers InitWait
  linux_reset,  ///< Linux xenbus_reset_frontend after kexec/kdump: Closing, Closed, Initialising
};

struct frontend_options {
  unsigned ring_page_order = 0;  ///< asked for; capped by the backend's max-ring-page-order
  unsigned queues = 1;           ///< asked for; capped by multi-queue-max-queues
  bool skip_init_wait = false;   ///< publish the transport without waiting for InitWait (blkif.h)
  bool reconnect = false;        ///< after the backend closed while `online` = 1, start over
  frontend_start start = frontend_start::fresh;
};

namespace detail {
template <class P, class G>
using frontend_queue = device_queue<typename G::shared_pages, typename protocol_rings<P>::front>;
}  // namespace detail

/// The frontend of a device of type `P` over store `S`, event channels `E` and grants `G`
/// (all three must outlive it). Single-threaded, never blocks: feed it its store's watch
/// events (handle(), deliver_watch_events()); once connected, queue_at(q).ring carries
/// requests.
/// How it follows the backend, row by row, is in the tables at the end of the class.
template <device_protocol P, device_store S, event_channel E, grant_sharer G>
class frontend {
  using core_type = detail::device_core<role::frontend, S, E, detail::frontend_queue<P, G>>;
  friend core_type;

 public:
  using ring_type = typename detail::protocol_rings<P>::front;
  using queue = typename core_type::queue;
  using machine_type = typename core_type::machine_type;

  /// The frontend of device `devid` of type P::type in domain `self`.
  frontend(S& store, E& evtchn, G& grants, domid_t self, unsigned devid, frontend_options opts = {})
      : core_(store, evtchn, device_address{self, 0, std::string(P::type), devid}.frontend_dir(), self,
              "xenbus-fe-" + to_decimal(self) + "-" + to_decimal(devid) + "-" + to_decimal(detail::next_instance())),
        grants_{&grants},
        opts_{opts} {}

  /// Finds the backend (`backend`, `backend-id`), watches both state nodes and begins.
  result<void, store_error> start() {
    auto id = core_.store().read(no_tx, core_.dir() + "/" + std::string(keys::backend_id));
    if (!id) return unexpected{id.error()};
    auto parsed = parse_uint(*id, 0xffff);
    if (!parsed) return unexpected{store_error{store_errc::einval}};
    backend_domid_ = static_cast<domid_t>(*parsed);
    if (auto a = core_.attach(keys::backend); !a) return a;
    if (opts_.start == frontend_start::handover) {
      core_.move(*this, state::initialising, &frontend::start_over);  // row "frontend-hands-over"
    } else if (opts_.start == frontend_start::linux_reset && own() != state::initialising) {
      resetting_ = true;
      core_.move(*this, state::closing, &frontend::stop_io);  // xenbus_reset_frontend step 1
    }
    process();
    return {};
  }

  /// True once both ends are Connected and the rings are attached.
  bool connected() const noexcept { return own() == state::connected && attached_; }
  /// The negotiated transport (valid once published).
  unsigned ring_page_order() const noexcept { return published_.ring_page_order; }
  unsigned queue_count() const noexcept { return published_.queues; }
  domid_t backend_domid() const noexcept { return backend_domid_; }

  /// Copies the next response of queue q out of the ring, once; a ring the peer corrupted is
  /// reported (error node, Closing) and stays broken.
  auto take_response(unsigned q) {
    auto r = core_.queue_at(q).ring->take_response();
    if (!r) fatal(close_reason::ring_broken, to_string(r.error()));
    return r;
  }

  // What every end offers (detail::device_core does the work).

  /// The queues of the current connection (empty while not connected).
  std::span<queue> queues() noexcept { return core_.queues(); }
  queue& queue_at(unsigned q) noexcept { return core_.queue_at(q); }
  /// Raises queue q's event channel (after moving bytes through a byte ring, say).
  result<void, evtchn_error> notify(unsigned q) { return core_.notify(q); }
  /// Publishes queue q's produced requests and notifies the backend if it asked to be. A
  /// ring the backend corrupted is reported (error node, Closing) and stays broken.
  result<bool, ring_error> push(unsigned q) { return core_.push(*this, q); }
  /// This end's state, as its machine holds it.
  state own() const noexcept { return core_.own(); }
  /// The backend's state, as last seen.
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
  /// The token of this instance's watches ("xenbus-fe-<dom>-<devid>-<instance>").
  const std::string& token() const noexcept { return core_.token(); }
  /// Where this end writes its fatal errors: /local/domain/<self>/error/<relative dir>/error.
  std::string error_path() const { return core_.error_path(); }
  void set_logger(device_logger log) { core_.set_logger(std::move(log)); }
  /// Feeds a watch event; returns false (and does nothing) if it was not for this driver.
  bool handle(const watch_event& ev) { return core_.handle(*this, ev); }
  /// Re-reads both nodes and acts; safe to call at any time (spurious calls do nothing).
  void process() { core_.process(*this); }
  /// Starts closing this end (Closing, then Closed once the backend follows).
  void close() { core_.close(*this); }
  /// Reports a fatal error the way Linux's xenbus_dev_fatal does: writes the error node,
  /// then closes this end.
  void fatal(close_reason why, std::string_view detail) { core_.fatal(*this, why, detail); }

 private:
  enum class when : std::uint8_t { always, skip_init_wait, reconnect, reconfigure_owed };
  using row = detail::reaction<frontend, when>;
  using duty_row = detail::duty_row<frontend>;
  using st = state;

  bool holds(when g) {
    if (g == when::skip_init_wait) return opts_.skip_init_wait;
    if (g == when::reconfigure_owed) return reconfigure_owed_;
    if (g == when::reconnect) {
      if (resetting_) return true;
      if (!opts_.reconnect || core_.local_close()) return false;
      auto online = core_.store().read(no_tx, core_.peer_dir() + "/" + std::string(keys::online));
      return online && *online == "1";
    }
    return true;
  }

  void own_node_changed(state now) {
    // Only this instance writes our node, except a newer instance that took the device
    // over (the seed's handover, or a Linux reset): from now on it owns the device.
    (void)core_.machine().hand_over();
    core_.stop(close_reason::handed_over, std::string("own node set to ") + std::string(to_string(now)));
  }

  /// True when the first ring reference in our directory is no longer the one this instance
  /// published: another instance published its own transport there (read by the core when
  /// our state node reads unchanged). While our grant is alive no other instance in this
  /// domain can hold the same reference, so a different value means a new owner.
  bool own_keys_replaced() {
    if (core_.queues().empty()) return false;  // nothing published (published_ keeps its defaults)
    const std::string key = queue_dir(core_.dir(), published_.queues, 0) + "/" + std::string(keys::ring_ref) +
                            (published_.ring_page_order ? "0" : "");
    auto v = core_.store().read(no_tx, key);
    if (!v) return v.error().code == store_errc::enoent;
    return *v != to_decimal(published_.queue[0].refs[0]);
  }

  void ignore() {}
  void on_stop_io() { attached_ = false; }
  void on_reset() { drop_transport(); }
  void on_backend_features() {
    if (own() == state::initialising) (void)publish();
  }
  detail::prep start_over() {
    drop_transport();
    resetting_ = false;
    return detail::prep::ready;
  }
  detail::prep stop_io() {
    attached_ = false;
    return detail::prep::ready;
  }
  detail::prep release() {
    drop_transport();
    return detail::prep::ready;
  }
  void on_reconfigure() { reconfigure_owed_ = true; }
  detail::prep reconfigure() {
    reconfigure_owed_ = false;
    return detail::prep::ready;
  }

  detail::prep attach_rings() {
    for (const queue& q : core_.queues())
      if (!q.ring) return detail::prep::not_yet;
    attached_ = !core_.queues().empty();
    return attached_ ? detail::prep::ready : detail::prep::not_yet;
  }

  void drop_transport() {
    core_.release_queues();
    attached_ = false;
    published_ = transport{};
  }

  /// Reads the backend's limits, grants the ring pages, binds the event channels and
  /// writes every key in one transaction. Idempotent while the transport stands.
  detail::prep publish() {
    if (!core_.queues().empty()) return detail::prep::ready;
    auto limit = [&](std::string_view key, unsigned fallback, unsigned cap) -> unsigned {
      auto v = core_.store().read(no_tx, core_.peer_dir() + "/" + std::string(key));
      if (!v) return fallback;
      auto n = parse_uint(*v, cap);
      return n ? *n : fallback;
    };
    transport t;
    t.ring_page_order = std::min({opts_.ring_page_order, static_cast<unsigned>(P::max_ring_page_order),
                                  limit(keys::max_ring_page_order, 0, max_supported_ring_page_order)});
    t.queues = std::max(1u, std::min({opts_.queues, static_cast<unsigned>(P::max_queues),
                                      limit(keys::max_queues, 1, max_supported_queues)}));
    t.protocol = std::string(P::abi);
    core_.queues().resize(t.queues);
    for (unsigned q = 0; q < t.queues; ++q) {
      queue& qu = core_.queue_at(q);
      auto pages = grants_->share(backend_domid_, std::span<grant_ref>(t.queue[q].refs.data(), t.pages()), true);
      if (!pages) return fail_resource("grant: " + std::string(to_string(pages.error().code)));
      qu.pages.emplace(std::move(*pages));
      auto ring = detail::protocol_rings<P>::make_front(
          std::span<std::byte>(static_cast<std::byte*>(qu.pages->data()), qu.pages->size()));
      if (!ring) return fail_resource("ring: " + std::string(to_string(ring.error())));
      qu.ring.emplace(std::move(*ring));
      auto port = core_.evtchn().bind_unbound(backend_domid_);
      if (!port) return fail_resource("event channel: " + std::string(to_string(port.error().code)));
      qu.port = t.queue[q].port = *port;
    }
    auto w = in_transaction(core_.store(), [&](store_tx tx) -> result<void, store_error> {
      if (auto e = core_.own_node_exists(tx); !e) return e;  // never re-create a removed device
      // Keys a previous instance published would mislead the backend: clear them first.
      auto names = core_.store().directory(tx, core_.dir());
      if (!names) return unexpected{names.error()};
      for (const std::string& n : *names)
        if (n.starts_with(keys::ring_ref) || n == keys::ring_page_order || n == detail::event_channel_key<P>() ||
            n == keys::num_queues || n == keys::protocol || n.starts_with("queue-"))
          if (auto r = core_.store().remove(tx, core_.dir() + "/" + n); !r) return r;
      return publish_transport(core_.store(), tx, core_.dir(), t, detail::event_channel_key<P>());
    });
    if (!w && w.error().code == store_errc::enoent) {
      drop_transport();
      core_.removed();
      return detail::prep::failed;
    }
    if (!w) {
      fatal(close_reason::store_failed, "publishing the transport: " + std::string(to_string(w.error().code)));
      return detail::prep::failed;
    }
    published_ = std::move(t);
    core_.log("published transport: ring-page-order " + to_decimal(published_.ring_page_order) + ", " +
              to_decimal(published_.queues) + " queue(s), event-channel " + to_decimal(core_.queue_at(0).port));
    return detail::prep::ready;
  }
  detail::prep fail_resource(const std::string& what) {
    drop_transport();
    fatal(close_reason::resource_failed, what);
    return detail::prep::failed;
  }

  // The rows come after the member functions they name (a row can name only what is declared).
  // Each row: when our node is `own` and the backend's is in `peer` and the guard holds, do
  // the action (what the new state promises the backend, done before the node says so), then
  // move to `to`. The first matching row decides.
  // clang-format off
  static constexpr std::array<row, 13> reactions{{
    // own              peer                                                                              to                 guard                    action
    {st::initialising,  state_set{st::init_wait},                                                         st::initialised,   when::always,            &frontend::publish},       // frontend-publishes-transport
    {st::initialising,  state_set{st::initialised},                                                       st::initialised,   when::always,            &frontend::publish},       // frontend-skips-init-wait: the backend skipped it, nothing to wait for
    {st::initialising,  state_set{st::initialising},                                                      st::initialised,   when::skip_init_wait,    &frontend::publish},       // frontend-skips-init-wait
    {st::initialised,   state_set{st::connected},                                                         st::connected,     when::always,            &frontend::attach_rings},  // frontend-connects
    {st::initialising,  state_set{st::closing},                                                           st::closing,       when::always,            &frontend::stop_io},       // frontend-closes
    {st::initialised,   state_set{st::closing, st::closed, st::unknown},                                  st::closing,       when::always,            &frontend::stop_io},       // frontend-closes
    {st::connected,     state_set{st::closing, st::closed, st::unknown, st::initialising, st::init_wait}, st::closing,       when::always,            &frontend::stop_io},       // frontend-closes: backend went away or restarted
    {st::connected,     state_set{st::reconfiguring, st::reconfigured},                                   st::reconfiguring, when::reconfigure_owed,  &frontend::reconfigure},   // frontend-reconfigures, once per backend cycle
    {st::reconfiguring, state_set{st::reconfigured, st::connected},                                       st::connected,     when::always,            &frontend::attach_rings},  // frontend-reconfigured
    {st::reconfiguring, state_set{st::closing, st::closed, st::unknown},                                  st::closing,       when::always,            &frontend::stop_io},       // frontend-closes
    {st::closing,       state_set{st::closing, st::closed, st::unknown},                                  st::closed,        when::always,            &frontend::release},       // frontend-closed
    {st::closed,        state_set{st::closed},                                                            st::initialising,  when::reconnect,         &frontend::start_over},    // frontend-resets: a reset or handover drops the old transport
    {st::initialising,  state_set{st::unknown},                                                           st::closing,       when::always,            &frontend::stop_io},       // frontend-closes: backend vanished
  }};

  // What each duty the backend's moves leave us asks of us (found by the duty it names).
  static constexpr std::array<duty_row, duty_count> duties{{
    {duty::read_backend_features,   &frontend::on_backend_features},  // publish now (covers a coalesced InitWait)
    {duty::connect_transport,       &frontend::ignore},               // a backend duty
    {duty::read_backend_properties, &frontend::ignore},               // attach_rings reads them on our way to Connected
    {duty::stop_io,                 &frontend::on_stop_io},
    {duty::release_transport,       &frontend::ignore},               // done on our way to Closed
    {duty::reset_for_new_peer,      &frontend::on_reset},             // the backend restarted
    {duty::reconfigure,             &frontend::on_reconfigure},       // walk Reconfiguring once for this cycle
    {duty::forget_device,           &frontend::ignore},               // read_peer reports the vanished peer
  }};
  // clang-format on

  // What this end does before it writes Closing on its own (close(), a fatal error).
  static constexpr detail::prep (frontend::*close_action)() = &frontend::stop_io;

  core_type core_;  // first: built before the members below, destroyed after them (it releases the queues)
  G* grants_;
  frontend_options opts_;
  domid_t backend_domid_ = 0;
  transport published_{};
  bool attached_ = false;
  bool resetting_ = false;
  bool reconfigure_owed_ = false;  // the backend entered Reconfiguring/Reconfigured since we last did
};

XENBUS_END_NAMESPACE
