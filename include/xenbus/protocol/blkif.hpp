// [freestanding] The blkif wire format (requests, responses, indirect segments) and the checks every request passes.
#pragma once

#include <xenbus/grant.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace blkif {

// Operation codes (BLKIF_OP_*), as the `operation` byte of a request carries them.
inline constexpr std::uint8_t op_read = 0;
inline constexpr std::uint8_t op_write = 1;
inline constexpr std::uint8_t op_write_barrier = 2;
inline constexpr std::uint8_t op_flush_diskcache = 3;
inline constexpr std::uint8_t op_reserved_1 = 4;
inline constexpr std::uint8_t op_discard = 5;
inline constexpr std::uint8_t op_indirect = 6;

// Response status codes (BLKIF_RSP_*).
inline constexpr std::int16_t rsp_okay = 0;
inline constexpr std::int16_t rsp_error = -1;
inline constexpr std::int16_t rsp_eopnotsupp = -2;

/// Segments a direct request carries (BLKIF_MAX_SEGMENTS_PER_REQUEST).
inline constexpr unsigned max_segments_per_request = 11;
/// Indirect pages one indirect request may name (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).
inline constexpr unsigned max_indirect_pages_per_request = 8;
/// The `flag` bit of a discard asking for a secure erase (BLKIF_DISCARD_SECURE).
inline constexpr std::uint8_t discard_secure = 1;
/// Bits of the backend's `info` node (VDISK_*).
inline constexpr std::uint32_t vdisk_cdrom = 0x1, vdisk_removable = 0x2, vdisk_readonly = 0x4;
/// Sector numbers, first_sect and last_sect count 512-byte sectors (blkif.h, without
/// feature-large-sector-size); a page holds 8 of them.
inline constexpr std::uint32_t sector_bytes = 512;
inline constexpr std::uint32_t sectors_per_page = xen_page_size / sector_bytes;

/// One data page of a request (struct blkif_request_segment): sectors first..last of it.
struct segment {
  grant_ref gref;
  std::uint8_t first_sect, last_sect;
};

/// The ring slot (struct blkif_request): a read, write, barrier or flush with its direct
/// segments. Discard and indirect requests share the slot; see request_discard and
/// request_indirect, which reinterpret a private copy of it.
struct request {
  std::uint8_t operation;
  std::uint8_t nr_segments;
  std::uint16_t handle;
  std::uint64_t id;             ///< the frontend's, echoed in the response
  std::uint64_t sector_number;  ///< 512-byte units
  segment seg[max_segments_per_request];
};

/// struct blkif_request_discard.
struct request_discard {
  std::uint8_t operation;  ///< op_discard
  std::uint8_t flag;       ///< discard_secure or 0
  std::uint16_t handle;
  std::uint64_t id;
  std::uint64_t sector_number;
  std::uint64_t nr_sectors;
};

/// struct blkif_request_indirect (the x86_64 layout: no trailing pad, unlike i386).
struct request_indirect {
  std::uint8_t operation;    ///< op_indirect
  std::uint8_t indirect_op;  ///< op_read or op_write
  std::uint16_t nr_segments;
  std::uint64_t id;
  std::uint64_t sector_number;
  std::uint16_t handle;
  grant_ref indirect_grefs[max_indirect_pages_per_request];
};

/// struct blkif_response.
struct response {
  std::uint64_t id;
  std::uint8_t operation;
  std::int16_t status;
};

/// Segments one indirect page holds (PAGE_SIZE / sizeof(struct blkif_request_segment)).
inline constexpr unsigned segments_per_indirect_page = xen_page_size / sizeof(segment);
/// Indirect pages a request of `n` segments names: ceil(n / segments_per_indirect_page).
constexpr unsigned indirect_pages(unsigned n) noexcept {
  return (n + segments_per_indirect_page - 1) / segments_per_indirect_page;
}
/// The most segments an indirect request can carry (8 pages of 512).
inline constexpr unsigned max_indirect_segments_limit = max_indirect_pages_per_request * segments_per_indirect_page;

// The x86_64 layout ("x86_64-abi", XEN_IO_PROTO_ABI_NATIVE there); checked against Xen's
// header below when it is installed.
static_assert(sizeof(segment) == 8 && offsetof(segment, first_sect) == 4 && offsetof(segment, last_sect) == 5);
static_assert(sizeof(request) == 112 && offsetof(request, id) == 8 && offsetof(request, sector_number) == 16 &&
              offsetof(request, seg) == 24);
static_assert(sizeof(request_discard) == 32 && offsetof(request_discard, id) == 8 &&
              offsetof(request_discard, nr_sectors) == 24);
