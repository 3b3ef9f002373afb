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
template <device_protocol P, device_store S, event_channel E, grant_sharer G>
class frontend : public detail::device_end<frontend<P, S, E, G>, role::frontend, S, E, detail::frontend_queue<P, G>> {
  using base = detail::device_end<frontend<P, S, E, G>, role::frontend, S, E, detail::frontend_queue<P, G>>;
  friend base;

 public:
  using ring_type = typename detail::protocol_rings<P>::front;

  using typename base::queue;

  /// The frontend of device `devid` of type P::type in domain `self`.
  frontend(S& store, E& evtchn, G& grants, domid_t self, unsigned devid, frontend_options opts = {})
      : base(store, evtchn, device_address{self, 0, std::string(P::type), devid}.frontend_dir(), self,
             "xenbus-fe-" + to_decimal(self) + "-" + to_decimal(devid) + "-" + to_decimal(detail::next_instance())),
        grants_{&grants},
        opts_{opts} {}


  /// Finds the backend (`backend`, `backend-id`), watches both state nodes and begins.
  result<void, store_error> start() {
    auto id = this->store_->read(no_tx, this->own_dir_ + "/" + std::string(keys::backend_id));
    if (!id) return unexpected{id.error()};
    auto parsed = parse_uint(*id, 0xffff);
    if (!parsed) return unexpected{store_error{store_errc::einval}};
    backend_domid_ = static_cast<domid_t>(*parsed);
    if (auto a = this->attach(keys::backend); !a) return a;
    if (opts_.start == frontend_start::handover) {
      this->move(state::initialising);  // row "frontend-hands-over"
    } else if (opts_.start == frontend_start::linux_reset && this->own() != state::initialising) {
      resetting_ = true;
      this->move(state::closing);  // xenbus_reset_frontend step 1
    }
    this->process();
    return {};
  }

  /// True once both ends are Connected and the rings are attached.
  bool connected() const noexcept { return this->own() == state::connected && attached_; }
  /// The negotiated transport (valid once published).
  unsigned ring_page_order() const noexcept { return published_.ring_page_order; }
  unsigned queue_count() const noexcept { return published_.queues; }
  domid_t backend_domid() const noexcept { return backend_domid_; }

  /// Copies the next response of queue q out of the ring, once; a ring the peer corrupted is
  /// reported (error node, Closing) and stays broken.
  auto take_response(unsigned q) {
    auto r = this->queues_[q].ring->take_response();
    if (!r) this->fatal(close_reason::ring_broken, to_string(r.error()));
    return r;
  }

 private:
  enum class when : std::uint8_t { always, skip_init_wait, reconnect, reconfigure_owed };
  using row = detail::reaction<when>;
  using st = state;

  // clang-format off
  static constexpr std::array<row, 13> reactions{{
    // own              peer                                                                              to                 guard
    {st::initialising,  state_set{st::init_wait},                                                         st::initialised,   when::always},            // frontend-publishes-transport
    {st::initialising,  state_set{st::initialised},                                                       st::initialised,   when::always},            // frontend-skips-init-wait: the backend skipped it, nothing to wait for
    {st::initialising,  state_set{st::initialising},                                                      st::initialised,   when::skip_init_wait},    // frontend-skips-init-wait
    {st::initialised,   state_set{st::connected},                                                         st::connected,     when::always},            // frontend-connects
    {st::initialising,  state_set{st::closing},                                                           st::closing,       when::always},            // frontend-closes
    {st::initialised,   state_set{st::closing, st::closed, st::unknown},                                  st::closing,       when::always},            // frontend-closes
    {st::connected,     state_set{st::closing, st::closed, st::unknown, st::initialising, st::init_wait}, st::closing,       when::always},            // frontend-closes: backend went away or restarted
    {st::connected,     state_set{st::reconfiguring, st::reconfigured},                                   st::reconfiguring, when::reconfigure_owed},  // frontend-reconfigures, once per backend cycle
    {st::reconfiguring, state_set{st::reconfigured, st::connected},                                       st::connected,     when::always},            // frontend-reconfigured
    {st::reconfiguring, state_set{st::closing, st::closed, st::unknown},                                  st::closing,       when::always},            // frontend-closes
    {st::closing,       state_set{st::closing, st::closed, st::unknown},                                  st::closed,        when::always},            // frontend-closed
    {st::closed,        state_set{st::closed},                                                            st::initialising,  when::reconnect},         // frontend-resets
    {st::initialising,  state_set{st::unknown},                                                           st::closing,       when::always},            // frontend-closes: backend vanished
  }};
  // clang-format on
  // Fix: a reaction row must be a move the standard table lets the frontend make for
  // every backend state the row lists; correct the row or split its peer set.
  static_assert(detail::reactions_follow_table<standard_table>(by::frontend, reactions),
                "frontend reactions: a row asks for a move the standard table does not allow");

  bool holds(when g) {
    if (g == when::skip_init_wait) return opts_.skip_init_wait;
    if (g == when::reconfigure_owed) return reconfigure_owed_;
    if (g == when::reconnect) {
      if (resetting_) return true;
      if (!opts_.reconnect || this->local_close_) return false;
      auto online = this->store_->read(no_tx, this->peer_dir_ + "/" + std::string(keys::online));
      return online && *online == "1";
    }
    return true;
  }

