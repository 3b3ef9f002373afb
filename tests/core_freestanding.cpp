// Builds the core headers (state, table, machine) the way a kernel would: no exceptions, no RTTI,
// and a link that fails on any operator new, malloc or throw. Exits non-zero if a result is wrong.
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/protocol/transition_table.hpp>

namespace {

using namespace xenbus;

// Run-time (not constant-folded) inputs, so the code paths really link.
volatile int sink;

bool run(state start) {
  toolstack_machine t;
  frontend_machine old_f;
  backend_machine b{start, start};
  bool ok = t.create().has_value();
  ok = ok && b.request(state::init_wait).has_value();
  ok = ok && old_f.observe_peer(parse_state("2").value_or(state::unknown)).kind == change_kind::step;
  ok = ok && old_f.request(state::initialised).has_value();
  ok = ok && b.observe_peer(state::initialised).owed.contains(duty::connect_transport);
  ok = ok && b.request(state::connected).has_value();
  ok = ok && old_f.observe_peer("4").explained();
  ok = ok && old_f.request(state::connected).has_value();
  ok = ok && b.observe_peer(state::connected).kind == change_kind::step;
  // The kexec handover: the successor resets, the backend answers, the old end stays quiet.
  frontend_machine new_f = old_f.hand_over();
  ok = ok && new_f.request(state::initialising).has_value();
  ok = ok && b.observe_peer(state::initialising).kind == change_kind::reset;
  ok = ok && b.request(state::init_wait).has_value();
  ok = ok && old_f.observe_peer(state::init_wait).kind == change_kind::ignored;
  ok = ok && !old_f.request(state::initialised).has_value();
  ok = ok && new_f.observe_peer(state::init_wait).kind == change_kind::reset;
  // Garbage and illegal changes are errors, with a sentence in a fixed buffer.
  ok = ok && new_f.observe_peer("4 ").kind == change_kind::garbage;
  const auto refused = new_f.request(state::closed);
  ok = ok && !refused.has_value() && describe(refused.error()).size > 0;
  ok = ok && t.unplug().has_value();
  ok = ok && standard_table::allows(by::backend, state::closed, state::init_wait, state::initialising);
  sink = static_cast<int>(describe(b.observe_peer(state::closed)).size);
  return ok;
}

}  // namespace

int main() {
  volatile int start = static_cast<int>(state::initialising);
  return run(static_cast<state>(start)) ? 0 : 1;
}
