// [freestanding] The one xenstore error vocabulary: xsd_errors[]'s errno names, a client's local conditions and faults.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#if defined(__has_include)
#if __has_include(<xen/io/xs_wire.h>)
#include <stdint.h>
#define XENBUS_HAVE_XS_WIRE_H 1
extern "C" {
#include <xen/io/xs_wire.h>
}
#endif
#endif

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// What went wrong with a xenstore operation. First the errno names a server answers in
/// XS_ERROR, in the order of xsd_errors[] (new ones are appended there, so the index is
/// stable; the wire carries the *name* as text), then the local conditions of a client.
/// A server (our store) answers only the first errc_count; every client (xenstore::client,
/// and every device_store: embedded, client_store, xen::xs_store) reports what the
/// server said unchanged, so a driver sees E2BIG as E2BIG.
enum class errc : std::uint8_t {
  // clang-format off
  einval, eacces, eexist, eisdir, enoent, enomem, enospc, eio,
  enotempty, enosys, erofs, ebusy, eagain, eisconn, e2big, eperm,
  // clang-format on
  eother,       ///< the server sent a well-formed errno name this client does not know
  broken,       ///< the connection is gone or latched broken; error::fault says why
  closed,       ///< the client was shut down (or destroyed)
  timeout,      ///< a wait for a watch event timed out
  reset,        ///< the request was discarded by a ring reconnection
  unsupported,  ///< the transport cannot do this (e.g. reconnect a socket)
  bad_request,  ///< the caller's arguments cannot be sent (bad path, payload > 4096)
};

/// Number of errno names in xsd_errors[]: the errc values a server may answer.
inline constexpr std::size_t errc_count = 16;
static_assert(static_cast<std::size_t>(errc::eother) == errc_count,
              "errc must list the errno names of xsd_errors[] before its local conditions");

/// True for the errno names a server may answer (not a client's local condition).
constexpr bool is_protocol(errc e) noexcept { return static_cast<std::size_t>(e) < errc_count; }

/// The text XS_ERROR carries ("EINVAL", ...), without the NUL; for a local condition its
/// name ("broken", "timeout", ...), which is never sent.
constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::einval:
      return "EINVAL";
    case errc::eacces:
      return "EACCES";
    case errc::eexist:
      return "EEXIST";
    case errc::eisdir:
      return "EISDIR";
    case errc::enoent:
      return "ENOENT";
    case errc::enomem:
      return "ENOMEM";
    case errc::enospc:
      return "ENOSPC";
    case errc::eio:
      return "EIO";
    case errc::enotempty:
      return "ENOTEMPTY";
    case errc::enosys:
      return "ENOSYS";
    case errc::erofs:
      return "EROFS";
    case errc::ebusy:
      return "EBUSY";
    case errc::eagain:
      return "EAGAIN";
    case errc::eisconn:
      return "EISCONN";
    case errc::e2big:
      return "E2BIG";
    case errc::eperm:
      return "EPERM";
    case errc::eother:
      return "EOTHER";
    case errc::broken:
      return "broken";
    case errc::closed:
      return "closed";
    case errc::timeout:
      return "timeout";
    case errc::reset:
      return "reset";
    case errc::unsupported:
      return "unsupported";
    case errc::bad_request:
      return "bad_request";
  }
  return "?";
}

/// Parses an errno name as xsd_errors[] spells it; anything else is not an error we know.
constexpr result<errc, bool> parse_errc(std::string_view text) noexcept {
  for (std::size_t i = 0; i < errc_count; ++i)
    if (to_string(static_cast<errc>(i)) == text) return static_cast<errc>(i);
  return unexpected{false};
}