  // What each state promises the backend, done before the node says so (indexed by state).
  using prepare_fn = detail::prep (frontend::*)();
  static constexpr std::array<prepare_fn, state_count> prepare_for{
      &frontend::nothing,       // unknown
      &frontend::start_over,    // initialising: a reset or handover drops the old transport
      &frontend::nothing,       // init_wait (never ours)
      &frontend::publish,       // initialised: transport keys are in the store
      &frontend::attach_rings,  // connected
      &frontend::stop_io,       // closing
      &frontend::release,       // closed
      &frontend::reconfigure,   // reconfiguring
      &frontend::nothing,       // reconfigured (never ours)
  };
  using duty_fn = void (frontend::*)();
  static constexpr std::array<duty_fn, duty_count> discharge_for{
      &frontend::on_backend_features,  // read_backend_features: publish now (covers a coalesced InitWait)
      &frontend::ignore,               // connect_transport (backend duty)
      &frontend::ignore,               // read_backend_properties: attach_rings reads them
      &frontend::on_stop_io,           // stop_io
      &frontend::ignore,               // release_transport: done on our way to Closed
      &frontend::on_reset,             // reset_for_new_peer: the backend restarted
      &frontend::on_reconfigure,       // reconfigure: walk Reconfiguring once for this cycle
      &frontend::ignore,               // forget_device: read_peer reports the vanished peer
  };

  void own_node_changed(state now) {
    // Only this instance writes our node, except a newer instance that took the device
    // over (the seed's handover, or a Linux reset): from now on it owns the device.
    (void)this->m_.hand_over();
    this->stop(close_reason::handed_over, std::string("own node set to ") + std::string(to_string(now)));
  }

  detail::prep nothing() { return detail::prep::ready; }
  void ignore() {}
  void on_stop_io() { attached_ = false; }
  void on_reset() { drop_transport(); }
  void on_backend_features() {
    if (this->own() == state::initialising) (void)publish();
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
    for (const queue& q : this->queues_)
      if (!q.ring) return detail::prep::not_yet;
    attached_ = !this->queues_.empty();
    return attached_ ? detail::prep::ready : detail::prep::not_yet;
  }

  void drop_transport() {
    this->release_queues();
    attached_ = false;
    published_ = transport{};
  }

  /// Reads the backend's limits, grants the ring pages, binds the event channels and
  /// writes every key in one transaction. Idempotent while the transport stands.
  detail::prep publish() {
    if (!this->queues_.empty()) return detail::prep::ready;
    auto limit = [&](std::string_view key, unsigned fallback, unsigned cap) -> unsigned {
      auto v = this->store_->read(no_tx, this->peer_dir_ + "/" + std::string(key));
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
    this->queues_.resize(t.queues);
    for (unsigned q = 0; q < t.queues; ++q) {
      queue& qu = this->queues_[q];
      auto pages = grants_->share(backend_domid_, std::span<grant_ref>(t.queue[q].refs.data(), t.pages()), true);
      if (!pages) return fail_resource("grant: " + std::string(to_string(pages.error().code)));
      qu.pages.emplace(std::move(*pages));
      auto ring = detail::protocol_rings<P>::make_front(
          std::span<std::byte>(static_cast<std::byte*>(qu.pages->data()), qu.pages->size()));
      if (!ring) return fail_resource("ring: " + std::string(to_string(ring.error())));
      qu.ring.emplace(std::move(*ring));
      auto port = this->evtchn_->bind_unbound(backend_domid_);
      if (!port) return fail_resource("event channel: " + std::string(to_string(port.error().code)));
      qu.port = t.queue[q].port = *port;
    }
    auto w = in_transaction(*this->store_, [&](store_tx tx) -> result<void, store_error> {
      if (auto e = this->own_node_exists(tx); !e) return e;  // never re-create a removed device
      // Keys a previous instance published would mislead the backend: clear them first.
      auto names = this->store_->directory(tx, this->own_dir_);
      if (!names) return unexpected{names.error()};
      for (const std::string& n : *names)
        if (n.starts_with(keys::ring_ref) || n == keys::ring_page_order || n == detail::event_channel_key<P>() ||
            n == keys::num_queues || n == keys::protocol || n.starts_with("queue-"))
          if (auto r = this->store_->remove(tx, this->own_dir_ + "/" + n); !r) return r;
      return publish_transport(*this->store_, tx, this->own_dir_, t, detail::event_channel_key<P>());
    });
    if (!w && w.error().code == store_errc::enoent) {
      drop_transport();
      this->removed();
      return detail::prep::failed;
    }
    if (!w) {
      this->fatal(close_reason::store_failed, "publishing the transport: " + std::string(to_string(w.error().code)));
      return detail::prep::failed;
    }
    published_ = std::move(t);
    this->log("published transport: ring-page-order " + to_decimal(published_.ring_page_order) + ", " +
              to_decimal(published_.queues) + " queue(s), event-channel " + to_decimal(this->queues_[0].port));
    return detail::prep::ready;
  }
  detail::prep fail_resource(const std::string& what) {
    drop_transport();
    this->fatal(close_reason::resource_failed, what);
    return detail::prep::failed;
  }

  G* grants_;
  frontend_options opts_;
  domid_t backend_domid_ = 0;
  transport published_{};
  bool attached_ = false;
  bool resetting_ = false;
  bool reconfigure_owed_ = false;  // the backend entered Reconfiguring/Reconfigured since we last did
};

XENBUS_END_NAMESPACE
