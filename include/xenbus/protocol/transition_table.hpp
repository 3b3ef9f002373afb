// [freestanding] A who-drives transition table: rows as aligned data, constexpr queries, compile-time checks.
#pragma once

#include <xenbus/protocol/state.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// A set of states (a 9-bit mask): the peer states a row accepts, or the states a jump implied.
class state_set {
 public:
  constexpr state_set() noexcept = default;
  template <std::same_as<state>... S>
  constexpr explicit state_set(S... s) noexcept : bits_{static_cast<std::uint16_t>((0u | ... | bit(s)))} {}

  /// Every protocol state.
  static constexpr state_set all() noexcept { return from_bits((1u << state_count) - 1u); }
  /// The set whose mask is `bits` (bits above state 8 are dropped).
  static constexpr state_set from_bits(unsigned bits) noexcept {
    state_set s;
    s.bits_ = static_cast<std::uint16_t>(bits & ((1u << state_count) - 1u));
    return s;
  }

  constexpr bool contains(state s) const noexcept { return (bits_ & bit(s)) != 0; }
  constexpr void insert(state s) noexcept { bits_ = static_cast<std::uint16_t>(bits_ | bit(s)); }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  constexpr unsigned bits() const noexcept { return bits_; }
  constexpr std::size_t size() const noexcept {
    std::size_t n = 0;
    for (state s : all_states) n += contains(s) ? 1u : 0u;
    return n;
  }
  constexpr bool intersects(state_set o) const noexcept { return (bits_ & o.bits_) != 0; }
  friend constexpr bool operator==(state_set, state_set) noexcept = default;

 private:
  static constexpr unsigned bit(state s) noexcept { return 1u << static_cast<unsigned>(s); }
  std::uint16_t bits_ = 0;
};

/// Who writes a `state` node (`who`) and whose node it is (`end`: frontend or backend).
struct driver {
  role who;
  role end;
  friend constexpr bool operator==(driver, driver) noexcept = default;
};

/// The drivers a row can name: each end writes its own node; the toolstack writes either.
namespace by {
inline constexpr driver frontend{role::frontend, role::frontend};
inline constexpr driver backend{role::backend, role::backend};
inline constexpr driver toolstack_on_frontend{role::toolstack, role::frontend};
inline constexpr driver toolstack_on_backend{role::toolstack, role::backend};
}  // namespace by

/// The other end of a device: frontend <-> backend (the toolstack has no peer).
constexpr role peer_of(role end) noexcept { return end == role::frontend ? role::backend : role::frontend; }

/// A row's name as a template argument: `row<..., "backend-connects">`.
template <std::size_t N>
struct rule_name {
  char text[N]{};
  constexpr rule_name(const char (&s)[N]) noexcept {  // NOLINT: implicit from a literal on purpose
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
  }
  constexpr std::string_view view() const noexcept { return {text, N - 1}; }
};

/// One row as plain data: `by` may move its node `from` -> `to` while the other end is in `peer`.
struct rule {
  driver by;
  state from;
  state to;
  state_set peer;
  std::string_view name;
};

/// A row's peer condition: the other end's node holds one of `S`.
template <state... S>
struct when_peer {
  static constexpr state_set value{S...};
};
/// A row's peer condition that accepts every peer state.
struct any_peer {
  static constexpr state_set value = state_set::all();
};

/// A type usable as a row's peer condition (`when_peer<...>`, `any_peer`).
template <class P>
concept peer_condition = requires {
  { P::value } -> std::convertible_to<state_set>;
};

/// One row of a table, written as aligned data: driver, from, to, peer condition, name.
template <driver By, state From, state To, peer_condition Peer, rule_name Name>
struct row {
  static constexpr rule value{By, From, To, Peer::value, Name.view()};
};

/// A type usable as a table row.
template <class R>
concept table_row = requires {
  { R::value } -> std::convertible_to<rule>;
};

/// Index returned by lookups that found no row.
inline constexpr std::size_t no_row = static_cast<std::size_t>(-1);

