// [freestanding] Run-time state machines for one end (or the toolstack): checked requests, classified peer changes.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/transition_table.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// Work a driver owes because its peer reached a state (possibly one it never saw).
enum class duty : std::uint8_t {
  read_backend_features,    ///< frontend: backend in InitWait (or skipped it): read features, publish transport
  connect_transport,        ///< backend: frontend published its transport: map the ring, bind the event channel
  read_backend_properties,  ///< frontend: backend Connected: read device properties, finish connecting
  stop_io,                  ///< peer Closing: stop new requests, finish or fail those in flight
  release_transport,        ///< peer Closed: unmap the ring, unbind the event channel
  reset_for_new_peer,       ///< peer restarted: drop the old connection, prepare for a new one
  reconfigure,              ///< peer Reconfiguring/Reconfigured: rescan what the device exports
  forget_device,            ///< peer node removed: the toolstack tore the device down
};
inline constexpr std::size_t duty_count = 8;

constexpr std::string_view to_string(duty d) noexcept {
  switch (d) {
    case duty::read_backend_features:
      return "read backend features";
    case duty::connect_transport:
      return "connect the frontend's transport";
    case duty::read_backend_properties:
      return "read backend properties";
    case duty::stop_io:
      return "stop I/O";
    case duty::release_transport:
      return "release the transport";
    case duty::reset_for_new_peer:
      return "reset for a new peer";
    case duty::reconfigure:
      return "reconfigure";
    case duty::forget_device:
      return "forget the device";
  }
  return "(invalid)";
}

/// A set of duties (a bitmask): what the driver still owes after one observation.
class duty_set {
 public:
  constexpr bool contains(duty d) const noexcept { return (bits_ & bit(d)) != 0; }
  constexpr void insert(duty d) noexcept { bits_ = static_cast<std::uint8_t>(bits_ | bit(d)); }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  constexpr unsigned bits() const noexcept { return bits_; }
  friend constexpr bool operator==(duty_set, duty_set) noexcept = default;

 private:
  static constexpr unsigned bit(duty d) noexcept { return 1u << static_cast<unsigned>(d); }
  std::uint8_t bits_ = 0;
};

/// How a change of a watched node reads against the table.
enum class change_kind : std::uint8_t {
  unchanged,  ///< the node holds what was last seen (a repeated or spurious watch event)
  step,       ///< one row explains it
  coalesced,  ///< a path of rows explains it: watch events coalesced, states were skipped unseen
  reset,      ///< the path goes back to Initialising/InitWait: the peer restarts the connection
  illegal,    ///< no row or path of rows explains it
  garbage,    ///< the node's text is not a state (see parse_error)
  ignored,    ///< this end was handed over: it no longer reacts to the peer
};

constexpr std::string_view to_string(change_kind k) noexcept {
  switch (k) {
    case change_kind::unchanged:
      return "unchanged";
    case change_kind::step:
      return "step";
    case change_kind::coalesced:
      return "coalesced";
    case change_kind::reset:
      return "reset";
    case change_kind::illegal:
      return "illegal";
    case change_kind::garbage:
      return "garbage";
    case change_kind::ignored:
      return "ignored";
  }
  return "(invalid)";
}

/// What one watch event on a node meant: the kind, the rule that explains it, what it implies.
struct observation {
  change_kind kind = change_kind::unchanged;
  role end = role::frontend;        ///< whose node changed
  state from = state::unknown;      ///< what it held before, as last seen
  state to = state::unknown;        ///< what it holds now (== from for garbage)
  std::size_t row = no_row;         ///< the (last) row that explains the change
  std::string_view rule{};          ///< that row's name
  driver by{};                      ///< who that row says drove the change
  std::string_view alternative{};   ///< another driver's row for the same step (who drove it is ambiguous)
  driver alternative_by{};          ///< that row's driver
  state_set implied{};              ///< states the node passed through unseen
  duty_set owed{};                  ///< work the observing driver still owes (incl. implied states)
  state_parse_error parse_error{};  ///< why the text was refused (garbage only)
  /// The table explains the change (unchanged, step, coalesced or reset).
  constexpr bool explained() const noexcept {
    return kind == change_kind::unchanged || kind == change_kind::step || kind == change_kind::coalesced ||
           kind == change_kind::reset;
  }
};

