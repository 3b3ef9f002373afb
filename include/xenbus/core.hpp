// The freestanding core in one include: states, tables, machines, rings and the wire codec.
#pragma once

// Nothing here needs exceptions, RTTI, a heap or an operating system.
#include <xenbus/byte_ring.hpp>
#include <xenbus/console_ring.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/response_ids.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring.hpp>
#include <xenbus/ring_common.hpp>
#include <xenbus/standard_table.hpp>
#include <xenbus/state.hpp>
#include <xenbus/state_machine.hpp>
#include <xenbus/transition_table.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/wire.hpp>
#include <xenbus/xenstore_ring.hpp>
