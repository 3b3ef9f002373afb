// [freestanding] Errors of the xenstore client: the server's errno names and the client's own faults.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// What went wrong: a protocol errno name the server answered, or a local condition.
enum class xs_errc : std::uint8_t {
  // The server's answers, in the order of xsd_errors[] in <xen/io/xs_wire.h>.
  einval, eacces, eexist, eisdir, enoent, enomem, enospc, eio,
  enotempty, enosys, erofs, ebusy, eagain, eisconn, e2big, eperm,
  eother,       ///< the server sent a well-formed errno name this client does not know
  // Local conditions.
  broken,       ///< the connection is latched broken; xs_error::fault says why
  closed,       ///< the client was shut down (or destroyed)
  timeout,      ///< a wait for a watch event timed out
  reset,        ///< the request was discarded by a ring reconnection
  unsupported,  ///< the transport cannot do this (e.g. reconnect a socket)
  bad_request,  ///< the caller's arguments cannot be sent (bad path, payload > 4096)
};

/// Why a connection was latched broken (xs_errc::broken) or failed locally.
enum class xs_fault : std::uint8_t {
  none,
  peer_closed,          ///< end of stream from the server
  io_error,             ///< a system call failed; xs_error::sys has errno
  bad_type,             ///< a message type the server may not send
  oversized_len,        ///< header len above XENSTORE_PAYLOAD_MAX (4096)
  unsolicited_reply,    ///< a reply whose req_id matches no outstanding request
  reply_type_mismatch,  ///< a reply of another type than its request
  reply_tx_mismatch,    ///< a reply whose tx_id is not its request's (servers echo it)
  malformed_payload,    ///< a reply payload that breaks the rules of its type
  bad_error_name,       ///< an XS_ERROR payload that is not an errno name
  malformed_event,      ///< an XS_WATCH_EVENT that is not "path\0token\0"
  ring_index,           ///< ring producer/consumer indices more than a ring apart
  ring_error,           ///< the server set the ring's error field
  reply_timeout,        ///< no reply within the client's reply timeout
  send_timeout,         ///< the server took no request bytes for the whole reply timeout
};

/// A failed operation: the code, and for local failures the fault and system errno.
struct xs_error {
  xs_errc code{xs_errc::einval};
  xs_fault fault{xs_fault::none};
  int sys{0};  ///< errno of a failed system call (fault io_error), else 0

  /// The protocol errno name ("ENOENT", "EAGAIN", ...) or the name of a local condition.
  constexpr std::string_view name() const noexcept;
  /// One sentence on the fault behind a broken connection ("" when fault is none).
  constexpr std::string_view reason() const noexcept;

  friend constexpr bool operator==(const xs_error& e, xs_errc c) noexcept { return e.code == c; }
};

/// Success or an xs_error.
using xs_status = result<void, xs_error>;

namespace detail {
// clang-format off
inline constexpr std::string_view xs_errno_names[] = {
  "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
  "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
};
// clang-format on
inline constexpr std::size_t xs_errno_count = sizeof(xs_errno_names) / sizeof(xs_errno_names[0]);
static_assert(xs_errno_count == static_cast<std::size_t>(xs_errc::eother),
              "xs_errc must list the errno names of xsd_errors[] before eother");

/// Maps an XS_ERROR payload (without its NUL) to a code; eother for unknown names.
constexpr xs_errc xs_errc_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < xs_errno_count; ++i)
    if (xs_errno_names[i] == name) return static_cast<xs_errc>(i);
  return xs_errc::eother;
}
}  // namespace detail

constexpr std::string_view xs_error::name() const noexcept {
  const auto i = static_cast<std::size_t>(code);
  if (i < detail::xs_errno_count) return detail::xs_errno_names[i];
  switch (code) {
    case xs_errc::eother: return "EOTHER";
    case xs_errc::broken: return "broken";
    case xs_errc::closed: return "closed";
    case xs_errc::timeout: return "timeout";
    case xs_errc::reset: return "reset";
    case xs_errc::unsupported: return "unsupported";
    case xs_errc::bad_request: return "bad_request";
    default: return "?";
  }
}

constexpr std::string_view xs_error::reason() const noexcept {
  switch (fault) {
    case xs_fault::none: return "";
    case xs_fault::peer_closed: return "the server closed the connection";
    case xs_fault::io_error: return "a system call on the transport failed (see sys)";
    case xs_fault::bad_type: return "the server sent a message type it may not send";
    case xs_fault::oversized_len: return "the server sent a header len above 4096";
    case xs_fault::unsolicited_reply: return "the server answered a req_id nobody asked";
    case xs_fault::reply_type_mismatch: return "the server answered with another message type";
    case xs_fault::reply_tx_mismatch: return "the server answered with another transaction id";
    case xs_fault::malformed_payload: return "the server sent a reply payload that breaks its type's rules";
    case xs_fault::bad_error_name: return "the server sent an XS_ERROR that is not an errno name";
    case xs_fault::malformed_event: return "the server sent a watch event that is not \"path\\0token\\0\"";
    case xs_fault::ring_index: return "the ring's indices are more than a ring apart";
    case xs_fault::ring_error: return "the server reported an error in the ring page";
    case xs_fault::reply_timeout: return "the server did not answer within the reply timeout";
    case xs_fault::send_timeout: return "the server did not read our request within the reply timeout";
  }
  return "?";
}

XENBUS_END_NAMESPACE