/// A move the table allowed, checked against the peer state shown, and the row that allowed it.
struct transition {
  driver by;
  state from;
  state to;
  state peer;
  std::size_t row;
  std::string_view rule;
};

/// Why a request was refused.
enum class refusal_reason : std::uint8_t {
  no_row,       ///< no row lets this driver make this move with the peer in this state
  handed_over,  ///< this end was handed over to a successor and may no longer act
};

/// A refused request: who asked to move which node from where to where, seeing which peer.
struct refusal {
  driver by;
  state from;
  state to;
  state peer;
  refusal_reason why;
};

/// A sentence in a fixed buffer (no heap); longer text is cut at the capacity.
struct message {
  static constexpr std::size_t capacity = 200;
  char text[capacity]{};
  std::size_t size = 0;
  /// Appends as much of `s` as fits.
  constexpr message& operator<<(std::string_view s) noexcept {
    for (char c : s) {
      if (size == capacity) break;
      text[size++] = c;
    }
    return *this;
  }
  constexpr std::string_view view() const noexcept { return {text, size}; }
};

/// "frontend may not move Initialising -> Connected while the backend is Initialising: ..."
constexpr message describe(const refusal& r) noexcept {
  message m;
  m << to_string(r.by.who);
  if (r.by.who != r.by.end) m << " (on the " << to_string(r.by.end) << " node)";
  m << " may not move " << to_string(r.from) << " -> " << to_string(r.to) << " while the "
    << to_string(peer_of(r.by.end)) << " is " << to_string(r.peer) << ": ";
  m << (r.why == refusal_reason::handed_over ? "this end was handed over to its successor"
                                             : "no row of the table allows it");
  return m;
}

/// "backend: InitWait -> Connected while the frontend is Initialised [backend-connects]".
constexpr message describe(const transition& t) noexcept {
  message m;
  m << to_string(t.by.who);
  if (t.by.who != t.by.end) m << " (on the " << to_string(t.by.end) << " node)";
  m << ": " << to_string(t.from) << " -> " << to_string(t.to) << " while the " << to_string(peer_of(t.by.end)) << " is "
    << to_string(t.peer) << " [" << t.rule << "]";
  return m;
}

/// "saw backend Initialising -> Connected: coalesced [backend-connects], implied InitWait; owes ..."
constexpr message describe(const observation& o) noexcept {
  message m;
  m << "saw " << to_string(o.end) << " " << to_string(o.from) << " -> " << to_string(o.to) << ": " << to_string(o.kind);
  if (o.kind == change_kind::garbage) m << " (" << to_string(o.parse_error) << ")";
  if (o.row != no_row) {
    m << " [" << o.rule << " by " << to_string(o.by.who);
    if (!o.alternative.empty()) m << ", or " << o.alternative << " by " << to_string(o.alternative_by.who);
    m << "]";
  }
  if (!o.implied.empty()) {
    m << ", implied";
    for (state s : all_states)
      if (o.implied.contains(s)) m << " " << to_string(s);
  }
  if (!o.owed.empty()) {
    m << "; owes";
    const char* sep = " ";
    for (std::size_t i = 0; i < duty_count; ++i)
      if (o.owed.contains(static_cast<duty>(i))) {
        m << sep << to_string(static_cast<duty>(i));
        sep = ", ";
      }
  }
  return m;
}

