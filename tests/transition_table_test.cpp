// Tests include/xenbus/protocol/transition_table.hpp and standard_table.hpp: rows, queries, checks.
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/transition_table.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <string_view>

using namespace std::string_view_literals;
using xenbus::driver;
using xenbus::no_row;
using xenbus::role;
using xenbus::rule;
using xenbus::standard_table;
using xenbus::state;
using xenbus::state_set;
namespace by = xenbus::by;

// Compile-time claims: the queries are constant expressions and never throw.
static_assert(standard_table::allows(by::backend, state::init_wait, state::connected, state::initialised));
static_assert(!standard_table::allows(by::backend, state::init_wait, state::connected, state::initialising));
static_assert(standard_table::allows(by::frontend, state::initialising, state::initialised, state::initialising),
              "blkif.h: a frontend may publish without waiting for InitWait");
static_assert(standard_table::allows(by::backend, state::initialising, state::initialised, state::initialising),
              "blkif.h: a backend may bypass InitWait");
static_assert(!standard_table::can_drive_to(by::frontend, state::init_wait), "only a backend waits in InitWait");
static_assert(!standard_table::can_drive_to(by::frontend, state::unknown), "only the toolstack removes nodes");
static_assert(standard_table::can_drive_to(by::toolstack_on_backend, state::closing), "the toolstack unplugs");
static_assert(!standard_table::can_drive_to(by::toolstack_on_frontend, state::closing),
              "the toolstack never closes the frontend's node");
static_assert(
    standard_table::rows[standard_table::find(by::backend, state::connected, state::init_wait, state::initialising)]
        .name == "backend-resets-at-once"sv);
static_assert(standard_table::find(by::frontend, state::connected, state::initialised, state::connected) == no_row);
static_assert(noexcept(standard_table::find(by::frontend, state::unknown, state::unknown, state::unknown)));
static_assert(noexcept(standard_table::allows(by::frontend, state::unknown, state::unknown, state::unknown)));
static_assert(noexcept(standard_table::can_drive_to(by::frontend, state::unknown)));
static_assert(xenbus::transition_table_type<standard_table>);
static_assert(xenbus::drivable_to<standard_table, by::backend, state::init_wait>);
static_assert(!xenbus::drivable_to<standard_table, by::frontend, state::init_wait>);
static_assert(state_set{state::closing, state::closed}.size() == 2);
static_assert(state_set::all().size() == xenbus::state_count);

namespace {

constexpr state_set any = state_set::all();
constexpr state_set peers(auto... s) { return state_set{s...}; }

// The standard table as the protocol sources describe it, written independently of the header
// so that an accidental edit of a row (or a new row nobody documented) fails here.
struct expected_row {
  driver by;
  state from;
  state to;
  state_set peer;
  std::string_view name;
};
using enum state;
constexpr std::array expected_rows{
    expected_row{by::toolstack_on_frontend, unknown, initialising, any, "toolstack-creates-device"},
    expected_row{by::toolstack_on_backend, unknown, initialising, any, "toolstack-creates-device"},
    expected_row{by::toolstack_on_frontend, closed, unknown, peers(closed, unknown), "toolstack-removes-device"},
    expected_row{by::toolstack_on_backend, closed, unknown, peers(closed, unknown), "toolstack-removes-device"},
    expected_row{by::backend, initialising, init_wait, peers(unknown, initialising, initialised),
                 "backend-publishes-features"},
    expected_row{by::backend, initialising, initialised, peers(unknown, initialising, initialised),
                 "backend-skips-init-wait"},
    expected_row{by::frontend, initialising, initialised, peers(init_wait), "frontend-publishes-transport"},
    expected_row{by::frontend, initialising, initialised, peers(initialising, initialised), "frontend-skips-init-wait"},
    expected_row{by::frontend, initialising, connected, peers(init_wait), "frontend-connects-directly"},
    expected_row{by::backend, init_wait, connected, peers(initialised, connected), "backend-connects"},
    expected_row{by::backend, initialised, connected, peers(initialised, connected), "backend-connects-after-skip"},
    expected_row{by::frontend, initialised, connected, peers(connected), "frontend-connects"},
    expected_row{by::frontend, initialising, closing, any, "frontend-closes"},
    expected_row{by::frontend, initialised, closing, any, "frontend-closes"},
    expected_row{by::frontend, connected, closing, any, "frontend-closes"},
    expected_row{by::frontend, reconfiguring, closing, any, "frontend-closes"},
    expected_row{by::backend, initialising, closing, any, "backend-closes"},
    expected_row{by::backend, init_wait, closing, any, "backend-closes"},
    expected_row{by::backend, initialised, closing, any, "backend-closes"},
    expected_row{by::backend, connected, closing, any, "backend-closes"},
    expected_row{by::backend, reconfiguring, closing, any, "backend-closes"},
    expected_row{by::backend, reconfigured, closing, any, "backend-closes"},
    expected_row{by::toolstack_on_backend, initialising, closing, any, "toolstack-unplugs"},
    expected_row{by::toolstack_on_backend, init_wait, closing, any, "toolstack-unplugs"},
    expected_row{by::toolstack_on_backend, initialised, closing, any, "toolstack-unplugs"},
    expected_row{by::toolstack_on_backend, connected, closing, any, "toolstack-unplugs"},
    expected_row{by::toolstack_on_backend, reconfiguring, closing, any, "toolstack-unplugs"},
    expected_row{by::toolstack_on_backend, reconfigured, closing, any, "toolstack-unplugs"},
    expected_row{by::frontend, closing, closed, peers(closing, closed, unknown), "frontend-closed"},
    expected_row{by::frontend, connected, closed, peers(closing, closed), "frontend-closes-at-once"},
    expected_row{by::backend, closing, closed, peers(closed, unknown), "backend-closed"},
    expected_row{by::frontend, connected, closed, peers(connected, reconfiguring, reconfigured), "frontend-unbound"},
    expected_row{by::frontend, closed, initialising, peers(closed), "frontend-resets"},
    expected_row{by::backend, closed, init_wait, peers(initialising), "backend-prepares-for-reconnect"},
    expected_row{by::frontend, connected, initialising, peers(connected), "frontend-hands-over"},
    expected_row{by::backend, connected, init_wait, peers(initialising), "backend-resets-at-once"},
    expected_row{by::toolstack_on_backend, connected, reconfiguring, peers(connected), "toolstack-reconfigures"},
    expected_row{by::backend, reconfiguring, reconfigured, peers(connected, reconfiguring), "backend-reconfigured"},
    expected_row{by::frontend, connected, reconfiguring, peers(reconfiguring, reconfigured), "frontend-reconfigures"},
    expected_row{by::frontend, reconfiguring, connected, peers(reconfigured, connected), "frontend-reconfigured"},
    expected_row{by::backend, reconfigured, connected, peers(connected), "backend-reconnects"},
};

constexpr driver drivers[] = {by::frontend, by::backend, by::toolstack_on_frontend, by::toolstack_on_backend};

bool expected_allows(driver d, state from, state to, state peer) {
  for (const auto& e : expected_rows)
    if (e.by == d && e.from == from && e.to == to && e.peer.contains(peer)) return true;
  return false;
}

}  // namespace