static_assert(sizeof(request_indirect) == 64 && offsetof(request_indirect, id) == 8 &&
              offsetof(request_indirect, handle) == 24 && offsetof(request_indirect, indirect_grefs) == 28);
static_assert(sizeof(response) == 16 && offsetof(response, operation) == 8 && offsetof(response, status) == 10);
static_assert(sizeof(request_discard) <= sizeof(request) && sizeof(request_indirect) <= sizeof(request),
              "every request variant fits the slot");
static_assert(segments_per_indirect_page == 512);

/// Why a request was refused before any I/O. Each maps to the status the frontend gets.
enum class refusal : std::uint8_t {
  unknown_operation,       ///< an operation this backend does not know (EOPNOTSUPP)
  not_offered,             ///< flush, barrier, discard or indirect, which we did not offer (EOPNOTSUPP)
  bad_indirect_operation,  ///< an indirect request whose indirect_op is not read or write
  bad_segment_count,       ///< zero segments for a read or write, or more than allowed
  bad_segment,             ///< first_sect > last_sect, or last_sect beyond the page
  out_of_range,            ///< the sectors run past the end of the image (or overflow)
  misaligned,              ///< start or length not a multiple of the logical sector size
  read_only,               ///< a write or discard to a read-only image
};

constexpr std::string_view to_string(refusal r) noexcept {
  switch (r) {
    case refusal::unknown_operation:
      return "unknown operation";
    case refusal::not_offered:
      return "operation not offered";
    case refusal::bad_indirect_operation:
      return "indirect operation is not read or write";
    case refusal::bad_segment_count:
      return "bad segment count";
    case refusal::bad_segment:
      return "bad first_sect/last_sect";
    case refusal::out_of_range:
      return "sector range outside the image";
    case refusal::misaligned:
      return "not aligned to the sector size";
    case refusal::read_only:
      return "write to a read-only image";
  }
  return "(invalid)";
}

/// The status a refused request is answered with: EOPNOTSUPP for what we do not do at
/// all (Linux blkback answers unknown operations so), BLKIF_RSP_ERROR otherwise.
constexpr std::int16_t status_of(refusal r) noexcept {
  return r == refusal::unknown_operation || r == refusal::not_offered ? rsp_eopnotsupp : rsp_error;
}

/// What the backend offered and what the image is: the bounds every request is held to.
struct limits {
  std::uint64_t capacity_sectors = 0;       ///< image size in 512-byte sectors
  std::uint32_t align_sectors = 1;          ///< logical sector size / 512 (a power of two)
  std::uint32_t max_indirect_segments = 0;  ///< feature-max-indirect-segments; 0: not offered
  bool read_only = false;
  bool flush = false;           ///< feature-flush-cache offered
  bool barrier = false;         ///< feature-barrier offered
  bool discard = false;         ///< feature-discard offered
  bool discard_secure = false;  ///< discard-secure offered
};

/// What a request asks for, once checked.
enum class action : std::uint8_t {
  read,
  write,
  write_flush,  ///< write the data (if any), then flush: a barrier, or a flush carrying data
  flush,        ///< a flush with no data
  discard,
};

/// A request after the checks: everything the I/O needs, in private memory. For an indirect
/// request the segments are still in the frontend's indirect pages: copy them out once and
/// pass them to check_indirect_segments() before using nr_sectors.
struct checked_request {
  std::uint64_t id = 0;
  std::uint8_t operation = 0;  ///< echoed in the response (an indirect request's indirect_op, as blkfront expects)
  action what = action::read;
  bool indirect = false;
  bool secure = false;  ///< discard: a secure erase was asked for and offered
  std::uint16_t nr_segments = 0;
  std::uint8_t nr_indirect_pages = 0;
  std::uint64_t sector = 0;      ///< first sector (512-byte units)
  std::uint64_t nr_sectors = 0;  ///< sectors moved or discarded (indirect: after check_indirect_segments)
  std::array<segment, max_segments_per_request> seg{};  ///< direct segments
  std::array<grant_ref, max_indirect_pages_per_request> indirect_grefs{};
};

/// The response a request gets: its id, its operation as blkfront expects it back, a status.
constexpr response make_response(std::uint64_t id, std::uint8_t operation, std::int16_t status) noexcept {
  response r{};
  r.id = id;
  r.operation = operation;
  r.status = status;
  return r;
}

