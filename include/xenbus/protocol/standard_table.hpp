// [freestanding] The standard xenbus table: who may drive each state change, row by row, with its source.
#pragma once

#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/transition_table.hpp>
#include <xenbus/version.hpp>

XENBUS_BEGIN_NAMESPACE

namespace standard_rows {
using enum state;

// How to read a row: `by` may move its own node (or, for the toolstack, the node named in
// by::toolstack_on_*) from the first state to the second while the OTHER end's node holds one
// of the when_peer<> states. The name is the rule the state machine reports.
//
// Position on the disputed case (a frontend back in Initialising while its backend is still
// Connected): the frontend has reset (the seed's kexec handover). The backend must answer; it
// may tear the old connection down and go to InitWait at once ("backend-resets-at-once", as
// libxenbe does and as the seed's backend did), or close first ("backend-closes", then
// "backend-prepares-for-reconnect" once the frontend is Closed and back in Initialising, which
// is the only path QEMU and FreeBSD take). Staying Connected is not a row: a frontend waiting
// in Initialising for InitWait would wait forever. A state machine that observes the frontend
// return to Initialising reports it as a reset under rule "frontend-hands-over".
//
// Who wrote a Closing into the backend's node cannot be seen from the node alone: the backend
// driver ("backend-closes") and the toolstack ("toolstack-unplugs", which also writes
// `online` = 0) have the same row shape. A frontend's machine reports the backend's own rule;
// the toolstack's rule is reported to the backend itself (state_machine::observe_toolstack).

// clang-format off
using table = transition_table<
  // Device lifetime: the toolstack creates both nodes at Initialising and removes them after close.
  row<by::toolstack_on_frontend, unknown,       initialising,  any_peer,                                 "toolstack-creates-device">,       // PROTOCOL.md: toolstack writes state = 1 (libxl device add)
  row<by::toolstack_on_backend,  unknown,       initialising,  any_peer,                                 "toolstack-creates-device">,       // PROTOCOL.md: toolstack writes state = 1 (libxl device add)
  row<by::toolstack_on_frontend, closed,        unknown,       when_peer<closed, unknown>,               "toolstack-removes-device">,       // libxl removes the directories after unplug
  row<by::toolstack_on_backend,  closed,        unknown,       when_peer<closed, unknown>,               "toolstack-removes-device">,       // libxl removes the directories after unplug

  // Startup.
  row<by::backend,               initialising,  init_wait,     when_peer<unknown, initialising, initialised>, "backend-publishes-features">, // blkif.h diagram: features published, InitWait
  row<by::backend,               initialising,  initialised,   when_peer<unknown, initialising, initialised>, "backend-skips-init-wait">,    // blkif.h note: backend may bypass InitWait
  row<by::frontend,              initialising,  initialised,   when_peer<init_wait>,                     "frontend-publishes-transport">,   // blkif.h diagram: ring-ref, event-channel published
  row<by::frontend,              initialising,  initialised,   when_peer<initialising, initialised>,     "frontend-skips-init-wait">,       // blkif.h note: frontend need not wait for InitWait
  row<by::frontend,              initialising,  connected,     when_peer<init_wait>,                     "frontend-connects-directly">,     // Linux netfront: Initialising -> Connected on InitWait
  row<by::backend,               init_wait,     connected,     when_peer<initialised, connected>,        "backend-connects">,               // blkif.h diagram; Connected peer: Linux netback
  row<by::backend,               initialised,   connected,     when_peer<initialised, connected>,        "backend-connects-after-skip">,    // blkif.h note: backend skipped InitWait
  row<by::frontend,              initialised,   connected,     when_peer<connected>,                     "frontend-connects">,              // blkif.h diagram