namespace detail {

/// Position of a state on the way up and down a connection; side states rank with Connected.
constexpr int rank(state s) noexcept {
  switch (s) {
    case state::unknown:
      return 0;
    case state::initialising:
      return 1;
    case state::init_wait:
      return 2;
    case state::initialised:
      return 3;
    case state::connected:
    case state::reconfiguring:
    case state::reconfigured:
      return 4;
    case state::closing:
      return 5;
    case state::closed:
      return 6;
  }
  return 0;
}

/// A move back to the start of a connection (Initialising, or a backend's InitWait).
constexpr bool is_restart(state from, state to) noexcept {
  return (to == state::initialising || to == state::init_wait) && rank(to) < rank(from);
}

/// The duty of `self` once its peer's node reached `s` (`restart`: by going back).
constexpr void add_duty(duty_set& owed, role self, state s, bool restart) noexcept {
  const bool front = self == role::frontend;
  switch (s) {
    case state::unknown:
      owed.insert(duty::forget_device);
      break;
    case state::initialising:
      if (restart) owed.insert(duty::reset_for_new_peer);
      break;
    case state::init_wait:
      if (front) owed.insert(duty::read_backend_features);
      break;
    case state::initialised:
      owed.insert(front ? duty::read_backend_features : duty::connect_transport);
      break;
    case state::connected:
      owed.insert(front ? duty::read_backend_properties : duty::connect_transport);
      break;
    case state::closing:
      owed.insert(duty::stop_io);
      break;
    case state::closed:
      owed.insert(duty::release_transport);
      break;
    case state::reconfiguring:
    case state::reconfigured:
      owed.insert(duty::reconfigure);
      break;
  }
  if (restart && front && s == state::init_wait) owed.insert(duty::reset_for_new_peer);
}

/// Reads a change of `end`'s node from `last` to `now` against `Table`. A row counts if the
/// other node may have held one of `others` when the row was taken: an end passes its state
/// now and before its last move (the writer may not have seen that move yet); the toolstack,
/// whose view of both nodes lags, passes every state. `toolstack_only` keeps toolstack rows.
template <class Table>
constexpr observation classify(role end, bool toolstack_only, state last, state now, state_set others) noexcept {
  observation o;
  o.end = end;
  o.from = last;
  o.to = now;
  if (now == last) return o;  // unchanged
  const auto usable = [&](const rule& r) {
    return r.by.end == end && (!toolstack_only || r.by.who == role::toolstack) && r.peer.intersects(others);
  };
  // Shortest path of rows from `last` to `now` (breadth first over the node's nine states);
  // rows are tried in table order, so a direct row written earlier wins.
  std::array<std::size_t, state_count> via{};
  std::array<bool, state_count> seen{};
  std::array<state, state_count> queue{};
  std::size_t head = 0, tail = 0;
  seen[static_cast<std::size_t>(last)] = true;
  queue[tail++] = last;
  while (head < tail && !seen[static_cast<std::size_t>(now)]) {
    const state s = queue[head++];
    for (std::size_t i = 0; i < Table::size; ++i) {
      const rule& r = Table::rows[i];
      const auto t = static_cast<std::size_t>(r.to);
      if (r.from != s || seen[t] || !usable(r)) continue;
      seen[t] = true;
      via[t] = i;
      queue[tail++] = r.to;
    }
  }
  if (!seen[static_cast<std::size_t>(now)]) {
    o.kind = change_kind::illegal;
    return o;
  }
  // Walk back from `now`, collecting implied states and whether any row restarts.
  bool restart = false;
  std::size_t steps = 0;
  std::array<state, state_count> path{};  // path[0] == now, then earlier states
  for (state s = now; s != last;) {
    const rule& r = Table::rows[via[static_cast<std::size_t>(s)]];
    path[steps++] = s;
    restart = restart || is_restart(r.from, r.to);
    if (r.from != last) o.implied.insert(r.from);
    s = r.from;
  }
  o.row = via[static_cast<std::size_t>(now)];
  o.rule = Table::rows[o.row].name;
  o.by = Table::rows[o.row].by;
  o.kind = restart ? change_kind::reset : steps == 1 ? change_kind::step : change_kind::coalesced;
  // The node alone cannot tell who wrote it: name another driver's row for the same step.
  if (steps == 1)
    for (const rule& r : Table::rows)
      if (r.by != o.by && r.from == last && r.to == now && usable(r)) {
        o.alternative = r.name;
        o.alternative_by = r.by;
        break;
      }
  // Duties in the order the node passed through the states.
  if (!toolstack_only) {
    const role self = peer_of(end);
    for (std::size_t k = steps; k-- > 0;) {
      const state to = path[k];
      const state from = k + 1 < steps ? path[k + 1] : last;
      add_duty(o.owed, self, to, is_restart(from, to));
    }
  }
  return o;
}

/// Every state on some path of toolstack rows over `end`'s node from `from` to `to` (peer
/// conditions ignored): where a coalesced toolstack jump may have taken the node unseen.
template <class Table>
constexpr state_set toolstack_states_between(role end, state from, state to) noexcept {
  const auto closure = [&](state start, bool forward) {
    state_set reach{start};
    for (bool grew = true; grew;) {
      grew = false;
      for (const rule& r : Table::rows) {
        if (r.by.end != end || r.by.who != role::toolstack) continue;
        const state a = forward ? r.from : r.to, b = forward ? r.to : r.from;
        if (reach.contains(a) && !reach.contains(b)) {
          reach.insert(b);
          grew = true;
        }
      }
    }
    return reach;
  };
  return state_set::from_bits(closure(from, true).bits() & closure(to, false).bits());
}

constexpr observation garbage(role end, state last, state_parse_error e) noexcept {
  observation o;
  o.kind = change_kind::garbage;
  o.end = end;
  o.from = o.to = last;
  o.parse_error = e;
  return o;
}

}  // namespace detail

