// The README's first program: a backend machine checks its own moves and reads its peer's.
#include <xenbus/protocol/state_machine.hpp>

#include <cstdio>

int main() {
  xenbus::backend_machine back;                         // the toolstack created both nodes
  auto moved = back.request(xenbus::state::init_wait);  // features published: write "2"
  if (!moved) return 1;
  auto seen = back.observe_peer("3");  // text of the frontend's `state` node
  std::printf("%.*s\n", static_cast<int>(describe(seen).size), describe(seen).text);
  auto refused = back.request(xenbus::state::reconfigured);  // no row allows it: an error
  if (refused) return 1;
  std::printf("%.*s\n", static_cast<int>(describe(refused.error()).size), describe(refused.error()).text);
  return back.request(xenbus::state::connected) ? 0 : 1;
}
