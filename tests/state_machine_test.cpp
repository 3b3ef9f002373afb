// Tests include/xenbus/protocol/state_machine.hpp: requests, peer observations, handover, toolstack.
#include <xenbus/protocol/state_machine.hpp>

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace std::string_view_literals;
using xenbus::backend_machine;
using xenbus::change_kind;
using xenbus::duty;
using xenbus::frontend_machine;
using xenbus::observation;
using xenbus::refusal_reason;
using xenbus::role;
using xenbus::standard_table;
using xenbus::state;
using xenbus::toolstack_machine;
using enum xenbus::state;

// Compile-time claims: a whole startup runs in a constant expression, and nothing throws.
static_assert([] {
  toolstack_machine t;
  frontend_machine f;
  backend_machine b;
  bool ok = t.create().has_value();
  ok = ok && b.request<init_wait>().has_value();
  ok = ok && f.observe_peer(init_wait).kind == change_kind::step;
  ok = ok && f.request<initialised>().has_value();
  ok = ok && b.observe_peer(initialised).owed.contains(duty::connect_transport);
  ok = ok && b.request<connected>().has_value();
  ok = ok && f.observe_peer("4"sv).kind == change_kind::step;
  ok = ok && f.request<connected>().has_value();
  return ok && f.own() == connected && b.own() == connected;
}());
static_assert(noexcept(frontend_machine{}.request(connected)));
static_assert(noexcept(frontend_machine{}.request<connected>()));
static_assert(noexcept(frontend_machine{}.observe_peer(connected)));
static_assert(noexcept(frontend_machine{}.observe_peer("4"sv)));
static_assert(noexcept(backend_machine{}.observe_toolstack(closing)));
static_assert(noexcept(frontend_machine{}.hand_over()));
static_assert(noexcept(toolstack_machine{}.request(role::backend, closing)));
static_assert(noexcept(toolstack_machine{}.observe(role::backend, "5"sv)));
static_assert(noexcept(xenbus::describe(xenbus::refusal{})));
static_assert(!frontend_machine{}.may(init_wait) && backend_machine{}.may(init_wait));

namespace {

std::string text(const xenbus::message& m) { return std::string(m.view()); }

template <class M>
void step(M& m, state to, std::string_view rule) {
  auto r = m.request(to);
  REQUIRE_MESSAGE(r.has_value(), text(xenbus::describe(r.error())));
  CHECK(r->rule == rule);
  CHECK(m.own() == to);
}

void step(toolstack_machine& t, role end, state to, std::string_view rule) {
  auto r = t.request(end, to);
  REQUIRE_MESSAGE(r.has_value(), text(xenbus::describe(r.error())));
  CHECK(r->rule == rule);
}

template <class M>
observation saw(M& m, state now, change_kind kind, std::string_view rule = {}) {
  const observation o = m.observe_peer(now);
  INFO(text(xenbus::describe(o)));
  CHECK(o.kind == kind);
  if (!rule.empty()) CHECK(o.rule == rule);
  CHECK(m.peer() == now);
  return o;
}

// Brings all three to a connected device along the blkif.h diagram.
void start(toolstack_machine& t, frontend_machine& f, backend_machine& b) {
  REQUIRE(t.create().has_value());
  step(b, init_wait, "backend-publishes-features");
  saw(f, init_wait, change_kind::step, "backend-publishes-features");
  step(f, initialised, "frontend-publishes-transport");
  saw(b, initialised, change_kind::step, "frontend-publishes-transport");
  step(b, connected, "backend-connects");
  saw(f, connected, change_kind::step, "backend-connects");
  step(f, connected, "frontend-connects");
  saw(b, connected, change_kind::step, "frontend-connects");
  // The toolstack's view lags: it checks that some path of rows explains each node's jump.
  CHECK(t.observe(role::backend, connected).kind == change_kind::coalesced);
  CHECK(t.observe(role::frontend, connected).explained());
}

}  // namespace

