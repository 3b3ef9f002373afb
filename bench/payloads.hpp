// The messages every implementation carries: real blkif and netif-tx requests and responses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
}

namespace xbench {

/// One payload: its request and response types and how the benchmarks fill them (the
/// same field values as XP_FILL and XP_ECHO in xen_peer.c).
struct blkif_payload {
  using request = blkif_request_t;
  using response = blkif_response_t;
  static void fill(request& r, std::uint64_t seq) noexcept {
    std::memset(&r, 0, sizeof r);
    r.operation = BLKIF_OP_READ;
    r.nr_segments = 1;
    r.handle = 0;
    r.id = seq;
    r.sector_number = seq * 8;
    r.seg[0].gref = static_cast<grant_ref_t>(seq);
    r.seg[0].first_sect = 0;
    r.seg[0].last_sect = 7;
  }
  static void echo(response& p, const request& q) noexcept {
    p.id = q.id;
    p.operation = q.operation;
    p.status = BLKIF_RSP_OKAY;
  }
  static bool id_matches(const response& p, std::uint64_t seq) noexcept { return p.id == seq; }
};

struct netif_tx_payload {
  using request = netif_tx_request_t;
  using response = netif_tx_response_t;
  static void fill(request& r, std::uint64_t seq) noexcept {
    r.gref = static_cast<grant_ref_t>(seq);
    r.offset = 0;
    r.flags = 0;
    r.id = static_cast<std::uint16_t>(seq);
    r.size = 1514;
  }
  static void echo(response& p, const request& q) noexcept {
    p.id = q.id;
    p.status = NETIF_RSP_OKAY;
  }
  static bool id_matches(const response& p, std::uint64_t seq) noexcept {
    return p.id == static_cast<std::uint16_t>(seq);
  }
};

/// Slots of a ring.h ring of `bytes` bytes for this payload, as __CONST_RING_SIZE
/// computes it: the slots that fit after the 64-byte header, rounded down to a power
/// of two.  The boost reference gets the same capacity.
template <class P>
constexpr std::size_t ring_slots(std::size_t bytes) {
  constexpr std::size_t slot = sizeof(typename P::request) > sizeof(typename P::response)
                                   ? sizeof(typename P::request)
                                   : sizeof(typename P::response);
  std::size_t n = (bytes - 64) / slot;
  std::size_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

static_assert(ring_slots<blkif_payload>(4096) == 32);
static_assert(ring_slots<netif_tx_payload>(4096) == 256);
static_assert(ring_slots<blkif_payload>(16384) == 128);

}  // namespace xbench
