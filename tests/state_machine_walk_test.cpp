// Tests include/xenbus/protocol/state_machine.hpp exhaustively: every interleaving of frontend, backend
// and toolstack moves (and the watch events that carry them) up to a bounded depth.
#include <xenbus/protocol/state_machine.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

using xenbus::backend_machine;
using xenbus::change_kind;
using xenbus::frontend_machine;
using xenbus::refusal_reason;
using xenbus::role;
using xenbus::state;
using xenbus::toolstack_machine;
using enum xenbus::state;

namespace {

// Everything the three parties hold, plus the two `state` nodes in xenstore and whether a watch
// event is pending for each party. A party handling an event reads both nodes' current values
// (so events coalesce, and a value may be newer than the event that woke it).
enum : std::size_t { F = 0, B = 1, T = 2 };
struct world {
  frontend_machine f;      // the acting frontend (the new kernel's, after a handover)
  frontend_machine old_f;  // the old kernel's frontend once handed over
  backend_machine b;
  toolstack_machine t;
  state front_node = initialising;
  state back_node = initialising;
  bool handed = false;
  bool pending[3] = {};  // per party: a watch event has fired and not been handled
};
// The key is the raw bytes, which needs a layout without padding.
static_assert(std::has_unique_object_representations_v<world>);

struct world_key {
  unsigned char bytes[sizeof(world)];
  friend bool operator==(const world_key& a, const world_key& b) {
    return std::memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0;
  }
};
struct world_hash {
  std::size_t operator()(const world_key& k) const noexcept {
    std::size_t h = 14695981039346656037u;  // FNV-1a
    for (unsigned char c : k.bytes) h = (h ^ c) * 1099511628211u;
    return h;
  }
};
world_key key(const world& w) {
  world_key k;
  std::memcpy(k.bytes, &w, sizeof w);
  return k;
}

// The states some row lets `d` move its node to from `from` (for any peer): the only requests
// worth trying, which keeps the walk fast under sanitizers.
xenbus::state_set targets(xenbus::driver d, state from) {
  static const auto table = [] {
    constexpr xenbus::driver drivers[] = {xenbus::by::frontend, xenbus::by::backend, xenbus::by::toolstack_on_frontend,
                                          xenbus::by::toolstack_on_backend};
    std::array<std::array<xenbus::state_set, xenbus::state_count>, 4> t{};
    for (std::size_t i = 0; i < 4; ++i)
      for (const xenbus::rule& r : xenbus::standard_table::rows)
        if (r.by == drivers[i]) t[i][static_cast<std::size_t>(r.from)].insert(r.to);
    return t;
  }();
  const std::size_t i = d.who == role::toolstack  ? (d.end == role::frontend ? 2u : 3u)
                        : d.end == role::frontend ? 0u
                                                  : 1u;
  return table[i][static_cast<std::size_t>(from)];
}

void notify(world& w, std::size_t party) { w.pending[party] = true; }

std::string show(const world& w) {
  auto s = [](state x) { return std::string(xenbus::to_string(x)); };
  return "nodes F=" + s(w.front_node) + " B=" + s(w.back_node) + "; F own " + s(w.f.own()) + " sees " + s(w.f.peer()) +
         "; B own " + s(w.b.own()) + " sees " + s(w.b.peer()) + "; T sees " + s(w.t.frontend()) + "/" +
         s(w.t.backend()) + (w.handed ? "; handed over" : "");
}

// Which moves a walk explores.
struct policy {
  bool (*rule_allowed)(std::string_view rule);
  bool toolstack_writes;
  bool handover;
};

struct graph {
  std::vector<world> nodes;
  std::vector<std::size_t> out_degree;          // moves explored from each world
  std::vector<std::size_t> edge_from, edge_to;  // every move, flat (cheap under ASan)
  std::vector<std::size_t> depth;
  std::vector<std::string> problems;  // anything a property forbids, with the world it happened in
};

void problem(graph& g, const world& w, const std::string& what) {
  if (g.problems.size() < 20) g.problems.push_back(what + " in " + show(w));
}

// The handover property: the old frontend never acts and never reacts, whatever happens.
void check_old_frontend(graph& g, const world& w) {
  if (!w.handed) return;
  if (w.old_f.own() != connected) problem(g, w, "old frontend's state changed");
  for (state to : xenbus::all_states) {
    frontend_machine copy = w.old_f;
    auto r = copy.request(to);
    if (r.has_value() || r.error().why != refusal_reason::handed_over || copy.may(to))
      problem(g, w, "old frontend could act");
  }
  frontend_machine copy = w.old_f;
  if (copy.observe_peer(w.back_node).kind != change_kind::ignored) problem(g, w, "old frontend reacted");
}

template <class Add>
void successors(graph& g, const world& w, const policy& p, Add&& add) {
  auto observed = [&](const xenbus::observation& o, const world& next) {
    if (!o.explained()) problem(g, w, "unexplained observation: " + std::string(xenbus::describe(o).view()));
    add(next);
  };
  // A party handles its pending event: it reads both nodes, its own node first.
  if (w.pending[F]) {
    world n = w;
    n.pending[F] = false;
    const auto r = n.f.observe_nodes(w.front_node, w.back_node);
    if (!r.own.explained()) problem(g, w, "unexplained: " + std::string(xenbus::describe(r.own).view()));
    observed(r.peer, n);
  }
  if (w.pending[B]) {
    world n = w;
    n.pending[B] = false;
    const auto r = n.b.observe_nodes(w.back_node, w.front_node);
    if (!r.own.explained()) problem(g, w, "unexplained: " + std::string(xenbus::describe(r.own).view()));
    observed(r.peer, n);
  }
  if (w.pending[T]) {
    world n = w;
    n.pending[T] = false;
    const auto o = n.t.observe(role::frontend, w.front_node);
    if (!o.explained()) problem(g, w, "unexplained: " + std::string(xenbus::describe(o).view()));
    observed(n.t.observe(role::backend, w.back_node), n);
  }
  // An end writes its node in a transaction that checks the node still holds what it thinks
  // (so it never overwrites a toolstack write it has not seen); its view of the peer may lag.
  if (w.f.own() == w.front_node && !w.f.handed_over())
    for (state to : xenbus::all_states) {
      if (!targets(xenbus::by::frontend, w.f.own()).contains(to)) continue;
      world n = w;
      auto r = n.f.request(to);
      if (!r || !p.rule_allowed(r->rule)) continue;
      n.front_node = to;
      notify(n, B);
      notify(n, T);
      add(n);
    }
  if (w.b.own() == w.back_node)
    for (state to : xenbus::all_states) {
      if (!targets(xenbus::by::backend, w.b.own()).contains(to)) continue;
      world n = w;
      auto r = n.b.request(to);
      if (!r || !p.rule_allowed(r->rule)) continue;
      n.back_node = to;
      notify(n, F);
      notify(n, T);
      add(n);
    }
  // The toolstack reads both nodes and writes in one transaction (libxl retries on conflict).
  if (p.toolstack_writes && w.t.frontend() == w.front_node && w.t.backend() == w.back_node)
    for (role end : {role::frontend, role::backend})
      for (state to : xenbus::all_states) {
        const state from = end == role::frontend ? w.front_node : w.back_node;
        const auto d = end == role::frontend ? xenbus::by::toolstack_on_frontend : xenbus::by::toolstack_on_backend;
        if (!targets(d, from).contains(to)) continue;
        world n = w;
        auto r = n.t.request(end, to);
        if (!r || !p.rule_allowed(r->rule)) continue;
        (end == role::frontend ? n.front_node : n.back_node) = to;
        notify(n, F);
        notify(n, B);
        add(n);
      }
  // The kexec: the running frontend hands over to a new kernel's (once per walk).
  if (p.handover && !w.handed && w.f.own() == connected && w.front_node == connected) {
    world n = w;
    n.old_f = n.f;
    n.f = n.old_f.hand_over();
    n.handed = true;
    add(n);
  }
}

// Breadth-first walk from `starts`, at most `max_depth` moves deep (0: no bound).
graph walk(const std::vector<world>& starts, const policy& p, std::size_t max_depth) {
  graph g;
  std::unordered_map<world_key, std::size_t, world_hash> index;
  index.reserve(1u << 17);
  auto intern = [&](const world& w, std::size_t d) {
    auto [it, fresh] = index.emplace(key(w), g.nodes.size());
    if (fresh) {
      g.nodes.push_back(w);
      g.out_degree.push_back(0);
      g.depth.push_back(d);
    }
    return it->second;
  };
  for (const world& s : starts) intern(s, 0);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const world w = g.nodes[i];
    check_old_frontend(g, w);
    if (max_depth != 0 && g.depth[i] >= max_depth) continue;
    successors(g, w, p, [&](const world& n) {
      const std::size_t j = intern(n, g.depth[i] + 1);
      g.edge_from.push_back(i);
      g.edge_to.push_back(j);
      ++g.out_degree[i];
    });
  }
  return g;
}

