// [freestanding] Index type, errors and sizes shared by every Xen ring (request/response and byte rings).
#pragma once

#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// A free-running ring index (RING_IDX, XENSTORE_RING_IDX, XENCONS_RING_IDX): all
/// arithmetic on it is modulo 2^32, so differences are taken as unsigned 32-bit values.
using ring_idx = std::uint32_t;

/// Ring pages are always 4 KiB, whatever page size the OS uses (XEN_PAGE_SHIFT 12).
inline constexpr std::size_t xen_page_size = 4096;

/// Why a ring call failed. Errors marked "latched" break the ring for good: every later
/// call on that ring object returns the same error.
enum class ring_error : std::uint8_t {
  bad_memory = 1,  ///< setup: shared area too small or misaligned, or order out of range
  full,            ///< no free slot or byte right now (not latched)
  prod_overflow,   ///< latched: the peer's producer index is outside the window it can be
                   ///< in (RING_*_PROD_OVERFLOW, or behind our consumer index)
  cons_overflow,   ///< latched (byte rings): the peer's consumer index is ahead of our
                   ///< producer index or more than the ring size behind it
  peer_error,      ///< latched (xenstore): the connection was stopped with an error
                   ///< (the server set, or our server end wrote, the `error` field)
  reconnecting,    ///< xenstore: a reconnection is in progress; wait for it (not latched)
  not_supported,   ///< xenstore: the server does not offer the feature asked for
};

constexpr std::string_view to_string(ring_error e) noexcept {
  switch (e) {
    case ring_error::bad_memory:
      return "shared ring memory is too small, misaligned or of a bad order";
    case ring_error::full:
      return "ring is full";
    case ring_error::prod_overflow:
      return "peer's producer index is out of range (ring broken)";
    case ring_error::cons_overflow:
      return "peer's consumer index is out of range (ring broken)";
    case ring_error::peer_error:
      return "xenstore connection stopped with an error (ring broken)";
    case ring_error::reconnecting:
      return "ring reconnection in progress";
    case ring_error::not_supported:
      return "peer does not support this ring feature";
  }
  return "(invalid)";
}

/// Largest power of two <= x, 0 for 0: what ring.h's __RD32 computes.
constexpr std::uint32_t round_down_pow2(std::uint32_t x) noexcept {
  if (x == 0) return 0;
  std::uint32_t p = 1;
  while (p <= x / 2) p *= 2;
  return p;
}

/// Bytes of a multi-page ring of 2^order pages (ring-page-order).
constexpr std::size_t ring_bytes(unsigned order) noexcept { return xen_page_size << order; }

XENBUS_END_NAMESPACE
