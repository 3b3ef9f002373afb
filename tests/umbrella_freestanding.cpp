// The whole freestanding core through <xenbus/core.hpp>, built and linked with no heap,
// exceptions or RTTI: a header that grows a hosted dependency breaks this link.
#include <xenbus/core.hpp>

int main() {
  xenbus::frontend_machine front;
  if (!front.request(xenbus::state::initialised)) return 1;
  return xenbus::parse_state("4").value() == xenbus::state::connected ? 0 : 1;
}