// Indices of the nodes from which some path reaches a node satisfying `goal`.
template <class Goal>
std::vector<bool> can_reach(const graph& g, Goal goal) {
  // Predecessor lists in one array: first[j]..first[j+1] index the moves into world j.
  std::vector<std::size_t> first(g.nodes.size() + 1, 0), pred(g.edge_to.size());
  for (std::size_t j : g.edge_to) ++first[j + 1];
  for (std::size_t j = 0; j < g.nodes.size(); ++j) first[j + 1] += first[j];
  std::vector<std::size_t> fill(first.begin(), first.end() - 1);
  for (std::size_t e = 0; e < g.edge_to.size(); ++e) pred[fill[g.edge_to[e]]++] = g.edge_from[e];
  std::vector<bool> good(g.nodes.size(), false);
  std::vector<std::size_t> queue;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (goal(g.nodes[i])) {
      good[i] = true;
      queue.push_back(i);
    }
  for (std::size_t h = 0; h < queue.size(); ++h)
    for (std::size_t k = first[queue[h]]; k < first[queue[h] + 1]; ++k)
      if (const std::size_t i = pred[k]; !good[i]) {
        good[i] = true;
        queue.push_back(i);
      }
  return good;
}

bool both_connected(const world& w) {
  return w.front_node == connected && w.back_node == connected && w.f.own() == connected && w.b.own() == connected &&
         w.f.peer() == connected && w.b.peer() == connected;
}
// Both ends Closed and each knows it (nodes the toolstack already removed count as closed).
bool both_closed(const world& w) {
  auto done = [](state s) { return s == closed || s == unknown; };
  return done(w.front_node) && done(w.back_node) && w.f.own() == w.front_node && w.b.own() == w.back_node &&
         w.f.peer() == w.back_node && w.b.peer() == w.front_node;
}

