// [freestanding] Typed xenbus states and roles, with strict parsing of the text a `state` node holds.
#pragma once

#include <xenbus/protocol/detail/xen_headers.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// The state one end of a device publishes in its `state` node (xen/io/xenbus.h).
enum class state : std::uint8_t {
  unknown = 0,
  initialising = 1,
  init_wait = 2,    ///< backend: features published, waiting for the frontend
  initialised = 3,  ///< frontend: transport published, waiting for the backend
  connected = 4,
  closing = 5,
  closed = 6,
  reconfiguring = 7,
  reconfigured = 8,
};

/// Number of states defined by the protocol (0..8).
inline constexpr std::size_t state_count = 9;

/// Who changes a `state` node: one of the two ends, or the toolstack that owns the device.
enum class role : std::uint8_t { frontend, backend, toolstack };

/// Xen's name for a state, as in `XenbusStateInitWait` without the prefix.
constexpr std::string_view to_string(state s) noexcept {
  switch (s) {
    case state::unknown:
      return "Unknown";
    case state::initialising:
      return "Initialising";
    case state::init_wait:
      return "InitWait";
    case state::initialised:
      return "Initialised";
    case state::connected:
      return "Connected";
    case state::closing:
      return "Closing";
    case state::closed:
      return "Closed";
    case state::reconfiguring:
      return "Reconfiguring";
    case state::reconfigured:
      return "Reconfigured";
  }
  return "(invalid)";
}

constexpr std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::frontend:
      return "frontend";
    case role::backend:
      return "backend";
    case role::toolstack:
      return "toolstack";
  }
  return "(invalid)";
}

/// The decimal text `"%d"` writes for a state: what goes into a `state` node.
constexpr std::string_view to_node_text(state s) noexcept {
  constexpr std::string_view digits = "012345678";
  const auto i = static_cast<std::size_t>(s);
  return i < state_count ? digits.substr(i, 1) : std::string_view{};
}

/// Why a `state` node's text was refused.
enum class state_parse_error : std::uint8_t {
  empty,         ///< the node holds no bytes
  too_long,      ///< more bytes than any valid state needs
  not_a_digit,   ///< a sign, space, NUL or other non-digit byte
  leading_zero,  ///< "04": "%d" never writes that
  out_of_range,  ///< a number, but not one of the nine states
};

constexpr std::string_view to_string(state_parse_error e) noexcept {
  switch (e) {
    case state_parse_error::empty:
      return "state text is empty";
    case state_parse_error::too_long:
      return "state text is longer than one digit";
    case state_parse_error::not_a_digit:
      return "state text holds a byte that is not a decimal digit";
    case state_parse_error::leading_zero:
      return "state text has a leading zero";
    case state_parse_error::out_of_range:
      return "state number is not one of 0..8";
  }
  return "(invalid)";
}

/// Parses exactly the text `"%d"` writes for 0..8; anything else is an error with a reason.
/// The input comes from a peer: it may hold any bytes, including NULs.
constexpr result<state, state_parse_error> parse_state(std::string_view text) noexcept {
  if (text.empty()) return unexpected{state_parse_error::empty};
  // Classify the bytes before the length so that "4 " reports the space, not the length,
  // but never walk more than a bounded prefix of hostile input.
  const std::size_t scan = text.size() < 16 ? text.size() : 16;
  for (std::size_t i = 0; i < scan; ++i)
    if (text[i] < '0' || text[i] > '9') return unexpected{state_parse_error::not_a_digit};
  if (text.size() > 1) {
    if (text[0] == '0') return unexpected{state_parse_error::leading_zero};
    if (text.size() > 10) return unexpected{state_parse_error::too_long};
    return unexpected{state_parse_error::out_of_range};
  }
  const auto v = static_cast<unsigned>(text[0] - '0');
  if (v >= state_count) return unexpected{state_parse_error::out_of_range};
  return static_cast<state>(v);
}

/// Every state, in protocol order, for loops and table checks.
inline constexpr state all_states[state_count] = {state::unknown,     state::initialising,  state::init_wait,
                                                  state::initialised, state::connected,     state::closing,
                                                  state::closed,      state::reconfiguring, state::reconfigured};

#if XENBUS_HAVE_XEN_HEADERS
// Our numbering must be Xen's: a state node written by either side means the same thing.
static_assert(static_cast<int>(state::unknown) == XenbusStateUnknown);
static_assert(static_cast<int>(state::initialising) == XenbusStateInitialising);
static_assert(static_cast<int>(state::init_wait) == XenbusStateInitWait);
static_assert(static_cast<int>(state::initialised) == XenbusStateInitialised);
static_assert(static_cast<int>(state::connected) == XenbusStateConnected);
static_assert(static_cast<int>(state::closing) == XenbusStateClosing);
static_assert(static_cast<int>(state::closed) == XenbusStateClosed);
static_assert(static_cast<int>(state::reconfiguring) == XenbusStateReconfiguring);
static_assert(static_cast<int>(state::reconfigured) == XenbusStateReconfigured);
#endif

XENBUS_END_NAMESPACE