namespace detail {

/// Joint state of both nodes, as one index: frontend * 9 + backend.
inline constexpr std::size_t joint_count = state_count * state_count;
constexpr std::size_t joint(state f, state b) noexcept {
  return static_cast<std::size_t>(f) * state_count + static_cast<std::size_t>(b);
}
constexpr state joint_front(std::size_t j) noexcept { return static_cast<state>(j / state_count); }
constexpr state joint_back(std::size_t j) noexcept { return static_cast<state>(j % state_count); }

/// The joint state after `r` applies in joint state `j`, or no_row if it does not apply.
constexpr std::size_t apply(const rule& r, std::size_t j) noexcept {
  const state f = joint_front(j), b = joint_back(j);
  if (r.by.end == role::frontend) {
    if (f != r.from || !r.peer.contains(b)) return no_row;
    return joint(r.to, b);
  }
  if (b != r.from || !r.peer.contains(f)) return no_row;
  return joint(f, r.to);
}

using joint_set = std::array<bool, joint_count>;

/// Every joint state reachable from `start` by any sequence of rows.
template <std::size_t N>
constexpr joint_set reachable_from(const std::array<rule, N>& rows, std::size_t start) noexcept {
  joint_set seen{};
  std::array<std::size_t, joint_count> queue{};
  std::size_t head = 0, tail = 0;
  seen[start] = true;
  queue[tail++] = start;
  while (head < tail) {
    const std::size_t j = queue[head++];
    for (const rule& r : rows) {
      const std::size_t next = apply(r, j);
      if (next != no_row && !seen[next]) {
        seen[next] = true;
        queue[tail++] = next;
      }
    }
  }
  return seen;
}

/// Every joint state from which `goal` is reachable (backward fixed point).
template <std::size_t N>
constexpr joint_set can_reach(const std::array<rule, N>& rows, std::size_t goal) noexcept {
  joint_set good{};
  good[goal] = true;
  for (bool grew = true; grew;) {
    grew = false;
    for (std::size_t j = 0; j < joint_count; ++j) {
      if (good[j]) continue;
      for (const rule& r : rows) {
        const std::size_t next = apply(r, j);
        if (next != no_row && good[next]) {
          good[j] = grew = true;
          break;
        }
      }
    }
  }
  return good;
}

/// The outcome of every well-formedness check, computed once per table.
struct table_checks {
  bool no_duplicates = true;
  bool no_contradictions = true;
  bool no_self_moves = true;
  bool no_dead_ends = true;
  bool connected_reachable = true;
  bool closed_reachable = true;
};

template <std::size_t N>
constexpr table_checks check_table(const std::array<rule, N>& rows) noexcept {
  table_checks c;
  for (std::size_t i = 0; i < N; ++i) {
    const rule& a = rows[i];
    if (a.from == a.to) c.no_self_moves = false;
    for (std::size_t k = i + 1; k < N; ++k) {
      const rule& b = rows[k];
      if (a.by != b.by || a.from != b.from || a.to != b.to) continue;
      if (a.peer == b.peer)
        c.no_duplicates = false;
      else if (a.peer.intersects(b.peer))
        c.no_contradictions = false;
    }
  }
  for (role end : {role::frontend, role::backend}) {
    state_set entered, left;
    for (const rule& r : rows) {
      if (r.by.end != end) continue;
      entered.insert(r.to);
      left.insert(r.from);
    }
    for (state s : all_states)
      if (s != state::closed && entered.contains(s) && !left.contains(s)) c.no_dead_ends = false;
  }
  const std::size_t fresh = joint(state::initialising, state::initialising);
  const joint_set from_fresh = reachable_from(rows, fresh);
  c.connected_reachable = from_fresh[joint(state::connected, state::connected)];
  // A table that creates devices (rows leaving Unknown) is also checked from "no device yet".
  bool creates = false;
  for (const rule& r : rows) creates = creates || r.from == state::unknown;
  const joint_set from_nothing = creates ? reachable_from(rows, joint(state::unknown, state::unknown)) : joint_set{};
  const joint_set closable = can_reach(rows, joint(state::closed, state::closed));
  for (std::size_t j = 0; j < joint_count; ++j)
    if ((from_fresh[j] || from_nothing[j]) && !closable[j]) c.closed_reachable = false;
  return c;
}

/// The first rule a table breaks, in the order the checks are written (none: it keeps them
/// all). A later check may assume the earlier ones hold, so a table reports one fault.
enum class table_fault : std::uint8_t {
  none,
  duplicate_row,
  contradictory_rows,
  self_move,
  dead_end,
  connected_unreachable,
  closed_unreachable,
};

constexpr table_fault first_fault(const table_checks& c) noexcept {
  if (!c.no_duplicates) return table_fault::duplicate_row;
  if (!c.no_contradictions) return table_fault::contradictory_rows;
  if (!c.no_self_moves) return table_fault::self_move;
  if (!c.no_dead_ends) return table_fault::dead_end;
  if (!c.connected_reachable) return table_fault::connected_unreachable;
  if (!c.closed_reachable) return table_fault::closed_unreachable;
  return table_fault::none;
}

}  // namespace detail