TEST_CASE("every row of the standard table is the documented rule and reports its own name") {
  REQUIRE(standard_table::size == expected_rows.size());
  for (std::size_t i = 0; i < expected_rows.size(); ++i) {
    const expected_row& e = expected_rows[i];
    const rule& r = standard_table::rows[i];
    CAPTURE(e.name);
    CHECK(r.by == e.by);
    CHECK(r.from == e.from);
    CHECK(r.to == e.to);
    CHECK(r.peer == e.peer);
    CHECK(r.name == e.name);
    // For every peer state the row accepts, this row is the one the lookup reports.
    for (state p : xenbus::all_states) {
      const std::size_t found = standard_table::find(e.by, e.from, e.to, p);
      if (e.peer.contains(p))
        CHECK(found == i);
      else
        CHECK(found != i);
    }
  }
}

TEST_CASE("the standard table allows exactly the documented moves and nothing else") {
  std::size_t allowed = 0;
  for (driver d : drivers)
    for (state from : xenbus::all_states)
      for (state to : xenbus::all_states)
        for (state peer : xenbus::all_states) {
          const bool table = standard_table::allows(d, from, to, peer);
          CHECK(table == expected_allows(d, from, to, peer));
          allowed += table ? 1u : 0u;
        }
  CHECK(allowed > 0);
}

TEST_CASE("protocol facts the standard table must forbid") {
  SUBCASE("a backend does not connect before the frontend published its transport") {
    CHECK_FALSE(standard_table::allows(by::backend, init_wait, connected, initialising));
    CHECK_FALSE(standard_table::allows(by::backend, initialising, connected, initialised));
  }
  SUBCASE("a frontend does not connect before the backend is Connected (except netfront's direct path)") {
    CHECK_FALSE(standard_table::allows(by::frontend, initialised, connected, init_wait));
    CHECK_FALSE(standard_table::allows(by::frontend, initialising, connected, initialising));
  }
  SUBCASE("nobody writes InitWait into a frontend node or Initialised back over Connected") {
    for (driver d : drivers) {
      if (d.end == role::frontend) CHECK_FALSE(standard_table::can_drive_to(d, init_wait));
      CHECK_FALSE(standard_table::allows(d, connected, initialised, connected));
    }
  }
  SUBCASE("only the toolstack removes a node, and only once both ends are Closed") {
    CHECK_FALSE(standard_table::can_drive_to(by::frontend, unknown));
    CHECK_FALSE(standard_table::can_drive_to(by::backend, unknown));
    CHECK_FALSE(standard_table::allows(by::toolstack_on_backend, closed, unknown, connected));
    CHECK_FALSE(standard_table::allows(by::toolstack_on_backend, connected, unknown, closed));
  }
  SUBCASE("a backend answers a reset only once the frontend is back in Initialising") {
    CHECK_FALSE(standard_table::allows(by::backend, closed, init_wait, closed));
    CHECK_FALSE(standard_table::allows(by::backend, connected, init_wait, connected));
  }
}

