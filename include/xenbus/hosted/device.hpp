// [hosted] Device negotiation: frontend<Protocol>, backend<Protocol> and the toolstack, over any store.
#pragma once

#include <xenbus/hosted/device/backend.hpp>
#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/frontend.hpp>
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/hosted/device/toolstack.hpp>
