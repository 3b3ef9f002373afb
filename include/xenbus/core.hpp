// [freestanding] The freestanding core in one include: states, tables, machines, rings and the wire codec.
#pragma once

// Nothing here needs exceptions, RTTI, a heap or an operating system.
#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/console.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/ring/response_ids.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/protocol/standard_table.hpp>
#include <xenbus/protocol/state.hpp>
#include <xenbus/protocol/state_machine.hpp>
#include <xenbus/protocol/transition_table.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/wire.hpp>
#include <xenbus/ring/xenstore_page.hpp>
