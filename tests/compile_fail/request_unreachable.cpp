// Must not compile: no row of the standard table lets a frontend drive its node to InitWait.
#include <xenbus/protocol/state_machine.hpp>

int main() {
  xenbus::frontend_machine f;
  return f.request<xenbus::state::init_wait>().has_value() ? 0 : 1;
}
