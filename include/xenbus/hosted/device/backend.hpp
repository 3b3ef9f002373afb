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
template <device_protocol P, device_store S, event_channel E, grant_mapper G>
class backend : public detail::device_end<backend<P, S, E, G>, role::backend, S, E, detail::backend_queue<P, G>> {
  using base = detail::device_end<backend<P, S, E, G>, role::backend, S, E, detail::backend_queue<P, G>>;
  friend base;

 public:
  using ring_type = typename detail::protocol_rings<P>::back;

  using typename base::queue;

  /// The backend in domain `self` of device `devid` of domain `frontend_domid`.
  backend(S& store, E& evtchn, G& grants, domid_t self, domid_t frontend_domid, unsigned devid,
          backend_options opts = {})
      : base(store, evtchn, device_address{frontend_domid, self, std::string(P::type), devid}.backend_dir(), self,
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
    if (auto a = this->attach(keys::frontend); !a) return a;
    const state own = this->own();
    if (own != state::initialising && own != state::closed && own != state::closing) {
      this->log("found our node " + std::string(to_string(own)) + " from a previous instance: closing it");
      this->move(state::closing);  // row "backend-closes"
    }
    this->process();
    return {};
  }

  bool connected() const noexcept { return this->own() == state::connected && connected_; }
  /// The transport the frontend published, as accepted.
  const transport& negotiated() const noexcept { return accepted_; }

  /// Copies the next request of queue q out of the ring, once; a ring the peer corrupted is
  /// reported (error node, Closing) and stays broken.
  auto take_request(unsigned q) {
    auto r = this->queues_[q].ring->take_request();
    if (!r) this->fatal(close_reason::ring_broken, to_string(r.error()));
    return r;
  }

 private:
  enum class when : std::uint8_t { always, init_wait, skip_init_wait, reset_at_once, close_first, reconnect, peer_moved };
  using row = detail::reaction<when>;
  using st = state;

  // clang-format off
  static constexpr std::array<row, 14> reactions{{
    // own              peer                                                       to                guard
    {st::initialising,  state_set{st::unknown, st::initialising, st::initialised}, st::init_wait,    when::init_wait},       // backend-publishes-features
    {st::initialising,  state_set{st::unknown, st::initialising, st::initialised}, st::initialised,  when::skip_init_wait},  // backend-skips-init-wait
    {st::init_wait,     state_set{st::initialised, st::connected},                 st::connected,    when::always},          // backend-connects
    {st::initialised,   state_set{st::initialised, st::connected},                 st::connected,    when::always},          // backend-connects-after-skip
    {st::connected,     state_set{st::initialising},                               st::init_wait,    when::reset_at_once},   // backend-resets-at-once (seed)
    {st::connected,     state_set{st::initialising},                               st::closing,      when::close_first},     // backend-closes (QEMU, FreeBSD)
    {st::init_wait,     state_set{st::closing, st::closed},                        st::closing,      when::always},          // backend-closes
    {st::initialised,   state_set{st::closing, st::closed},                        st::closing,      when::always},          // backend-closes
    {st::connected,     state_set{st::closing, st::closed, st::unknown},           st::closing,      when::always},          // backend-closes
    {st::reconfiguring, state_set{st::connected, st::reconfiguring},               st::reconfigured, when::always},          // backend-reconfigured
    {st::reconfigured,  state_set{st::connected},                                  st::connected,    when::peer_moved},      // backend-reconnects
    {st::reconfigured,  state_set{st::closing, st::closed},                        st::closing,      when::always},          // backend-closes
    {st::closing,       state_set{st::closed, st::unknown},                        st::closed,       when::always},          // backend-closed
    {st::closed,        state_set{st::initialising},                               st::init_wait,    when::reconnect},       // backend-prepares-for-reconnect
  }};
  // clang-format on
  // Fix: a reaction row must be a move the standard table lets the backend make for every
  // frontend state the row lists; correct the row or split its peer set.
  static_assert(detail::reactions_follow_table<standard_table>(by::backend, reactions),
                "backend reactions: a row asks for a move the standard table does not allow");

  bool holds(when g) {
    switch (g) {  // guards are policy, not states: each reads an option or the store
      case when::always: return true;
      case when::init_wait: return !opts_.skip_init_wait;
      case when::skip_init_wait: return opts_.skip_init_wait;
      case when::reset_at_once: return opts_.reset_at_once;
      case when::close_first: return !opts_.reset_at_once;
      case when::peer_moved: return this->peer_events_;  // pciback: on the frontend's next change
      case when::reconnect: {
        if (this->local_close_) return false;
        auto online = this->store_->read(no_tx, this->own_dir_ + "/" + std::string(keys::online));
        return online && *online == "1";
      }
    }
    return false;
  }