/// A transition table: the rows, constexpr queries over them, and checks that fire at compile
/// time when the table is used. Rows are tried in order; the first that applies is reported.
template <table_row... Rows>
class transition_table {
 public:
  /// The rows as data, in the order written.
  static constexpr std::array<rule, sizeof...(Rows)> rows{Rows::value...};
  static constexpr std::size_t size = sizeof...(Rows);

  /// The first row letting `by` move `from` -> `to` while the other end is in `peer`, or no_row.
  static constexpr std::size_t find(driver by, state from, state to, state peer) noexcept {
    for (std::size_t i = 0; i < size; ++i) {
      const rule& r = rows[i];
      if (r.by == by && r.from == from && r.to == to && r.peer.contains(peer)) return i;
    }
    return no_row;
  }
  /// May `by` move its node `from` -> `to` while the other end is in `peer`?
  static constexpr bool allows(driver by, state from, state to, state peer) noexcept {
    return find(by, from, to, peer) != no_row;
  }
  /// Does any row let `by` move its node into `to` (from any state, with any peer)?
  static constexpr bool can_drive_to(driver by, state to) noexcept {
    for (const rule& r : rows)
      if (r.by == by && r.to == to) return true;
    return false;
  }

 private:
  // Only the first fault fires, so a broken table reports exactly one sentence.
  static constexpr detail::table_fault fault = detail::first_fault(detail::check_table(rows));

  // Fix: delete one of the two identical rows.
  static_assert(fault != detail::table_fault::duplicate_row,
                "xenbus transition table: two rows are identical (duplicate row)");
  // Fix: rows with the same driver, from and to must accept disjoint peer states, so that
  // exactly one rule explains each change; split or merge their when_peer<> lists.
  static_assert(fault != detail::table_fault::contradictory_rows,
                "xenbus transition table: two rows give the same driver the same move for "
                "overlapping peer states (contradictory rows)");
  // Fix: a row must change the state; delete the row whose from and to are equal.
  static_assert(fault != detail::table_fault::self_move, "xenbus transition table: a row moves a state to itself");
  // Fix: add a row that leaves the state (every end must at least be able to close from it).
  static_assert(fault != detail::table_fault::dead_end,
                "xenbus transition table: an end can enter a state that no row lets it leave "
                "(only Closed may be final)");
  // Fix: add the startup rows (blkif.h): backend Initialising -> InitWait, frontend
  // -> Initialised, backend -> Connected, frontend -> Connected, with matching peer states.
  static_assert(fault != detail::table_fault::connected_unreachable,
                "xenbus transition table: frontend and backend cannot both reach Connected "
                "from Initialising");
  // Fix: let each end close (-> Closing -> Closed) from every state it can be in, with peer
  // conditions that the other end's close path satisfies.
  static_assert(fault != detail::table_fault::closed_unreachable,
                "xenbus transition table: from some reachable state the two ends can no "
                "longer both reach Closed");
};

/// A type that is a transition_table (what state_machine accepts).
template <class T>
concept transition_table_type = requires(driver d, state s) {
  { T::size } -> std::convertible_to<std::size_t>;
  { T::find(d, s, s, s) } -> std::same_as<std::size_t>;
  { T::can_drive_to(d, s) } -> std::same_as<bool>;
  T::rows[0];
};

/// Some row of `Table` lets `By` drive its node into state `To`.
template <class Table, driver By, state To>
concept drivable_to = transition_table_type<Table> && Table::can_drive_to(By, To);

XENBUS_END_NAMESPACE
