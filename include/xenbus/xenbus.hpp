// [hosted] Everything on a hosted POSIX system: the core, xenstore store/server/client, devices.
#pragma once

#include <xenbus/core.hpp>

// Hosted (C++ standard library with heap and threads, POSIX sockets, memfd, eventfd).
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/hosted/ring_wait.hpp>
#include <xenbus/posix/device/client_store.hpp>
#include <xenbus/posix/device/service_loop.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/fd_passing.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/posix/xenstore/ring_service.hpp>
#include <xenbus/posix/xenstore/ring_transport.hpp>
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/hosted/xenstore/dispatch.hpp>
#include <xenbus/hosted/xenstore/ring_connection.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/posix/xenstore/transport.hpp>

// Not included: <xenbus/xen/*.hpp> (link libxenevtchn, libxengnttab, libxenstore; Xen hosts)
// and <xenbus/testing/faults.hpp> (fault injection for tests).
