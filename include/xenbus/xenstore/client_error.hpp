// [freestanding] Deprecated names of the xenstore client's errors (before 0.2.0); use <xenbus/xenstore/errors.hpp>.
#pragma once

#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>

XENBUS_BEGIN_NAMESPACE

using xs_errc [[deprecated("use xenbus::xenstore::errc")]] = xenstore::errc;
using xs_fault [[deprecated("use xenbus::xenstore::fault")]] = xenstore::fault;
using xs_error [[deprecated("use xenbus::xenstore::error")]] = xenstore::error;
using xs_status [[deprecated("use xenbus::xenstore::status")]] = xenstore::status;

XENBUS_END_NAMESPACE
