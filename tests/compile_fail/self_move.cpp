// Must not compile: a row that moves Connected to Connected.
#include <xenbus/protocol/transition_table.hpp>

using namespace xenbus;
using enum state;

// clang-format off
using table = transition_table<
  row<by::backend,  initialising, init_wait,   any_peer,                  "backend-publishes-features">,
  row<by::frontend, initialising, initialised, when_peer<init_wait>,      "frontend-publishes-transport">,
  row<by::backend,  init_wait,    connected,   when_peer<initialised>,    "backend-connects">,
  row<by::frontend, initialised,  connected,   when_peer<connected>,      "frontend-connects">,
  row<by::frontend, initialising, closing,     any_peer,                  "frontend-closes">,
  row<by::frontend, initialised,  closing,     any_peer,                  "frontend-closes">,
  row<by::frontend, connected,    closing,     any_peer,                  "frontend-closes">,
  row<by::backend,  init_wait,    closing,     any_peer,                  "backend-closes">,
  row<by::backend,  connected,    closing,     any_peer,                  "backend-closes">,
  row<by::frontend, closing,      closed,      when_peer<closing, closed>, "frontend-closed">,
  row<by::frontend, connected,    connected,   any_peer,                  "frontend-stays">,
  row<by::backend,  closing,      closed,      when_peer<closed>,         "backend-closed">
>;
// clang-format on

static_assert(table::size > 0);  // instantiates the table, which runs its checks
