// Everything on a hosted POSIX system: the core, xenstore store/server/client, devices.
#pragma once

#include <xenbus/core.hpp>

// Hosted (C++ standard library with heap and threads, POSIX sockets, memfd, eventfd).
#include <xenbus/device.hpp>
#include <xenbus/ring_wait.hpp>
#include <xenbus/device/client_store.hpp>
#include <xenbus/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/fd_passing.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/xenstore/client.hpp>
#include <xenbus/xenstore/ring_transport.hpp>
#include <xenbus/xenstore/server.hpp>
#include <xenbus/xenstore/store.hpp>
#include <xenbus/xenstore/transport.hpp>

// Not included: <xenbus/xen/*.hpp> (link libxenevtchn, libxengnttab, libxenstore; Xen hosts)
// and <xenbus/testing/faults.hpp> (fault injection for tests).
