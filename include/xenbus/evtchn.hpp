// [freestanding] Event channels as a concept: bind, notify, take pending ports, unmask (libxenevtchn's model).
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <concepts>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// A domain id, as Xen's domid_t.
using domid_t = std::uint16_t;
/// A local event-channel port, as Xen's evtchn_port_t.
using evtchn_port = std::uint32_t;

/// Why an event-channel operation failed.
enum class evtchn_errc : std::uint8_t {
  unavailable,   ///< no event-channel device (not on Xen, or the machine is gone)
  no_free_port,  ///< every port of this domain is in use
  bad_port,      ///< the port is not bound through this handle
  bad_remote,    ///< the remote port is not an unbound port offered to us
  would_block,   ///< pending(): nothing is pending right now
  system,        ///< an OS call failed; see sys_errno
};

constexpr std::string_view to_string(evtchn_errc e) noexcept {
  switch (e) {
    case evtchn_errc::unavailable:
      return "no event-channel device";
    case evtchn_errc::no_free_port:
      return "no free event-channel port";
    case evtchn_errc::bad_port:
      return "port not bound through this handle";
    case evtchn_errc::bad_remote:
      return "remote port is not offered to this domain";
    case evtchn_errc::would_block:
      return "no port pending";
    case evtchn_errc::system:
      return "system call failed";
  }
  return "(invalid)";
}

/// An event-channel failure: what went wrong and, for `system`, the errno.
struct evtchn_error {
  evtchn_errc code;
  int sys_errno = 0;
};

/// One handle on event channels, shaped after libxenevtchn so that the real device and
/// the POSIX stand-in are interchangeable:
/// - `bind_unbound(remote)` offers a new local port to domain `remote` (the frontend does
///   this and publishes the port as `event-channel`);
/// - `bind_interdomain(remote, remote_port)` connects to a port the remote domain offered;
/// - `notify(port)` raises the event at the other end; `pending()` returns the next port
///   that was raised (or `would_block`), masked until `unmask(port)`;
/// - `fd()` is readable while a port may be pending (poll it, then call `pending()`).
/// Notifications are hints: a handle may report a port that has nothing new (XSA-391).
template <class E>
concept event_channel = requires(E& e, domid_t remote, evtchn_port port) {
  { e.bind_unbound(remote) } -> std::same_as<result<evtchn_port, evtchn_error>>;
  { e.bind_interdomain(remote, port) } -> std::same_as<result<evtchn_port, evtchn_error>>;
  { e.unbind(port) } -> std::same_as<result<void, evtchn_error>>;
  { e.notify(port) } -> std::same_as<result<void, evtchn_error>>;
  { e.pending() } -> std::same_as<result<evtchn_port, evtchn_error>>;
  { e.unmask(port) } -> std::same_as<result<void, evtchn_error>>;
  { e.fd() } -> std::same_as<int>;
};

XENBUS_END_NAMESPACE