/// One end (frontend or backend) of a device: its own state, the last peer state it saw, and
/// the table that says which moves it may make and how to read the peer's.
template <transition_table_type Table, role Role>
class state_machine {
  static_assert(Role == role::frontend || Role == role::backend,
                "state_machine<Table, Role>: Role is frontend or backend; the toolstack has "
                "its own specialisation");

 public:
  /// The driver this end moves its node as.
  static constexpr driver self = Role == role::frontend ? by::frontend : by::backend;
  /// The role of the other end.
  static constexpr role peer_role = peer_of(Role);

  /// A device the toolstack has just created: both nodes at Initialising.
  constexpr state_machine() noexcept = default;
  /// Adopts what the nodes hold now (e.g. a kernel that finds its device already connected).
  constexpr state_machine(state own, state peer) noexcept
      : seen_since_last_{own}, seen_since_prev_{own}, own_{own}, peer_{peer} {}

  /// This end's state (what it last wrote, or what the toolstack wrote for it).
  constexpr state own() const noexcept { return own_; }
  /// The peer state this end last saw.
  constexpr state peer() const noexcept { return peer_; }
  /// This end was handed over (hand_over()) and no longer acts or reacts.
  constexpr bool handed_over() const noexcept { return handed_over_; }
  /// The peer once wrote garbage or made a change no row explains (latched).
  constexpr bool peer_misbehaved() const noexcept { return peer_misbehaved_; }

  /// May this end move its node to `to` now, given the peer state it last saw?
  constexpr bool may(state to) const noexcept { return !handed_over_ && Table::find(self, own_, to, peer_) != no_row; }

  /// Moves this end to `to` if a row allows it (the caller then writes `to` into its node).
  constexpr result<transition, refusal> request(state to) noexcept {
    if (handed_over_) return unexpected{refusal{self, own_, to, peer_, refusal_reason::handed_over}};
    const std::size_t i = Table::find(self, own_, to, peer_);
    if (i == no_row) return unexpected{refusal{self, own_, to, peer_, refusal_reason::no_row}};
    const transition t{self, own_, to, peer_, i, Table::rows[i].name};
    own_ = to;
    held(state_set{to});
    return t;
  }

  /// request(To), refused at compile time when no row ever lets this end reach To.
  template <state To>
  constexpr result<transition, refusal> request() noexcept {
    // Fix: request a state some row of the table lets this role drive its own node to, or add
    // that row to the table.
    static_assert(drivable_to<Table, self, To>,
                  "state_machine::request<To>(): no row of the table lets this role drive its "
                  "own node to that state");
    return request(To);
  }