TEST_CASE("every row of the standard table works through the machines of both sides") {
  for (std::size_t i = 0; i < standard_table::size; ++i) {
    const xenbus::rule& r = standard_table::rows[i];
    CAPTURE(r.name);
    for (state p : xenbus::all_states) {
      if (!r.peer.contains(p)) continue;
      CAPTURE(p);
      if (r.by.who == role::toolstack) {
        // The toolstack makes the move; the end whose node it is reads it as this rule.
        toolstack_machine t = r.by.end == role::frontend ? toolstack_machine{r.from, p} : toolstack_machine{p, r.from};
        step(t, r.by.end, r.to, r.name);
        const observation o = r.by.end == role::frontend ? frontend_machine{r.from, p}.observe_toolstack(r.to)
                                                         : backend_machine{r.from, p}.observe_toolstack(r.to);
        CHECK(o.kind == change_kind::step);
        CHECK(o.rule == r.name);
      } else if (r.by.end == role::frontend) {
        frontend_machine f{r.from, p};
        step(f, r.to, r.name);
        backend_machine b{p, r.from};
        const observation o = b.observe_peer(r.to);
        CHECK(o.explained());
        CHECK(o.rule == r.name);
        CHECK(o.row == i);
      } else {
        backend_machine b{r.from, p};
        step(b, r.to, r.name);
        frontend_machine f{p, r.from};
        const observation o = f.observe_peer(r.to);
        CHECK(o.explained());
        CHECK(o.rule == r.name);
        CHECK(o.row == i);
      }
    }
  }
}

TEST_CASE("every move the table forbids is refused with an error naming role, from, to and peer") {
  std::size_t refused = 0;
  auto each = [&](auto machine_for, xenbus::driver self) {
    for (state from : xenbus::all_states)
      for (state to : xenbus::all_states)
        for (state peer : xenbus::all_states) {
          auto m = machine_for(from, peer);
          const bool allowed = standard_table::allows(self, from, to, peer);
          CHECK(m.may(to) == allowed);
          auto r = m.request(to);
          REQUIRE(r.has_value() == allowed);
          if (allowed) {
            CHECK(m.own() == to);
            continue;
          }
          ++refused;
          CHECK(m.own() == from);  // a refusal changes nothing
          const xenbus::refusal& e = r.error();
          CHECK(e.by == self);
          CHECK(e.from == from);
          CHECK(e.to == to);
          CHECK(e.peer == peer);
          CHECK(e.why == refusal_reason::no_row);
          const std::string msg = text(xenbus::describe(e));
          CHECK(msg.find(std::string(xenbus::to_string(self.who))) == 0);
          CHECK(msg.find(" " + std::string(xenbus::to_string(from)) + " -> " + std::string(xenbus::to_string(to)) +
                         " ") != std::string::npos);
          CHECK(msg.find(" is " + std::string(xenbus::to_string(peer)) + ":") != std::string::npos);
        }
  };
  each([](state own, state peer) { return frontend_machine{own, peer}; }, xenbus::by::frontend);
  each([](state own, state peer) { return backend_machine{own, peer}; }, xenbus::by::backend);
  for (role end : {role::frontend, role::backend})
    for (state from : xenbus::all_states)
      for (state to : xenbus::all_states)
        for (state peer : xenbus::all_states) {
          toolstack_machine t = end == role::frontend ? toolstack_machine{from, peer} : toolstack_machine{peer, from};
          const auto d = end == role::frontend ? xenbus::by::toolstack_on_frontend : xenbus::by::toolstack_on_backend;
          auto r = t.request(end, to);
          CHECK(r.has_value() == standard_table::allows(d, from, to, peer));
          if (!r) CHECK(r.error().by == d);
        }
  CHECK(refused > 1000);  // most of the 9*9*9 moves of each end are forbidden
  CHECK(toolstack_machine{}.request(role::toolstack, closing).has_value() == false);
}

TEST_CASE("startup along the blkif.h diagram owes each driver its work") {
  toolstack_machine t;
  frontend_machine f;
  backend_machine b;
  start(t, f, b);
  SUBCASE("what each observation owed") {
    frontend_machine f2;
    CHECK(f2.observe_peer(init_wait).owed.contains(duty::read_backend_features));
    backend_machine b2{init_wait, initialising};
    CHECK(b2.observe_peer(initialised).owed.contains(duty::connect_transport));
    frontend_machine f3{initialised, init_wait};
    CHECK(f3.observe_peer(connected).owed.contains(duty::read_backend_properties));
  }
  SUBCASE("a repeated watch event is unchanged and owes nothing") {
    const observation o = saw(f, connected, change_kind::unchanged);
    CHECK(o.owed.empty());
    CHECK(o.row == xenbus::no_row);
  }
}