namespace detail {
/// Sectors a segment moves, or 0 when first_sect/last_sect are not a run within one page.
constexpr std::uint32_t segment_sectors(const segment& s) noexcept {
  if (s.last_sect >= sectors_per_page || s.first_sect > s.last_sect) return 0;
  return std::uint32_t{s.last_sect} - s.first_sect + 1u;
}
/// [sector, sector + n) lies within the image and is aligned (no overflow: checked by subtraction).
constexpr result<void, refusal> check_range(std::uint64_t sector, std::uint64_t n, const limits& l) noexcept {
  if (sector > l.capacity_sectors || n > l.capacity_sectors - sector) return unexpected{refusal::out_of_range};
  const std::uint64_t mask = std::uint64_t{l.align_sectors == 0 ? 1u : l.align_sectors} - 1;
  if ((sector & mask) != 0 || (n & mask) != 0) return unexpected{refusal::misaligned};
  return {};
}
}  // namespace detail

/// The id and the operation to answer with, whatever the request holds: what a refusal is
/// answered with, before or after the rest was checked.
inline response refuse(const request& r, refusal why) noexcept {
  std::uint8_t op = r.operation;
  if (op == op_indirect) {
    request_indirect ind;
    std::memcpy(&ind, &r, sizeof ind);  // the slot's other view: a byte copy, no aliasing
    op = ind.indirect_op;
  }
  return make_response(r.id, op, status_of(why));
}

/// Checks a private copy of a ring slot against what was offered: the operation, the
/// segment count, each direct segment's first/last sector, the sector range (with overflow)
/// and its alignment, and writes to a read-only image. The slot is read once, here.
inline result<checked_request, refusal> check(const request& r, const limits& l) noexcept {
  checked_request c;
  c.id = r.id;
  c.operation = r.operation;
  c.sector = r.sector_number;
  switch (r.operation) {
    case op_read:
    case op_write:
    case op_write_barrier:
    case op_flush_diskcache: {
      const bool carries_flush = r.operation == op_write_barrier || r.operation == op_flush_diskcache;
      if (r.operation == op_write_barrier && !l.barrier) return unexpected{refusal::not_offered};
      if (r.operation == op_flush_diskcache && !l.flush) return unexpected{refusal::not_offered};
      const unsigned n = r.nr_segments;
      // A read or write moves data; a flush or barrier may come alone (Linux's REQ_PREFLUSH).
      if (n > max_segments_per_request || (n == 0 && !carries_flush)) return unexpected{refusal::bad_segment_count};
      std::uint64_t sectors = 0;
      for (unsigned i = 0; i < n; ++i) {
        const std::uint32_t s = detail::segment_sectors(r.seg[i]);
        if (s == 0) return unexpected{refusal::bad_segment};
        c.seg[i] = r.seg[i];
        sectors += s;
      }
      c.nr_segments = static_cast<std::uint16_t>(n);
      c.nr_sectors = sectors;
      if (n == 0) {
        c.what = action::flush;
        return c;  // no data: no range to check
      }
      c.what = r.operation == op_read ? action::read : r.operation == op_write ? action::write : action::write_flush;
      if (auto k = detail::check_range(c.sector, c.nr_sectors, l); !k) return unexpected{k.error()};
      if (c.what != action::read && l.read_only) return unexpected{refusal::read_only};
      return c;
    }
    case op_discard: {
      if (!l.discard) return unexpected{refusal::not_offered};
      request_discard d;
      std::memcpy(&d, &r, sizeof d);  // the slot's other view: a byte copy, no aliasing
      c.what = action::discard;
      c.nr_sectors = d.nr_sectors;
      c.secure = (d.flag & discard_secure) != 0 && l.discard_secure;  // ignored unless offered (blkif.h)
      if (auto k = detail::check_range(c.sector, c.nr_sectors, l); !k) return unexpected{k.error()};
      if (l.read_only) return unexpected{refusal::read_only};
      return c;
    }
    case op_indirect: {
      if (l.max_indirect_segments == 0) return unexpected{refusal::not_offered};
      request_indirect ind;
      std::memcpy(&ind, &r, sizeof ind);
      c.operation = ind.indirect_op;
      c.indirect = true;
      if (ind.indirect_op != op_read && ind.indirect_op != op_write) return unexpected{refusal::bad_indirect_operation};
      const unsigned n = ind.nr_segments;
      const unsigned max =
          l.max_indirect_segments < max_indirect_segments_limit ? l.max_indirect_segments : max_indirect_segments_limit;
      if (n == 0 || n > max) return unexpected{refusal::bad_segment_count};
      c.what = ind.indirect_op == op_read ? action::read : action::write;
      if (c.what == action::write && l.read_only) return unexpected{refusal::read_only};
      c.nr_segments = static_cast<std::uint16_t>(n);
      c.nr_indirect_pages = static_cast<std::uint8_t>(indirect_pages(n));
      for (unsigned i = 0; i < c.nr_indirect_pages; ++i) c.indirect_grefs[i] = ind.indirect_grefs[i];
      return c;
    }
    default:
      return unexpected{refusal::unknown_operation};
  }
}

