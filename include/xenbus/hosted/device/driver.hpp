// [hosted] What frontend<> and backend<> share: paths, watches, the state machine loop, fatal errors.
#pragma once

#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// A device type as a driver author declares it: the device type name in xenstore paths,
/// the transport limits, and either the request/response types of a shared ring
///   struct blk { using request = blkif_request; using response = blkif_response;
///                static constexpr std::string_view type = "vbd", abi = "x86_64-abi";
///                static constexpr unsigned max_ring_page_order = 4, max_queues = 4; };
/// or a ring of its own (a byte ring, say): `front_ring_type`/`back_ring_type` with
/// `make_front(span<byte>)`/`make_back(span<byte>)` returning result<ring, ring_error>.
/// Optional: `event_channel_key` (default "event-channel"; the console uses "port").
template <class P>
concept device_protocol = requires {
  { P::type } -> std::convertible_to<std::string_view>;
  { P::abi } -> std::convertible_to<std::string_view>;
  { P::max_ring_page_order } -> std::convertible_to<unsigned>;
  { P::max_queues } -> std::convertible_to<unsigned>;
}
&&((ring_message<typename P::request> && ring_message<typename P::response>) || requires(std::span<std::byte> page) {
  { P::make_front(page) } -> std::same_as<result<typename P::front_ring_type, ring_error>>;
  { P::make_back(page) } -> std::same_as<result<typename P::back_ring_type, ring_error>>;
});

namespace detail {
/// The rings a protocol's queues use: its own, or front_ring/back_ring of its messages.
template <class P>
struct protocol_rings {
  using front = front_ring<typename P::request, typename P::response>;
  using back = back_ring<typename P::request, typename P::response>;
  static result<front, ring_error> make_front(std::span<std::byte> page) noexcept { return front::init(page); }
  static result<back, ring_error> make_back(std::span<std::byte> page) noexcept { return back::attach(page); }
};
template <class P>
requires requires { typename P::front_ring_type; }
struct protocol_rings<P> {
  using front = typename P::front_ring_type;
  using back = typename P::back_ring_type;
  static auto make_front(std::span<std::byte> page) { return P::make_front(page); }
  static auto make_back(std::span<std::byte> page) { return P::make_back(page); }
};
/// The key that carries a queue's event channel.
template <class P>
constexpr std::string_view event_channel_key() noexcept {
  if constexpr (requires { P::event_channel_key; })
    return P::event_channel_key;
  else
    return "event-channel";
}
}  // namespace detail

/// The xenstore directories of one device (PROTOCOL.md, "Device layout").
struct device_address {
  domid_t frontend_domid = 0;
  domid_t backend_domid = 0;
  std::string type;
  unsigned devid = 0;

  std::string frontend_dir() const {
    return "/local/domain/" + to_decimal(frontend_domid) + "/device/" + type + "/" + to_decimal(devid);
  }
  std::string backend_dir() const {
    return "/local/domain/" + to_decimal(backend_domid) + "/backend/" + type + "/" + to_decimal(frontend_domid) + "/" +
           to_decimal(devid);
  }
};

/// Why a driver closed or stopped acting. Reported with a sentence by reason_text().
enum class close_reason : std::uint8_t {
  none,                ///< still running
  local_request,       ///< close() was called on this end
  peer_closed,         ///< the other end closed
  toolstack_unplug,    ///< the toolstack wrote online = 0 and backend Closing
  peer_vanished,       ///< the other end's directory or state node was removed
  peer_garbage,        ///< the other end's state node holds text that is not a state
  peer_illegal,        ///< the other end made a change no row of the table explains
  negotiation_failed,  ///< the other end's transport keys were refused
  resource_failed,     ///< granting, mapping or binding failed
  store_failed,        ///< xenstore refused a write this end needed
  ring_broken,         ///< the peer corrupted a shared ring (indices out of range)
  handed_over,         ///< a new instance of this end took the device over (kexec)
  own_node_garbage,    ///< someone wrote text that is not a state into this end's node
  device_removed,      ///< the toolstack removed this end's directory
  peer_domain_gone,    ///< the other end's domain was destroyed (its /local/domain/<id> is gone)
};