  /// Reads a new peer state against the table and remembers it (unless handed over); an
  /// illegal change is still remembered (the node holds it) and latches peer_misbehaved().
  constexpr observation observe_peer(state now) noexcept {
    if (handed_over_) {
      observation o;
      o.kind = change_kind::ignored;
      o.end = peer_role;
      o.from = peer_;
      o.to = now;
      return o;
    }
    // The peer acted on its view of us, which may lag our latest writes. We accept a row that
    // holds for any state we held since we saw the peer's change before last: a bounded guess
    // at how far its view may lag, which the interleaving walk (tests) shows wide enough.
    observation o = detail::classify<Table>(peer_role, false, peer_, now, seen_since_prev_);
    if (o.kind == change_kind::illegal) peer_misbehaved_ = true;
    if (now != peer_) {
      seen_since_prev_ = seen_since_last_;
      seen_since_last_ = state_set{own_};
    }
    peer_ = now;
    return o;
  }

  /// Parses the peer's `state` node text and reads it; garbage leaves the peer state unchanged.
  constexpr observation observe_peer(std::string_view text) noexcept {
    const auto parsed = parse_state(text);
    if (!parsed) {
      if (handed_over_) return observe_peer(peer_);
      peer_misbehaved_ = true;
      return detail::garbage(peer_role, peer_, parsed.error());
    }
    return observe_peer(*parsed);
  }

  /// Reads a change the toolstack made to this end's own node (e.g. unplug: Closing). The
  /// toolstack acted on its own view of the peer, which may be ahead of ours, so only the
  /// from/to of its rows are checked. An illegal write leaves own() unchanged.
  constexpr observation observe_toolstack(state now) noexcept {
    if (handed_over_) {
      observation o;
      o.kind = change_kind::ignored;
      o.end = Role;
      o.from = own_;
      o.to = now;
      return o;
    }
    observation o = detail::classify<Table>(Role, true, own_, now, state_set::all());
    if (o.kind != change_kind::illegal && now != own_) {
      // The peer may have seen our node in any state the toolstack could have passed through.
      held(detail::toolstack_states_between<Table>(Role, own_, now));
      own_ = now;
    }
    return o;
  }

  /// What one watch event brought: the own node first (a toolstack write the peer may already
  /// have reacted to), then the peer's node. Read both nodes on every event and pass them here.
  struct node_observations {
    observation own;
    observation peer;
  };
  /// Reads both nodes after any watch event: own node first, then the peer's (see above).
  constexpr node_observations observe_nodes(state own_node, state peer_node) noexcept {
    node_observations r;
    if (own_node != own_ || handed_over_)
      r.own = observe_toolstack(own_node);
    else
      r.own = detail::classify<Table>(Role, true, own_, own_, state_set::all());
    r.peer = observe_peer(peer_node);
    return r;
  }

  /// Marks this end handed over (the old kernel's side of a kexec) and returns its successor,
  /// which starts from the same states and is the only one that still acts.
  constexpr state_machine hand_over() noexcept {
    state_machine next{own_, peer_};
    handed_over_ = true;
    return next;
  }

 private:
  constexpr void held(state_set s) noexcept {
    seen_since_last_ = state_set::from_bits(seen_since_last_.bits() | s.bits());
    seen_since_prev_ = state_set::from_bits(seen_since_prev_.bits() | s.bits());
  }

  // Our states since the last / the one-before-last peer change we saw.
  state_set seen_since_last_{state::initialising};
  state_set seen_since_prev_{state::initialising};
  state own_ = state::initialising;
  state peer_ = state::initialising;
  bool handed_over_ = false;
  bool peer_misbehaved_ = false;
};