TEST_CASE("both skips blkif.h allows, and netfront's direct connect") {
  SUBCASE("frontend publishes without waiting for InitWait") {
    frontend_machine f;
    backend_machine b;
    step(f, initialised, "frontend-skips-init-wait");
    saw(b, initialised, change_kind::step, "frontend-skips-init-wait");
    step(b, init_wait, "backend-publishes-features");
    saw(f, init_wait, change_kind::step);
    step(b, connected, "backend-connects");
    saw(f, connected, change_kind::step);
    step(f, connected, "frontend-connects");
  }
  SUBCASE("backend bypasses InitWait") {
    frontend_machine f;
    backend_machine b;
    step(b, initialised, "backend-skips-init-wait");
    const observation o = saw(f, initialised, change_kind::step, "backend-skips-init-wait");
    CHECK(o.owed.contains(duty::read_backend_features));
    step(f, initialised, "frontend-skips-init-wait");
    saw(b, initialised, change_kind::step);
    step(b, connected, "backend-connects-after-skip");
    saw(f, connected, change_kind::step);
    step(f, connected, "frontend-connects");
  }
  SUBCASE("netfront goes straight to Connected on InitWait; the backend connects to it") {
    frontend_machine f;
    backend_machine b;
    step(b, init_wait, "backend-publishes-features");
    saw(f, init_wait, change_kind::step);
    step(f, connected, "frontend-connects-directly");
    const observation o = saw(b, connected, change_kind::step, "frontend-connects-directly");
    CHECK(o.owed.contains(duty::connect_transport));
    step(b, connected, "backend-connects");
  }
}

TEST_CASE("coalesced watch events: the jump names the skipped states and the work still owed") {
  SUBCASE("frontend sees the backend jump Initialising -> Connected") {
    frontend_machine f;
    step(f, initialised, "frontend-skips-init-wait");
    const observation o = saw(f, connected, change_kind::coalesced, "backend-connects");
    CHECK(o.implied == xenbus::state_set{init_wait});
    CHECK(o.owed.contains(duty::read_backend_features));
    CHECK(o.owed.contains(duty::read_backend_properties));
    CHECK(text(xenbus::describe(o)).find("implied InitWait") != std::string::npos);
  }
  SUBCASE("backend's first event shows the frontend created and already Initialised") {
    backend_machine b{initialising, unknown};
    const observation o = saw(b, initialised, change_kind::coalesced, "frontend-skips-init-wait");
    CHECK(o.implied == xenbus::state_set{initialising});
    CHECK(o.owed.contains(duty::connect_transport));
  }
  SUBCASE("a Closed frontend sees the backend jump Connected -> Closed") {
    frontend_machine f{closed, connected};
    const observation o = saw(f, closed, change_kind::coalesced, "backend-closed");
    CHECK(o.implied == xenbus::state_set{closing});
    CHECK(o.owed.contains(duty::stop_io));
    CHECK(o.owed.contains(duty::release_transport));
  }
  SUBCASE("a jump the table cannot explain is illegal, named, and latched") {
    backend_machine b;
    const observation o = saw(b, connected, change_kind::illegal);
    CHECK(o.row == xenbus::no_row);
    CHECK(b.peer_misbehaved());
    CHECK(text(xenbus::describe(o)) == "saw frontend Initialising -> Connected: illegal");
  }
}

TEST_CASE("garbage state text is refused with its reason and changes nothing") {
  for (std::string_view bad :
       {""sv, "9"sv, "4 "sv, " 4"sv, "-1"sv, "04"sv, "4\0"sv, "Connected"sv, "99999999999999999999"sv}) {
    CAPTURE(std::string(bad));
    frontend_machine f{initialised, init_wait};
    const observation o = f.observe_peer(bad);
    CHECK(o.kind == change_kind::garbage);
    CHECK(o.parse_error == xenbus::parse_state(bad).error());
    CHECK(f.peer() == init_wait);
    CHECK(f.peer_misbehaved());
    CHECK(text(xenbus::describe(o)).find(std::string(xenbus::to_string(o.parse_error))) != std::string::npos);
  }
  toolstack_machine t;
  CHECK(t.observe(role::backend, "x"sv).kind == change_kind::garbage);
  CHECK(t.backend() == unknown);
}

