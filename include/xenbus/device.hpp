// Device negotiation: frontend<Protocol>, backend<Protocol> and the toolstack, over any store.
#pragma once

#include <xenbus/device/backend.hpp>
#include <xenbus/device/driver.hpp>
#include <xenbus/device/frontend.hpp>
#include <xenbus/device/negotiation.hpp>
#include <xenbus/device/store.hpp>
#include <xenbus/device/toolstack.hpp>