/// The toolstack: creates devices, unplugs them (backend Closing) and removes them; it watches
/// both nodes and checks its own writes against the table.
template <transition_table_type Table>
class state_machine<Table, role::toolstack> {
 public:
  /// No device yet: both nodes absent (Unknown).
  constexpr state_machine() noexcept = default;
  /// Adopts what the nodes hold now.
  constexpr state_machine(state frontend, state backend) noexcept : front_{frontend}, back_{backend} {}

  /// The frontend node's state as last written or seen.
  constexpr state frontend() const noexcept { return front_; }
  /// The backend node's state as last written or seen.
  constexpr state backend() const noexcept { return back_; }

  /// May the toolstack move `end`'s node to `to` now?
  constexpr bool may(role end, state to) const noexcept {
    return end != role::toolstack && Table::find(on(end), node(end), to, node(peer_of(end))) != no_row;
  }

  /// Writes `to` into `end`'s node if a toolstack row allows it.
  constexpr result<transition, refusal> request(role end, state to) noexcept {
    const state other = node(peer_of(end));
    const std::size_t i = end == role::toolstack ? no_row : Table::find(on(end), node(end), to, other);
    if (i == no_row) return unexpected{refusal{on(end), node(end), to, other, refusal_reason::no_row}};
    const transition t{on(end), node(end), to, other, i, Table::rows[i].name};
    node(end) = to;
    return t;
  }

  /// request(End, To), refused at compile time when no toolstack row ever reaches To.
  template <role End, state To>
  constexpr result<transition, refusal> request() noexcept {
    static_assert(End == role::frontend || End == role::backend,
                  "state_machine<Table, toolstack>::request<End, To>(): End is the frontend or "
                  "the backend node");
    // Fix: request a state some toolstack row of the table reaches, or add that row.
    static_assert(drivable_to < Table, End == role::frontend ? by::toolstack_on_frontend : by::toolstack_on_backend,
                  To >,
                  "state_machine::request<To>(): no row of the table lets this role drive its "
                  "own node to that state");
    return request(End, To);
  }

  /// Creates the device: both nodes Unknown -> Initialising.
  constexpr result<void, refusal> create() noexcept { return both(state::initialising); }
  /// Unplugs the device: backend node -> Closing (the caller also writes `online` = 0).
  constexpr result<void, refusal> unplug() noexcept {
    auto r = request(role::backend, state::closing);
    if (!r) return unexpected{r.error()};
    return {};
  }
  /// Removes the device after both ends closed: both nodes Closed -> Unknown.
  constexpr result<void, refusal> remove() noexcept { return both(state::unknown); }

  /// Reads a change of `end`'s node (written by that end) and remembers it.
  constexpr observation observe(role end, state now) noexcept {
    observation o = detail::classify<Table>(end, false, node(end), now, state_set::all());
    o.owed = {};  // duties are the ends' business
    node(end) = now;
    return o;
  }
  /// Parses `end`'s node text and reads it; garbage leaves the state unchanged.
  constexpr observation observe(role end, std::string_view text) noexcept {
    const auto parsed = parse_state(text);
    if (!parsed) return detail::garbage(end, node(end), parsed.error());
    return observe(end, *parsed);
  }

 private:
  static constexpr driver on(role end) noexcept {
    return end == role::frontend ? by::toolstack_on_frontend : by::toolstack_on_backend;
  }
  constexpr state& node(role end) noexcept { return end == role::frontend ? front_ : back_; }
  constexpr state node(role end) const noexcept { return end == role::frontend ? front_ : back_; }
  constexpr result<void, refusal> both(state to) noexcept {
    auto f = request(role::frontend, to);
    if (!f) return unexpected{f.error()};
    auto b = request(role::backend, to);
    if (!b) return unexpected{b.error()};
    return {};
  }

  state front_ = state::unknown;
  state back_ = state::unknown;
};

/// The frontend machine of the standard table.
using frontend_machine = state_machine<standard_table, role::frontend>;
/// The backend machine of the standard table.
using backend_machine = state_machine<standard_table, role::backend>;
/// The toolstack machine of the standard table.
using toolstack_machine = state_machine<standard_table, role::toolstack>;

XENBUS_END_NAMESPACE