TEST_CASE("the Linux frontend reset: Closing, Closed, Initialising, backend answers InitWait") {
  // A kdump kernel finds the device connected and walks it back (xenbus_reset_frontend).
  frontend_machine f{connected, connected};
  backend_machine b{connected, connected};
  step(f, closing, "frontend-closes");
  CHECK(saw(b, closing, change_kind::step, "frontend-closes").owed.contains(duty::stop_io));
  step(b, closing, "backend-closes");
  saw(f, closing, change_kind::step, "backend-closes");
  step(f, closed, "frontend-closed");
  CHECK(saw(b, closed, change_kind::step, "frontend-closed").owed.contains(duty::release_transport));
  step(b, closed, "backend-closed");
  saw(f, closed, change_kind::step, "backend-closed");
  step(f, initialising, "frontend-resets");
  CHECK(saw(b, initialising, change_kind::reset, "frontend-resets").owed.contains(duty::reset_for_new_peer));
  step(b, init_wait, "backend-prepares-for-reconnect");
  const observation o = saw(f, init_wait, change_kind::reset, "backend-prepares-for-reconnect");
  CHECK(o.owed.contains(duty::read_backend_features));
  step(f, initialised, "frontend-publishes-transport");
  saw(b, initialised, change_kind::step);
  step(b, connected, "backend-connects");
  saw(f, connected, change_kind::step);
  step(f, connected, "frontend-connects");
  // The frontend may not skip the wait: Closed -> Initialising needs the backend Closed.
  frontend_machine early{closed, closing};
  CHECK_FALSE(early.request(initialising).has_value());
}

TEST_CASE("the seed's kexec handover: the old frontend stays quiet while the new one reconnects") {
  toolstack_machine t;
  frontend_machine old_f;
  backend_machine b;
  start(t, old_f, b);

  const frontend_machine unmarked = old_f;  // what the old kernel would do without the mark
  frontend_machine new_f = old_f.hand_over();
  CHECK(old_f.handed_over());
  CHECK_FALSE(new_f.handed_over());
  CHECK(new_f.own() == connected);

  step(new_f, initialising, "frontend-hands-over");
  const observation reset = saw(b, initialising, change_kind::reset, "frontend-hands-over");
  CHECK(reset.owed.contains(duty::reset_for_new_peer));
  CHECK(t.observe(role::frontend, initialising).kind == change_kind::reset);
  step(b, init_wait, "backend-resets-at-once");

  // The backend's answer reaches both kernels' watches.
  const observation quiet = old_f.observe_peer(init_wait);
  CHECK(quiet.kind == change_kind::ignored);
  CHECK(quiet.owed.empty());
  CHECK(old_f.observe_peer("garbage"sv).kind == change_kind::ignored);
  for (state to : xenbus::all_states) {
    CHECK_FALSE(old_f.may(to));
    auto r = old_f.request(to);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().why == refusal_reason::handed_over);
  }
  CHECK(old_f.own() == connected);
  CHECK(text(xenbus::describe(old_f.request(initialised).error())).find("handed over") != std::string::npos);
  // Unmarked, the old kernel would take the answer for a reset addressed to it and start
  // reading features again: the 2006 bug that needed `shutdown_in_progress`.
  frontend_machine stale = unmarked;
  const observation bug = stale.observe_peer(init_wait);
  CHECK(bug.kind == change_kind::reset);
  CHECK(bug.owed.contains(duty::read_backend_features));

  const observation answer = saw(new_f, init_wait, change_kind::reset, "backend-resets-at-once");
  CHECK(answer.owed.contains(duty::read_backend_features));
  step(new_f, initialised, "frontend-publishes-transport");
  saw(b, initialised, change_kind::step);
  step(b, connected, "backend-connects");
  saw(new_f, connected, change_kind::step);
  step(new_f, connected, "frontend-connects");
  saw(b, connected, change_kind::step);
  CHECK(t.observe(role::frontend, connected).explained());

  // Unplug and removal still work with the successor.
  REQUIRE(t.unplug().has_value());
  CHECK(b.observe_toolstack(closing).rule == "toolstack-unplugs");
  CHECK(saw(new_f, closing, change_kind::step).owed.contains(duty::stop_io));
  step(new_f, closed, "frontend-closes-at-once");
  saw(b, closed, change_kind::step, "frontend-closes-at-once");
  step(b, closed, "backend-closed");
  saw(new_f, closed, change_kind::step, "backend-closed");
  CHECK(t.observe(role::frontend, closed).explained());
  CHECK(t.observe(role::backend, closed).explained());
  REQUIRE(t.remove().has_value());
  CHECK(b.observe_toolstack(unknown).rule == "toolstack-removes-device");
  CHECK(new_f.observe_toolstack(unknown).rule == "toolstack-removes-device");
  CHECK(old_f.observe_toolstack(unknown).kind == change_kind::ignored);
}

