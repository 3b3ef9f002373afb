// The Xen adapters' checks between a domU and dom0: event channels, grants, xenstore (lab scenario 10).
#pragma once

#include <xenbus/evtchn.hpp>

namespace xenlab {

/// The domU's side: offers a port and a page to `backend`, then checks xenstore in its own
/// home. Prints one line per check; returns the exit status (0: every check passed).
int adapters_domu(xenbus::domid_t backend);

/// dom0's side, against domU `domu`: binds and maps what it offers, then checks xenstore and
/// reports the domU's verdict.
int adapters_dom0(xenbus::domid_t domu);

}  // namespace xenlab