  // Close, started by either end (xenbus.h: Closing on error or unplug) or by the toolstack.
  row<by::frontend,              initialising,  closing,       any_peer,                                 "frontend-closes">,                // xenbus.h; Linux xenbus_dev_fatal
  row<by::frontend,              initialised,   closing,       any_peer,                                 "frontend-closes">,                // xenbus.h; Linux xenbus_dev_fatal
  row<by::frontend,              connected,     closing,       any_peer,                                 "frontend-closes">,                // xenbus.h; Linux xenbus_reset_frontend step 1
  row<by::frontend,              reconfiguring, closing,       any_peer,                                 "frontend-closes">,                // xenbus.h
  row<by::backend,               initialising,  closing,       any_peer,                                 "backend-closes">,                 // xenbus.h; Linux xenbus_dev_fatal
  row<by::backend,               init_wait,     closing,       any_peer,                                 "backend-closes">,                 // xenbus.h; Linux blkback on frontend Closing
  row<by::backend,               initialised,   closing,       any_peer,                                 "backend-closes">,                 // xenbus.h
  row<by::backend,               connected,     closing,       any_peer,                                 "backend-closes">,                 // xenbus.h; Linux blkback on frontend Closing
  row<by::backend,               reconfiguring, closing,       any_peer,                                 "backend-closes">,                 // xenbus.h
  row<by::backend,               reconfigured,  closing,       any_peer,                                 "backend-closes">,                 // xenbus.h
  row<by::toolstack_on_backend,  initialising,  closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::toolstack_on_backend,  init_wait,     closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::toolstack_on_backend,  initialised,   closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::toolstack_on_backend,  connected,     closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::toolstack_on_backend,  reconfiguring, closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::toolstack_on_backend,  reconfigured,  closing,       any_peer,                                 "toolstack-unplugs">,              // libxl unplug: online = 0, state = Closing
  row<by::frontend,              closing,       closed,        when_peer<closing, closed, unknown>,      "frontend-closed">,                // Linux xenbus_reset_frontend: waits for backend Closing
  row<by::frontend,              connected,     closed,        when_peer<closing, closed>,               "frontend-closes-at-once">,        // Linux blkfront: xenbus_frontend_closed on backend Closing
  row<by::backend,               closing,       closed,        when_peer<closed, unknown>,               "backend-closed">,                 // Linux blkback, QEMU: Closed once the frontend is Closed
  row<by::frontend,              connected,     closed,        when_peer<connected, reconfiguring, reconfigured>, "frontend-unbound">,    // Linux xenbus_dev_remove: blkfront unbound frees its ring, writes Closed

  // Reset and handover of the frontend (kexec, kdump, a bootloader handing over).
  row<by::frontend,              closed,        initialising,  when_peer<closed>,                        "frontend-resets">,                // Linux xenbus_reset_frontend: Closing, Closed, Initialising
  row<by::backend,               closed,        init_wait,     when_peer<initialising>,                  "backend-prepares-for-reconnect">, // Linux blkback "prepare for reconnect", QEMU, FreeBSD
  row<by::frontend,              connected,     initialising,  when_peer<connected>,                     "frontend-hands-over">,            // seed (Hoffmann 2006): straight back to Initialising
  row<by::backend,               connected,     init_wait,     when_peer<initialising>,                  "backend-resets-at-once">,         // seed, libxenbe (disputed: QEMU, FreeBSD close first)

  // Hot reconfiguration while connected (PCI passthrough).
  row<by::toolstack_on_backend,  connected,     reconfiguring, when_peer<connected>,                     "toolstack-reconfigures">,         // libxl PCI hot-plug writes backend state = 7
  row<by::backend,               reconfiguring, reconfigured,  when_peer<connected, reconfiguring>,      "backend-reconfigured">,           // Linux pciback xen_pcibk_reconfigure
  row<by::frontend,              connected,     reconfiguring, when_peer<reconfiguring, reconfigured>,   "frontend-reconfigures">,          // Linux pcifront: detach devices
  row<by::frontend,              reconfiguring, connected,     when_peer<reconfigured, connected>,       "frontend-reconfigured">,          // Linux pcifront: attach devices
  row<by::backend,               reconfigured,  connected,     when_peer<connected>,                     "backend-reconnects">              // Linux pciback: frontend back in Connected
>;
// clang-format on

}  // namespace standard_rows

/// The table every xenbus driver in this library follows (see standard_table.hpp, row by row).
using standard_table = standard_rows::table;

XENBUS_END_NAMESPACE