TEST_CASE("the well-formedness checks see each defect in a row array") {
  using xenbus::detail::check_table;
  constexpr rule creates_f{by::toolstack_on_frontend, unknown, initialising, any, "c"};
  constexpr rule creates_b{by::toolstack_on_backend, unknown, initialising, any, "c"};
  // A minimal valid table: the blkif.h startup plus a close by either end.
  constexpr std::array<rule, 10> good{{
      {by::backend, initialising, init_wait, any, "b1"},
      {by::frontend, initialising, initialised, peers(init_wait), "f1"},
      {by::backend, init_wait, connected, peers(initialised), "b2"},
      {by::frontend, initialised, connected, peers(connected), "f2"},
      {by::frontend, initialising, closing, any, "fc"},
      {by::frontend, initialised, closing, any, "fc"},
      {by::frontend, connected, closing, any, "fc"},
      {by::backend, init_wait, closing, any, "bc"},
      {by::backend, connected, closing, any, "bc"},
      {by::frontend, closing, closed, peers(closing, closed), "fd"},
  }};
  // The backend's Closing -> Closed row completes the close; without it Closing is a dead end.
  constexpr auto with = [](auto rows, rule extra) {
    std::array<rule, std::tuple_size_v<decltype(rows)> + 1> out{};
    for (std::size_t i = 0; i < rows.size(); ++i) out[i] = rows[i];
    out[rows.size()] = extra;
    return out;
  };
  constexpr auto valid = with(good, rule{by::backend, closing, closed, peers(closed), "bd"});
  constexpr auto c = check_table(valid);
  CHECK(c.no_duplicates);
  CHECK(c.no_contradictions);
  CHECK(c.no_self_moves);
  CHECK(c.no_dead_ends);
  CHECK(c.connected_reachable);
  CHECK(c.closed_reachable);
  CHECK_FALSE(check_table(good).no_dead_ends);
  CHECK_FALSE(check_table(with(valid, valid[2])).no_duplicates);
  CHECK_FALSE(check_table(with(valid, rule{by::backend, init_wait, connected, peers(initialised, connected), "x"}))
                  .no_contradictions);
  CHECK(check_table(with(valid, rule{by::backend, init_wait, connected, peers(connected), "x"})).no_contradictions);
  CHECK_FALSE(check_table(with(valid, rule{by::frontend, connected, connected, any, "x"})).no_self_moves);
  // Creating both nodes from Unknown keeps every check green; creating one strands the other.
  constexpr auto created = check_table(with(with(valid, creates_f), creates_b));
  CHECK((created.no_dead_ends && created.closed_reachable && created.connected_reachable));
  CHECK_FALSE(check_table(with(valid, creates_f)).closed_reachable);
  // The frontend may only publish once the backend is Connected: neither end ever connects.
  auto never = valid;
  never[1].peer = peers(connected);
  CHECK_FALSE(check_table(never).connected_reachable);
  // The backend only completes a close when the frontend is Initialising: closes never finish.
  auto stuck = valid;
  stuck[10].peer = peers(initialising);
  CHECK(check_table(stuck).no_dead_ends);
  CHECK_FALSE(check_table(stuck).closed_reachable);
  // The standard table passes every check (it compiles, so this cannot fail silently either).
  const auto s = check_table(standard_table::rows);
  CHECK((s.no_duplicates && s.no_contradictions && s.no_self_moves && s.no_dead_ends && s.connected_reachable &&
         s.closed_reachable));
}

TEST_CASE("a broken table reports its first fault, in the order the checks are written") {
  using xenbus::detail::first_fault;
  using xenbus::detail::table_checks;
  using xenbus::detail::table_fault;
  CHECK(first_fault(table_checks{}) == table_fault::none);
  CHECK(first_fault(xenbus::detail::check_table(standard_table::rows)) == table_fault::none);
  // Every check fails: the first one written is the one reported.
  table_checks c{false, false, false, false, false, false};
  CHECK(first_fault(c) == table_fault::duplicate_row);
  c.no_duplicates = true;
  CHECK(first_fault(c) == table_fault::contradictory_rows);
  c.no_contradictions = true;
  CHECK(first_fault(c) == table_fault::self_move);
  c.no_self_moves = true;
  CHECK(first_fault(c) == table_fault::dead_end);
  c.no_dead_ends = true;
  CHECK(first_fault(c) == table_fault::connected_unreachable);
  c.connected_reachable = true;
  CHECK(first_fault(c) == table_fault::closed_unreachable);
  c.closed_reachable = true;
  CHECK(first_fault(c) == table_fault::none);
}