constexpr std::string_view to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::none:
      return "running";
    case close_reason::local_request:
      return "closed on request";
    case close_reason::peer_closed:
      return "the peer closed";
    case close_reason::toolstack_unplug:
      return "the toolstack unplugged the device";
    case close_reason::peer_vanished:
      return "the peer's node vanished";
    case close_reason::peer_garbage:
      return "the peer's state node holds garbage";
    case close_reason::peer_illegal:
      return "the peer made a change the table does not allow";
    case close_reason::negotiation_failed:
      return "the peer's transport keys were refused";
    case close_reason::resource_failed:
      return "granting, mapping or binding failed";
    case close_reason::store_failed:
      return "a xenstore write failed";
    case close_reason::ring_broken:
      return "the peer corrupted the shared ring";
    case close_reason::handed_over:
      return "handed over to a new instance";
    case close_reason::own_node_garbage:
      return "our state node was overwritten with garbage";
    case close_reason::device_removed:
      return "the device was removed";
    case close_reason::peer_domain_gone:
      return "the peer's domain is gone";
  }
  return "(invalid)";
}

/// A line for the caller's log: a state change this end made, or one it saw.
using device_logger = std::function<void(std::string_view)>;

/// Delivers the watch events waiting on `store` (waiting up to `timeout_ms` for the first;
/// 0 polls) to every driver in `drivers`; each takes only its own. Returns how many came.
template <device_store S, class... Drivers>
unsigned deliver_watch_events(S& store, int timeout_ms, Drivers&... drivers) {
  unsigned n = 0;
  for (; n < 1024; ++n) {  // bounded: a flood of events cannot pin the caller here
    auto ev = store.next_watch_event(n == 0 ? timeout_ms : 0);
    if (!ev) break;
    (drivers.handle(*ev), ...);
  }
  return n;
}

