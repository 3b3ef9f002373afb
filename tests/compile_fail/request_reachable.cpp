// Control: request<S>() compiles for states the table lets each party reach.
#include <xenbus/protocol/state_machine.hpp>

int main() {
  xenbus::toolstack_machine t;
  xenbus::frontend_machine f;
  xenbus::backend_machine b;
  bool ok = t.request<xenbus::role::backend, xenbus::state::closing>().has_value();
  ok = b.request<xenbus::state::init_wait>().has_value() && ok;
  ok = f.request<xenbus::state::initialised>().has_value() && ok;
  return ok ? 0 : 1;
}