/// Why a client's connection was latched broken (errc::broken) or failed locally.
enum class fault : std::uint8_t {
  none,
  peer_closed,          ///< end of stream from the server
  io_error,             ///< a system call failed; error::sys has errno
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

/// One sentence on a fault ("" for none).
constexpr std::string_view to_string(fault f) noexcept {
  switch (f) {
    case fault::none:
      return "";
    case fault::peer_closed:
      return "the server closed the connection";
    case fault::io_error:
      return "a system call on the transport failed (see sys)";
    case fault::bad_type:
      return "the server sent a message type it may not send";
    case fault::oversized_len:
      return "the server sent a header len above 4096";
    case fault::unsolicited_reply:
      return "the server answered a req_id nobody asked";
    case fault::reply_type_mismatch:
      return "the server answered with another message type";
    case fault::reply_tx_mismatch:
      return "the server answered with another transaction id";
    case fault::malformed_payload:
      return "the server sent a reply payload that breaks its type's rules";
    case fault::bad_error_name:
      return "the server sent an XS_ERROR that is not an errno name";
    case fault::malformed_event:
      return "the server sent a watch event that is not \"path\\0token\\0\"";
    case fault::ring_index:
      return "the ring's indices are more than a ring apart";
    case fault::ring_error:
      return "the server reported an error in the ring page";
    case fault::reply_timeout:
      return "the server did not answer within the reply timeout";
    case fault::send_timeout:
      return "the server did not read our request within the reply timeout";
  }
  return "?";
}

/// A failed operation: the code, and for local failures the fault and system errno.
/// Every xenstore client and every device_store fails with this one type.
struct error {
  errc code{errc::einval};
  xenstore::fault fault{xenstore::fault::none};
  int sys{0};  ///< errno of a failed system call (fault io_error), else 0

  /// The protocol errno name ("ENOENT", "EAGAIN", ...) or the name of a local condition.
  constexpr std::string_view name() const noexcept { return to_string(code); }
  /// One sentence on the fault behind a broken connection ("" when fault is none).
  constexpr std::string_view reason() const noexcept { return to_string(fault); }

  friend constexpr bool operator==(const error& e, errc c) noexcept { return e.code == c; }
};

/// Success or an error.
using status = result<void, error>;

// ---- Checks against the real header ---------------------------------------------------------

#if XENBUS_HAVE_XS_WIRE_H && defined(EINVAL)
// xsd_errors[] is a static const array, not constexpr: its length can be checked here, its
// entries only at run time (tests/xenstore_wire_test.cpp). XSD_ERROR(x) spells a name from
// the errno macro itself, so this copy in our order proves each of our names is a real errno
// name, spelled as Xen spells it. (xs_wire.h defines both only when <errno.h> came first.)
namespace detail {
struct xsd_error_name {
  int errnum;
  const char* errstring;
};
// clang-format off
inline constexpr xsd_error_name xsd_errors_in_our_order[] = {
  XSD_ERROR(EINVAL), XSD_ERROR(EACCES), XSD_ERROR(EEXIST), XSD_ERROR(EISDIR),
  XSD_ERROR(ENOENT), XSD_ERROR(ENOMEM), XSD_ERROR(ENOSPC), XSD_ERROR(EIO),
  XSD_ERROR(ENOTEMPTY), XSD_ERROR(ENOSYS), XSD_ERROR(EROFS), XSD_ERROR(EBUSY),
  XSD_ERROR(EAGAIN), XSD_ERROR(EISCONN), XSD_ERROR(E2BIG), XSD_ERROR(EPERM),
};
// clang-format on
}  // namespace detail
static_assert(sizeof(::xsd_errors) / sizeof(::xsd_errors[0]) == errc_count,
              "xsd_errors[] gained an entry: append its name to errc before eother");
static_assert(sizeof(detail::xsd_errors_in_our_order) / sizeof(detail::xsd_errors_in_our_order[0]) == errc_count);
static_assert(
    [] {
      for (std::size_t i = 0; i < errc_count; ++i)
        if (to_string(static_cast<errc>(i)) != std::string_view{detail::xsd_errors_in_our_order[i].errstring})
          return false;
      return true;
    }(),
    "errc's names must be spelled as the errno macros that XSD_ERROR() stringifies");
#endif

}  // namespace xenstore
XENBUS_END_NAMESPACE