namespace detail {

/// What preparing a move found: go ahead, not yet (wait for more events), or fatal.
enum class prep : std::uint8_t { ready, not_yet, failed };

/// One reaction of a driver, read like a row of the table: when its own node is `own`, the
/// peer's is in `peer` and guard `guard` holds, it does `action` (the work state `to`
/// promises the peer) and then moves to `to`. Each row is checked against the table.
template <class End, class Guard>
struct reaction {
  state own;
  state_set peer;
  state to;
  Guard guard;
  prep (End::*action)();
};

/// What a driver does for one duty its peer's moves left it (see `duty`), named by the duty.
template <class End>
struct duty_row {
  duty owed;
  void (End::*action)();
};

/// Every reaction is a move the table lets `by` make for every peer state it accepts.
template <class Table, class End, class Guard, std::size_t N>
constexpr bool reactions_follow_table(driver by, const std::array<reaction<End, Guard>, N>& rows) noexcept {
  for (const auto& r : rows)
    for (state p : all_states)
      if (r.peer.contains(p) && !Table::allows(by, r.own, r.to, p)) return false;
  return true;
}

/// The order a driver discharges duties in: forget and reset before new work.
inline constexpr std::array<duty, duty_count> duty_order{duty::forget_device,
                                                         duty::reset_for_new_peer,
                                                         duty::stop_io,
                                                         duty::release_transport,
                                                         duty::read_backend_features,
                                                         duty::connect_transport,
                                                         duty::read_backend_properties,
                                                         duty::reconfigure};

/// Every duty has exactly one row, and no row names anything else.
template <class End, std::size_t N>
constexpr bool names_each_duty_once(const std::array<duty_row<End>, N>& rows) noexcept {
  for (duty d : duty_order) {
    std::size_t n = 0;
    for (const auto& r : rows) n += r.owed == d ? 1u : 0u;
    if (n != 1) return false;
  }
  return N == duty_order.size();
}

/// Every row names an action (a row written without one would call through a null pointer).
template <class Row, std::size_t N>
constexpr bool every_row_has_an_action(const std::array<Row, N>& rows) noexcept {
  for (const Row& r : rows)
    if (r.action == nullptr) return false;
  return true;
}

/// A number no other driver instance in this process was given: it makes each instance's
/// watch token its own (frontends and backends of every type share the one counter).
/// Drivers may be created on several threads at once, so the counter is atomic.
inline std::uint64_t next_instance() noexcept {
  // Relaxed: fetch_add alone makes each number distinct (one modification order); nothing
  // is published through the counter, so it pairs with no other access.
  static std::atomic<std::uint64_t> n{0};
  return n.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// One queue of a connected device: the ring pages (granted or mapped), the event channel,
/// and this end's ring cursor over the pages.
template <class Pages, class Ring>
struct device_queue {
  std::optional<Pages> pages;
  evtchn_port port = 0;
  std::optional<Ring> ring;
};

/// What frontend<> and backend<> share, owned by each as a member: the paths and watches,
/// the state machine, the queues (`Queue`, a device_queue) and the event channel `E` they
/// are bound through, and the loop both ends run: read both state nodes, classify changes
/// through the machine, discharge duties, then make every move a reaction row asks for.
///
/// The loop takes the end it runs for (`End`, which befriends this class) and reads from it:
/// `End::reactions` (reaction rows, first match wins), `End::duties` (one duty_row per duty),
/// `End::close_action` (the work before Closing on its own initiative: close(), a fatal
/// error), `end.holds(guard)` and `end.own_node_changed(now)`.
template <role Role, device_store S, event_channel E, class Queue>
class device_core {
 public:
  using machine_type = state_machine<standard_table, Role>;
  using queue = Queue;
  /// The driver this end moves its node as.
  static constexpr driver self = machine_type::self;

  device_core(S& store, E& evtchn, std::string own_dir, domid_t self_domid, std::string token)
      : store_{&store}, evtchn_{&evtchn}, own_dir_{std::move(own_dir)}, token_{std::move(token)} {
    const std::string prefix = "/local/domain/" + to_decimal(self_domid) + "/";
    const std::string rel = own_dir_.starts_with(prefix) ? own_dir_.substr(prefix.size()) : own_dir_.substr(1);
    error_path_ = prefix + "error/" + rel + "/error";
  }

  ~device_core() {
    // Teardown ignores every failure, ENOENT included: a watch the store no longer holds
    // (a reconnection, a store that dropped it) leaves nothing to undo.
    (void)store_->unwatch(own_dir_ + "/state", token_);
    if (!peer_dir_.empty()) (void)store_->unwatch(peer_dir_ + "/state", token_);
    release_queues();
  }

  device_core(const device_core&) = delete;
  device_core& operator=(const device_core&) = delete;

  S& store() noexcept { return *store_; }
  E& evtchn() noexcept { return *evtchn_; }
  /// The queues of the current connection (empty while not connected).
  std::vector<queue>& queues() noexcept { return queues_; }
  queue& queue_at(unsigned q) noexcept { return queues_[q]; }

  /// Raises queue q's event channel (after moving bytes through a byte ring, say).
  result<void, evtchn_error> notify(unsigned q) { return evtchn_->notify(queues_[q].port); }

  /// Publishes queue q's produced messages and notifies the peer if it asked to be. A ring
  /// the peer corrupted is reported (error node, Closing) and stays broken.
  template <class End>
  result<bool, ring_error> push(End& end, unsigned q) {
    queue& qu = queues_[q];
    auto n = qu.ring->push_and_check_notify();
    if (n && *n) (void)evtchn_->notify(qu.port);
    if (!n) fatal(end, close_reason::ring_broken, to_string(n.error()));
    return n;
  }

  state own() const noexcept { return m_.own(); }
  state peer() const noexcept { return m_.peer(); }
  close_reason reason() const noexcept { return reason_; }
  const std::string& reason_text() const noexcept { return reason_text_; }
  bool active() const noexcept { return !stopped_; }
  const machine_type& machine() const noexcept { return m_; }
  machine_type& machine() noexcept { return m_; }
  std::uint64_t state_writes() const noexcept { return writes_; }
  const std::string& dir() const noexcept { return own_dir_; }
  const std::string& peer_dir() const noexcept { return peer_dir_; }
  const std::string& token() const noexcept { return token_; }
  const std::string& error_path() const noexcept { return error_path_; }
  void set_logger(device_logger log) { log_ = std::move(log); }
  /// This end started closing on its own (close(), a fatal error, an unplug): no reconnect.
  bool local_close() const noexcept { return local_close_; }
  void set_local_close() noexcept { local_close_ = true; }
  /// A peer-node event arrived since our last move.
  bool peer_events() const noexcept { return peer_events_; }

  /// Feeds a watch event; returns false (and does nothing) if it was not for this driver.
  template <class End>
  bool handle(End& end, const watch_event& ev) {
    if (ev.token != token_) return false;
    if (ev.path.starts_with(peer_dir_)) peer_events_ = true;
    process(end);
    return true;
  }

  /// Re-reads both nodes and acts; safe to call at any time (spurious calls do nothing).
  template <class End>
  void process(End& end) {
    // Fix: a reaction row must be a move the standard table lets this end make for every
    // peer state the row lists; correct the row or split its peer set.
    static_assert(reactions_follow_table<standard_table>(self, End::reactions),
                  "xenbus device driver: a reaction row asks for a move the standard table does not allow");
    // Fix: give every duty exactly one row in End::duties, naming an action that does nothing
    // where this end owes nothing; rows are found by the duty they name, never by position.
    static_assert(names_each_duty_once(End::duties),
                  "xenbus device driver: a duty has no row, or more than one, in the end's duty rows");
    // Fix: end each reaction and duty row with the member function it runs; where a row needs
    // no work, name one that does nothing (and says so in its name).
    static_assert(every_row_has_an_action(End::reactions) && every_row_has_an_action(End::duties),
                  "xenbus device driver: a reaction or duty row has no action");
    if (stopped_) return;
    for (int round = 0; round < 4 && !stopped_; ++round) {
      const state before_own = m_.own(), before_peer = m_.peer();
      read_own(end);
      if (stopped_) return;
      read_peer(end);
      settle(end);
      if (m_.own() == before_own && m_.peer() == before_peer) break;
    }
  }

  /// Starts closing this end (Closing, then Closed once the peer follows).
  template <class End>
  void close(End& end) {
    if (stopped_) return;
    local_close_ = true;
    if (reason_ == close_reason::none) set_reason(close_reason::local_request, "");
    move(end, state::closing, End::close_action);
    process(end);
  }

  /// Reports a fatal error the way Linux's xenbus_dev_fatal does: writes the error node,
  /// then closes this end.
  template <class End>
  void fatal(End& end, close_reason why, std::string_view detail) {
    set_reason(why, detail);
    (void)store_->write(no_tx, error_path_, std::string(to_string(why)) + ": " + std::string(detail));
    log("fatal: " + reason_text_);
    local_close_ = true;
    if (m_.own() != state::closing && m_.own() != state::closed) move(end, state::closing, End::close_action);
  }

  /// Unbinds every queue's event channel and drops the rings and pages (ending the grants
  /// or unmapping them).
  void release_queues() {
    for (queue& q : queues_)
      if (q.port) (void)evtchn_->unbind(q.port);
    queues_.clear();
  }

  /// Reads the peer's directory from `key` in our own directory and starts watching.
  result<void, store_error> attach(std::string_view peer_key) {
    auto p = store_->read(no_tx, own_dir_ + "/" + std::string(peer_key));
    if (!p) return unexpected{p.error()};
    peer_dir_ = std::move(*p);
    if (peer_dir_.empty() || peer_dir_[0] != '/') return unexpected{store_error{store_errc::einval}};
    auto own_text = store_->read(no_tx, own_dir_ + "/state");
    if (!own_text) return unexpected{own_text.error()};
    auto peer_text = store_->read(no_tx, peer_dir_ + "/state");
    const auto own_now = parse_state(*own_text);
    const auto peer_now = peer_text ? parse_state(*peer_text) : result<state, state_parse_error>{state::unknown};
    if (!own_now) return unexpected{store_error{store_errc::einval}};
    m_ = machine_type{*own_now, peer_now ? *peer_now : state::unknown};
    if (auto w = store_->watch(own_dir_ + "/state", token_); !w) return w;
    if (auto w = store_->watch(peer_dir_ + "/state", token_); !w) return w;
    return {};
  }

  void log(std::string_view line) const {
    if (log_) log_(line);
  }
  void set_reason(close_reason why, std::string_view detail) {
    if (reason_ != close_reason::none && reason_ != close_reason::local_request) return;  // keep the first cause
    reason_ = why;
    reason_text_ = std::string(to_string(why));
    if (!detail.empty()) reason_text_ += ": " + std::string(detail);
  }
  void stop(close_reason why, std::string_view detail) {
    set_reason(why, detail);
    stopped_ = true;
    log(std::string("stops: ") + reason_text_);
  }

  /// Moves this end to `to` if its machine allows it now: does `action` (the work the new
  /// state promises), asks the machine, then writes the node. False if it did not move.
  template <class End>
  bool move(End& end, state to, prep (End::*action)()) {
    if (stopped_ || !m_.may(to)) return false;
    // A failed preparation has already reported itself through fatal().
    if ((end.*action)() != prep::ready) return false;
    auto t = m_.request(to);
    if (!t) return false;
    if (auto w = write_state(to); !w) {
      if (w.error().code == store_errc::enoent) {
        removed();  // the toolstack removed our directory: nothing left to tell
        return false;
      }
      // The machine moved but the node did not: a later process() sees the mismatch as a
      // change by someone else. Report it; a store that refuses our own node is fatal.
      set_reason(close_reason::store_failed, to_string(w.error().code));
      stopped_ = true;
      return false;
    }
    ++writes_;
    log(describe(*t).view());
    peer_events_ = false;
    return true;
  }

  /// Inside transaction `tx`: fails with ENOENT once this end's state node is gone. A
  /// xenstore write creates missing parents, so every transaction that writes into our
  /// directory starts with this check; otherwise a write that comes after the toolstack
  /// removed the device would bring the directory back as an orphan.
  result<void, store_error> own_node_exists(store_tx tx) {
    auto cur = store_->read(tx, own_dir_ + "/state");
    if (!cur) return unexpected{cur.error()};
    return {};
  }

  /// Our state node was found gone while writing: the device was removed; stop acting.
  void removed() { stop(close_reason::device_removed, own_dir_); }

 private:
  /// Writes `to` into our state node as Linux's xenbus_switch_state does: in a transaction
  /// that first reads the node and leaves it alone (ENOENT) when it is gone; retried on
  /// EAGAIN up to in_transaction's bound (Linux retries without one).
  result<void, store_error> write_state(state to) {
    return in_transaction(*store_, [&](store_tx tx) -> result<void, store_error> {
      if (auto e = own_node_exists(tx); !e) return e;
      return store_->write(tx, own_dir_ + "/state", to_node_text(to));
    });
  }

  template <class End>
  void read_own(End& end) {
    auto text = store_->read(no_tx, own_dir_ + "/state");
    if (!text) {
      if (text.error().code == store_errc::enoent) stop(close_reason::device_removed, own_dir_);
      return;
    }
    const auto now = parse_state(*text);
    if (!now) {
      // Nobody that follows the protocol writes this: stop acting rather than guess.
      stop(close_reason::own_node_garbage, to_string(now.error()));
      return;
    }
    if (*now != m_.own()) {
      end.own_node_changed(*now);
      return;
    }
    // The node reads what we wrote, but a newer instance may have moved it away and back
    // between two reads (a handover that reached Connected before our watch fired): an end
    // that published keys of its own checks they are still the ones it wrote.
    if constexpr (requires { end.own_keys_replaced(); })
      if (end.own_keys_replaced()) end.own_node_changed(*now);
  }

  template <class End>
  void read_peer(End& end) {
    auto text = store_->read(no_tx, peer_dir_ + "/state");
    observation o;
    if (!text) {
      if (text.error().code != store_errc::enoent) return;  // transient; the next event retries
      // The node is gone: the peer's state is unknown. Report why before the table
      // classifies the jump to Unknown (which no row of a live peer explains).
      if (m_.own() != state::closed && m_.peer() != state::unknown) {
        if (auto home = peer_home(); !home.empty() && is_gone(home))
          peer_domain_gone(end, home);
        else
          fatal(end, close_reason::peer_vanished, peer_dir_ + "/state");
      }
      o = m_.observe_peer(state::unknown);
      if (o.kind != change_kind::unchanged) log(describe(o).view());
      return;
    }
    o = m_.observe_peer(std::string_view(*text));
    if (o.kind != change_kind::unchanged && o.kind != change_kind::ignored) log(describe(o).view());
    if (o.kind == change_kind::garbage) {
      // The node says nothing any more: the peer's state is unknown (XenbusStateUnknown,
      // which every close row accepts), so this end can still reach Closed.
      fatal(end, close_reason::peer_garbage, to_string(o.parse_error));
      (void)m_.observe_peer(state::unknown);
      return;
    }
    if (o.kind == change_kind::illegal) {
      fatal(end, close_reason::peer_illegal, describe(o).view());
      return;
    }
    for (duty d : duty_order)
      if (o.owed.contains(d))
        for (const auto& r : End::duties)
          if (r.owed == d) (end.*r.action)();
  }

  /// The peer's domain home, "/local/domain/<id>", from its directory (empty if the
  /// directory lies elsewhere).
  std::string peer_home() const {
    constexpr std::string_view prefix = "/local/domain/";
    if (!peer_dir_.starts_with(prefix)) return {};
    const auto slash = peer_dir_.find('/', prefix.size());
    return slash == std::string::npos ? std::string{} : peer_dir_.substr(0, slash);
  }
  /// Only ENOENT says gone: a home we may not read (EACCES) or a failed read proves nothing.
  bool is_gone(const std::string& path) {
    auto r = store_->read(no_tx, path);
    return !r && r.error().code == store_errc::enoent;
  }

  /// The peer's domain was destroyed, its home with it. Nothing went wrong with the device,
  /// so no error node (Linux's backends likewise unregister a device whose peer reads
  /// Unknown); this end closes in its own directory, and the Closed row releases the
  /// transport (mappings, event channels). Nothing is written under the dead domain's home.
  template <class End>
  void peer_domain_gone(End& end, const std::string& home) {
    set_reason(close_reason::peer_domain_gone, home);
    log("the peer's domain is gone (" + home + " no longer exists)");
    local_close_ = true;
    if (m_.own() != state::closing && m_.own() != state::closed) move(end, state::closing, End::close_action);
  }

  template <class End>
  void settle(End& end) {
    for (int moves = 0; moves < 8 && !stopped_; ++moves) {
      bool moved = false;
      for (const auto& r : End::reactions) {
        if (r.own != m_.own() || !r.peer.contains(m_.peer()) || !end.holds(r.guard)) continue;
        moved = move(end, r.to, r.action);
        break;  // the first matching row decides, moved or not
      }
      if (!moved) return;
    }
  }

  machine_type m_{};
  S* store_;
  E* evtchn_;
  std::vector<queue> queues_;
  std::string own_dir_, peer_dir_, token_, error_path_;
  bool local_close_ = false;
  bool peer_events_ = false;  // a peer-node event arrived since our last move
  device_logger log_;
  close_reason reason_ = close_reason::none;
  std::string reason_text_;
  bool stopped_ = false;
  std::uint64_t writes_ = 0;
};

}  // namespace detail
XENBUS_END_NAMESPACE