/// Checks the segments of an indirect request, copied once out of its indirect pages into
/// `segs` (exactly c.nr_segments of them), and sets c.nr_sectors: each segment's
/// first/last sector, then the whole range and its alignment.
inline result<void, refusal> check_indirect_segments(checked_request& c, std::span<const segment> segs,
                                                     const limits& l) noexcept {
  if (segs.size() != c.nr_segments) return unexpected{refusal::bad_segment_count};
  std::uint64_t sectors = 0;
  for (const segment& s : segs) {
    const std::uint32_t n = detail::segment_sectors(s);
    if (n == 0) return unexpected{refusal::bad_segment};
    sectors += n;
  }
  c.nr_sectors = sectors;
  return detail::check_range(c.sector, c.nr_sectors, l);
}

}  // namespace blkif
XENBUS_END_NAMESPACE

// Our layouts against Xen's own, where libxen-dev installed it.
#if defined(__has_include)
#if __has_include(<xen/io/blkif.h>) && defined(__x86_64__)
extern "C" {
#include <xen/io/blkif.h>
}
#define XENBUS_BLKIF_SAME_FIELD(ours, theirs, field)                                                  \
  static_assert(offsetof(::xenbus::blkif::ours, field) == offsetof(struct theirs, field) &&           \
                    sizeof(::xenbus::blkif::ours::field) == sizeof(((struct theirs*)nullptr)->field), \
                "xenbus::blkif::" #ours "::" #field " differs from Xen's " #theirs)
static_assert(sizeof(::xenbus::blkif::request) == sizeof(struct blkif_request));
static_assert(sizeof(::xenbus::blkif::request_discard) == sizeof(struct blkif_request_discard));
static_assert(sizeof(::xenbus::blkif::request_indirect) == sizeof(struct blkif_request_indirect));
static_assert(sizeof(::xenbus::blkif::response) == sizeof(struct blkif_response));
static_assert(sizeof(::xenbus::blkif::segment) == sizeof(struct blkif_request_segment));
XENBUS_BLKIF_SAME_FIELD(segment, blkif_request_segment, gref);
XENBUS_BLKIF_SAME_FIELD(segment, blkif_request_segment, first_sect);
XENBUS_BLKIF_SAME_FIELD(segment, blkif_request_segment, last_sect);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, operation);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, nr_segments);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, handle);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, id);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, sector_number);
XENBUS_BLKIF_SAME_FIELD(request, blkif_request, seg);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, operation);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, flag);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, handle);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, id);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, sector_number);
XENBUS_BLKIF_SAME_FIELD(request_discard, blkif_request_discard, nr_sectors);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, operation);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, indirect_op);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, nr_segments);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, id);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, sector_number);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, handle);
XENBUS_BLKIF_SAME_FIELD(request_indirect, blkif_request_indirect, indirect_grefs);
XENBUS_BLKIF_SAME_FIELD(response, blkif_response, id);
XENBUS_BLKIF_SAME_FIELD(response, blkif_response, operation);
XENBUS_BLKIF_SAME_FIELD(response, blkif_response, status);
#undef XENBUS_BLKIF_SAME_FIELD
static_assert(::xenbus::blkif::op_read == BLKIF_OP_READ && ::xenbus::blkif::op_write == BLKIF_OP_WRITE &&
              ::xenbus::blkif::op_write_barrier == BLKIF_OP_WRITE_BARRIER &&
              ::xenbus::blkif::op_flush_diskcache == BLKIF_OP_FLUSH_DISKCACHE &&
              ::xenbus::blkif::op_reserved_1 == BLKIF_OP_RESERVED_1 &&
              ::xenbus::blkif::op_discard == BLKIF_OP_DISCARD && ::xenbus::blkif::op_indirect == BLKIF_OP_INDIRECT);
static_assert(::xenbus::blkif::rsp_okay == BLKIF_RSP_OKAY && ::xenbus::blkif::rsp_error == BLKIF_RSP_ERROR &&
              ::xenbus::blkif::rsp_eopnotsupp == BLKIF_RSP_EOPNOTSUPP);
static_assert(::xenbus::blkif::max_segments_per_request == BLKIF_MAX_SEGMENTS_PER_REQUEST &&
              ::xenbus::blkif::max_indirect_pages_per_request == BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST &&
              ::xenbus::blkif::discard_secure == BLKIF_DISCARD_SECURE);
static_assert(::xenbus::blkif::vdisk_cdrom == VDISK_CDROM && ::xenbus::blkif::vdisk_removable == VDISK_REMOVABLE &&
              ::xenbus::blkif::vdisk_readonly == VDISK_READONLY);
#endif
#endif