TEST_CASE("disputed: a frontend back in Initialising while the backend is still Connected") {
  frontend_machine f{connected, connected};
  backend_machine b{connected, connected};
  step(f, initialising, "frontend-hands-over");
  const observation o = saw(b, initialising, change_kind::reset, "frontend-hands-over");
  CHECK(o.by == xenbus::by::frontend);
  SUBCASE("libxenbe and the seed: reset at once") {
    step(b, init_wait, "backend-resets-at-once");
    saw(f, init_wait, change_kind::reset, "backend-resets-at-once");
  }
  SUBCASE("QEMU and FreeBSD: close first, answer from Closed") {
    step(b, closing, "backend-closes");
    saw(f, closing, change_kind::step, "backend-closes");
    step(f, closing, "frontend-closes");
    saw(b, closing, change_kind::step);
    step(f, closed, "frontend-closed");
    saw(b, closed, change_kind::step);
    step(b, closed, "backend-closed");
    saw(f, closed, change_kind::step);
    step(f, initialising, "frontend-resets");
    saw(b, initialising, change_kind::reset);
    step(b, init_wait, "backend-prepares-for-reconnect");
  }
  SUBCASE("staying Connected is not an answer the table offers") {
    CHECK_FALSE(b.may(connected));
    CHECK_FALSE(b.may(initialised));
  }
}

TEST_CASE("close started by either end, and the toolstack's unplug") {
  toolstack_machine t;
  frontend_machine f;
  backend_machine b;
  start(t, f, b);
  SUBCASE("frontend closes") {
    step(f, closing, "frontend-closes");
    saw(b, closing, change_kind::step);
    step(b, closing, "backend-closes");
    saw(f, closing, change_kind::step);
    step(f, closed, "frontend-closed");
    saw(b, closed, change_kind::step);
    step(b, closed, "backend-closed");
    saw(f, closed, change_kind::step);
  }
  SUBCASE("backend closes") {
    step(b, closing, "backend-closes");
    saw(f, closing, change_kind::step);
    step(f, closed, "frontend-closes-at-once");
    saw(b, closed, change_kind::step);
    step(b, closed, "backend-closed");
  }
  SUBCASE("toolstack unplugs: backend Closing written for the backend") {
    REQUIRE(t.unplug().has_value());
    const observation own = b.observe_toolstack(closing);
    CHECK(own.kind == change_kind::step);
    CHECK(own.by == xenbus::by::toolstack_on_backend);
    CHECK(b.own() == closing);
    saw(f, closing, change_kind::step);
    step(f, closing, "frontend-closes");
    saw(b, closing, change_kind::step);
    step(f, closed, "frontend-closed");
    saw(b, closed, change_kind::step);
    step(b, closed, "backend-closed");
    CHECK_FALSE(t.remove().has_value());  // the toolstack has not seen the ends close yet
    t.observe(role::frontend, closed);
    t.observe(role::backend, closed);
    REQUIRE(t.remove().has_value());
    CHECK(t.frontend() == unknown);
    CHECK(t.backend() == unknown);
  }
  SUBCASE("the toolstack cannot write what no toolstack row allows") {
    CHECK_FALSE(t.create().has_value());  // already created
    auto r = t.request(role::frontend, closing);
    REQUIRE_FALSE(r.has_value());
    CHECK(text(xenbus::describe(r.error())) ==
          "toolstack (on the frontend node) may not move Connected -> Closing while the backend is "
          "Connected: no row of the table allows it");
    CHECK(b.observe_toolstack(initialised).kind == change_kind::illegal);
    CHECK(b.own() == connected);
  }
}

TEST_CASE("hot reconfiguration (pciback/pcifront)") {
  toolstack_machine t;
  frontend_machine f;
  backend_machine b;
  start(t, f, b);
  step(t, role::backend, reconfiguring, "toolstack-reconfigures");
  CHECK(b.observe_toolstack(reconfiguring).rule == "toolstack-reconfigures");
  CHECK(saw(f, reconfiguring, change_kind::step).owed.contains(duty::reconfigure));
  step(f, reconfiguring, "frontend-reconfigures");
  saw(b, reconfiguring, change_kind::step);
  step(b, reconfigured, "backend-reconfigured");
  saw(f, reconfigured, change_kind::step);
  step(f, connected, "frontend-reconfigured");
  saw(b, connected, change_kind::step);
  step(b, connected, "backend-reconnects");
  saw(f, connected, change_kind::step);
}