  using prepare_fn = detail::prep (backend::*)();
  static constexpr std::array<prepare_fn, state_count> prepare_for{
      &backend::nothing,         // unknown
      &backend::nothing,         // initialising (the toolstack's)
      &backend::offer_features,  // init_wait
      &backend::offer_features,  // initialised (InitWait skipped)
      &backend::connect,         // connected
      &backend::stop_io,         // closing
      &backend::release,         // closed
      &backend::nothing,         // reconfiguring (the toolstack's)
      &backend::nothing,         // reconfigured: the hook ran when the toolstack asked
  };
  using duty_fn = void (backend::*)();
  static constexpr std::array<duty_fn, duty_count> discharge_for{
      &backend::ignore,              // read_backend_features (frontend duty)
      &backend::on_transport,        // connect_transport: the frontend published (maybe unseen)
      &backend::ignore,              // read_backend_properties (frontend duty)
      &backend::on_stop_io,          // stop_io
      &backend::on_release,          // release_transport
      &backend::on_reset,            // reset_for_new_peer: a new frontend instance
      &backend::ignore,              // reconfigure (frontend duty)
      &backend::ignore,              // forget_device: read_peer reports the vanished peer
  };

  void own_node_changed(state now) {
    observation o = this->m_.observe_toolstack(now);
    this->log(describe(o).view());
    if (!o.explained()) {
      // Not the toolstack: another backend instance writes our node. It owns the device.
      this->stop(close_reason::handed_over, describe(o).view());
      return;
    }
    (this->*on_toolstack_move[static_cast<std::size_t>(now)])();
  }

  // What a state the toolstack wrote into our node asks of us (indexed by state).
  static constexpr std::array<duty_fn, state_count> on_toolstack_move{
      &backend::ignore,              // unknown: the device is being removed
      &backend::ignore,              // initialising: the device was just created
      &backend::ignore,              // init_wait
      &backend::ignore,              // initialised
      &backend::ignore,              // connected
      &backend::toolstack_unplugs,   // closing: online = 0 (toolstack-unplugs)
      &backend::ignore,              // closed
      &backend::toolstack_reconfigures,  // reconfiguring (toolstack-reconfigures)
      &backend::ignore,              // reconfigured
  };
  void toolstack_unplugs() {
    this->set_reason(close_reason::toolstack_unplug, "online = 0");
    this->local_close_ = true;
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
    this->log("frontend restarted: old transport released");
  }
  void on_transport() {
    if (this->own() == state::init_wait || this->own() == state::initialised) (void)connect();
  }

  detail::prep offer_features() {
    const std::string d = this->own_dir_ + "/";
    auto w = in_transaction(*this->store_, [&](store_tx tx) -> result<void, store_error> {
      if (auto e = this->own_node_exists(tx); !e) return e;  // never re-create a removed device
      if (auto r = this->store_->write(tx, d + std::string(keys::max_ring_page_order), to_decimal(opts_.max_ring_page_order)); !r) return r;
      if (opts_.max_queues > 1)
        if (auto r = this->store_->write(tx, d + std::string(keys::max_queues), to_decimal(opts_.max_queues)); !r) return r;
      for (const auto& [k, v] : opts_.features)
        if (auto r = this->store_->write(tx, d + k, v); !r) return r;
      return this->store_->write(tx, d + std::string(keys::hotplug_status), "connected");
    });
    if (!w && w.error().code == store_errc::enoent) {
      this->removed();
      return detail::prep::failed;
    }
    if (!w) {
      this->fatal(close_reason::store_failed, "offering features: " + std::string(to_string(w.error().code)));
      return detail::prep::failed;
    }
    return detail::prep::ready;
  }

  /// Reads and checks the frontend's keys, maps its pages, binds its event channels.
  detail::prep connect() {
    if (connected_) return detail::prep::ready;
    auto t = read_transport(*this->store_, no_tx, this->peer_dir_, opts_.max_ring_page_order, opts_.max_queues, P::abi,
                            detail::event_channel_key<P>());
    if (!t) {
      std::string why(to_string(t.error().code));
      this->fatal(close_reason::negotiation_failed, why);
      return detail::prep::failed;
    }
    this->queues_.resize(t->queues);
    for (unsigned q = 0; q < t->queues; ++q) {
      queue& qu = this->queues_[q];
      auto pages = grants_->map(frontend_domid_, std::span<const grant_ref>(t->queue[q].refs.data(), t->pages()), true);
      if (!pages) return fail_resource("mapping ring-ref: " + std::string(to_string(pages.error().code)));
      qu.pages.emplace(std::move(*pages));
      auto ring = detail::protocol_rings<P>::make_back(
          std::span<std::byte>(static_cast<std::byte*>(qu.pages->data()), qu.pages->size()));
      if (!ring) return fail_resource("ring: " + std::string(to_string(ring.error())));
      qu.ring.emplace(std::move(*ring));
      auto port = this->evtchn_->bind_interdomain(frontend_domid_, t->queue[q].port);
      if (!port) return fail_resource("binding event-channel: " + std::string(to_string(port.error().code)));
      qu.port = *port;
    }
    connected_ = true;
    this->log("mapped transport: ring-page-order " + to_decimal(t->ring_page_order) + ", " + to_decimal(t->queues) +
              " queue(s), event-channel " + to_decimal(t->queue[0].port));
    accepted_ = std::move(*t);
    return detail::prep::ready;
  }
  detail::prep fail_resource(const std::string& what) {
    release_now();
    this->fatal(close_reason::resource_failed, what);
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
    this->release_queues();
    connected_ = false;
  }

  G* grants_;
  domid_t frontend_domid_;
  backend_options opts_;
  transport accepted_{};
  bool connected_ = false;
  std::function<void()> reconfigure_hook_;
};

XENBUS_END_NAMESPACE