bool any_rule(std::string_view) { return true; }
bool startup_rule(std::string_view r) {
  for (std::string_view s : {"backend-publishes-features", "backend-skips-init-wait", "frontend-publishes-transport",
                             "frontend-skips-init-wait", "frontend-connects-directly", "backend-connects",
                             "backend-connects-after-skip", "frontend-connects"})
    if (r == s) return true;
  return false;
}
bool close_rule(std::string_view r) {
  for (std::string_view s : {"frontend-closes", "backend-closes", "toolstack-unplugs", "frontend-closed",
                             "frontend-closes-at-once", "backend-closed"})
    if (r == s) return true;
  return false;
}

// A device the toolstack has just created: both nodes Initialising, nobody has moved yet.
world fresh() {
  world w;
  w.t = toolstack_machine{initialising, initialising};
  return w;
}

void require_no_problems(const graph& g) {
  for (const std::string& s : g.problems) FAIL_CHECK(s);
  CHECK(g.problems.empty());
}

}  // namespace

TEST_CASE("startup interleavings: from a fresh device every path of startup moves can reach Connected") {
  const graph g = walk({fresh()}, policy{startup_rule, false, false}, 0);
  require_no_problems(g);
  const std::vector<bool> live = can_reach(g, both_connected);
  std::size_t stuck = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (!live[i]) {
      ++stuck;
      if (stuck < 5) FAIL_CHECK("cannot reach Connected from " << show(g.nodes[i]));
    }
    // No deadlock: a world with no move left is the connected one.
    if (g.out_degree[i] == 0 && !both_connected(g.nodes[i])) FAIL_CHECK("deadlock in " << show(g.nodes[i]));
  }
  CHECK(stuck == 0);
  MESSAGE("startup worlds explored: " << g.nodes.size());
  CHECK(g.nodes.size() > 50);  // the skips and watch delays really branch
}

namespace {

// The depth-bounded walk of every move by every party from a fresh device.
const graph& full_walk() {
  static const graph g = walk({fresh()}, policy{any_rule, true, true}, 12);
  return g;
}

}  // namespace

TEST_CASE(
    "all interleavings to depth 12: every change is explained, no deadlock, the old "
    "frontend never acts") {
  const graph& g = full_walk();
  MESSAGE("worlds explored to depth 12: " << g.nodes.size());
  require_no_problems(g);
  bool connected_seen = false, handover_seen = false, reset_answered = false;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const world& w = g.nodes[i];
    connected_seen = connected_seen || both_connected(w);
    handover_seen = handover_seen || w.handed;
    reset_answered = reset_answered || (w.handed && w.back_node == init_wait && w.f.peer() == init_wait);
    if (g.depth[i] < 12 && g.out_degree[i] == 0) FAIL_CHECK("deadlock in " << show(w));
  }
  CHECK(connected_seen);
  CHECK(handover_seen);
  CHECK(reset_answered);  // the walk got as far as the backend answering the new kernel
}

TEST_CASE("every close started in the depth-12 walk completes") {
  std::vector<world> closes;
  for (const world& w : full_walk().nodes)
    if (w.front_node == closing || w.back_node == closing) closes.push_back(w);
  REQUIRE(!closes.empty());
  // From each, using only close moves and watch events, both ends can still reach Closed,
  // whatever else happens on the way (an unbounded walk: the close moves are finite).
  const graph c = walk(closes, policy{close_rule, true, false}, 0);
  MESSAGE("close worlds explored: " << c.nodes.size() << " from " << closes.size() << " starts");
  require_no_problems(c);
  const std::vector<bool> done = can_reach(c, both_closed);
  std::size_t stuck = 0;
  for (std::size_t i = 0; i < c.nodes.size(); ++i)
    if (!done[i] && ++stuck < 5) FAIL_CHECK("close cannot complete from " << show(c.nodes[i]));
  CHECK(stuck == 0);
}
