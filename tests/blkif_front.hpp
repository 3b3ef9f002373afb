// The test frontends' blkif side, whatever the machine: request building, the data patterns,
// and synchronous I/O through the library's frontend driver with a small pool of granted
// data pages. blkback_support.hpp uses it over the POSIX machine, the lab's
// xenbus-xenlab-blkfront (tests/xenlab/blkfront.cpp) over a real Xen.
#pragma once

#include <xenbus/grant.hpp>
#include <xenbus/protocol/blkif.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace blkfront {

using namespace xenbus;

/// A direct request with the given segments (at most max_segments_per_request are kept).
inline blkif::request rw(std::uint8_t op, std::uint64_t id, std::uint64_t sector, std::vector<blkif::segment> segs) {
  blkif::request r{};
  r.operation = op;
  r.nr_segments = static_cast<std::uint8_t>(std::min<std::size_t>(segs.size(), blkif::max_segments_per_request));
  r.handle = 0;
  r.id = id;
  r.sector_number = sector;
  for (std::size_t i = 0; i < segs.size() && i < blkif::max_segments_per_request; ++i) r.seg[i] = segs[i];
  return r;
}

/// Fills `n` bytes at `p` with a pattern that depends on `seed` and the position.
inline void fill(std::byte* p, std::size_t n, unsigned seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((i * 131 + seed * 7919 + (i >> 9)) & 0xff);
}

/// The bytes of 512-byte sector `sector` under `seed`: each sector of a disk differs, so a
/// request that lands at the wrong offset is caught (the lab's scenario computes the same
/// bytes in dom0 with `xenbus-xenlab-blkfront --pattern`).
inline void sector_pattern(std::byte* out, std::uint64_t sector, std::uint32_t seed) {
  std::uint32_t x = static_cast<std::uint32_t>(sector * 0x9e3779b1u) ^ (seed * 0x85ebca77u) ^ 0x2545f491u;
  for (std::size_t i = 0; i < blkif::sector_bytes; ++i) {
    x ^= x << 13;  // xorshift32: never 0 from a non-zero start, and x starts non-zero for most inputs
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<std::byte>((x >> 11) & 0xff);
  }
}

/// Synchronous blkif I/O through a connected frontend driver `F` (frontend<vbd, ...>): one
/// request at a time on queue 0, over `pages` data pages granted writable to the backend
/// (one request carries at most max_segments_per_request pages). The buffer is the pages'
/// mapping: requests read into it and write from it.
template <class F, grant_sharer G>
class client {
 public:
  static constexpr unsigned pages = blkif::max_segments_per_request;
  static constexpr unsigned max_sectors = pages * blkif::sectors_per_page;  ///< one request's bound

  /// Grants the data pages to `backend` (writable: reads land in them); nothing if the
  /// grants cannot be made.
  static std::optional<client> make(F& fe, G& grants, domid_t backend) {
    std::array<grant_ref, pages> refs{};
    auto p = grants.share(backend, refs, true);
    if (!p) return std::nullopt;
    return client(fe, std::move(*p), refs);
  }

  /// A request's end: the response's status, or why none came.
  struct outcome {
    std::optional<std::int16_t> status;
    std::string why;
  };

  /// The data buffer: max_sectors sectors.
  std::byte* data() noexcept { return static_cast<std::byte*>(pages_.data()); }

  /// One request: `op` on `nsect` sectors (1..max_sectors; 0 for a flush) from `sector`,
  /// through data(). `wait(ms)` sleeps until an event may have come (the caller delivers
  /// event-channel ports and watch events to the driver there) and returns false to give up.
  /// Returns the response's status, or why none came (timeout, ring broken, not connected,
  /// a response with another id).
  template <class Wait>
  outcome io(std::uint8_t op, std::uint64_t sector, unsigned nsect, Wait&& wait, int timeout_ms = 30000) {
    if (!fe_->connected()) return outcome{std::nullopt, std::string("not connected")};
    if (nsect > max_sectors) return outcome{std::nullopt, std::string("too many sectors for one request")};
    std::vector<blkif::segment> segs;
    for (unsigned done = 0, pg = 0; done < nsect; ++pg) {
      const unsigned n = std::min(nsect - done, blkif::sectors_per_page);
      segs.push_back(blkif::segment{refs_[pg], 0, static_cast<std::uint8_t>(n - 1)});
      done += n;
    }
    const blkif::request req = rw(op, next_id_++, sector, std::move(segs));
    auto& ring = *fe_->queue_at(0).ring;
    if (!ring.produce(req)) return outcome{std::nullopt, std::string("ring full or broken")};
    if (!fe_->push(0)) return outcome{std::nullopt, std::string("push: ring broken")};
    for (int waited = 0;;) {
      auto r = fe_->take_response(0);
      if (!r) return outcome{std::nullopt, std::string("ring broken: ") + std::string(to_string(r.error()))};
      if (*r) {
        if ((*r)->id != req.id)
          return outcome{std::nullopt,
                         "response id " + std::to_string((*r)->id) + ", wanted " + std::to_string(req.id)};
        ++answered_;
        return outcome{(*r)->status, {}};
      }
      auto more = ring.final_check();
      if (!more) return outcome{std::nullopt, std::string("ring broken: ") + std::string(to_string(more.error()))};
      if (*more) continue;
      if (waited >= timeout_ms)
        return outcome{std::nullopt, "no response in " + std::to_string(timeout_ms / 1000) + " s"};
      if (!wait(100))
        return outcome{std::nullopt, std::string("gave up waiting (driver ") + std::string(to_string(fe_->own())) +
                                         ", " + fe_->reason_text() + ")"};
      waited += 100;
    }
  }

  /// Writes sectors [first, first + count) with sector_pattern(seed), request by request.
  /// Returns what went wrong (empty: nothing).
  template <class Wait>
  std::string write_pattern(std::uint64_t first, std::uint64_t count, std::uint32_t seed, Wait&& wait) {
    for (std::uint64_t s = first; s < first + count;) {
      const auto n = static_cast<unsigned>(std::min<std::uint64_t>(max_sectors, first + count - s));
      for (unsigned i = 0; i < n; ++i) sector_pattern(data() + i * blkif::sector_bytes, s + i, seed);
      if (auto r = ok(io(blkif::op_write, s, n, wait), "write", s); !r.empty()) return r;
      s += n;
    }
    return {};
  }
  /// Reads sectors [first, first + count) and compares them with sector_pattern(seed);
  /// the error names the first sector that differs.
  template <class Wait>
  std::string check_pattern(std::uint64_t first, std::uint64_t count, std::uint32_t seed, Wait&& wait) {
    std::array<std::byte, blkif::sector_bytes> want{};
    for (std::uint64_t s = first; s < first + count;) {
      const auto n = static_cast<unsigned>(std::min<std::uint64_t>(max_sectors, first + count - s));
      if (auto r = ok(io(blkif::op_read, s, n, wait), "read", s); !r.empty()) return r;
      for (unsigned i = 0; i < n; ++i) {
        sector_pattern(want.data(), s + i, seed);
        if (std::memcmp(want.data(), data() + i * blkif::sector_bytes, want.size()) != 0)
          return "sector " + std::to_string(s + i) + " differs from the pattern of seed " + std::to_string(seed);
      }
      s += n;
    }
    return {};
  }
  /// A flush (feature-flush-cache); a backend without it answers EOPNOTSUPP, reported.
  template <class Wait>
  std::string flush(Wait&& wait) {
    return ok(io(blkif::op_flush_diskcache, 0, 0, wait), "flush", 0);
  }

  /// The grant of data page i (< pages), for a request built by hand.
  grant_ref ref(unsigned i) const noexcept { return refs_[i]; }
  /// Responses taken so far.
  std::uint64_t answered() const noexcept { return answered_; }

 private:
  client(F& fe, typename G::shared_pages p, const std::array<grant_ref, pages>& refs)
      : fe_{&fe}, pages_{std::move(p)}, refs_{refs} {}

  static std::string ok(const outcome& r, const char* what, std::uint64_t sector) {
    if (!r.status) return std::string(what) + " at sector " + std::to_string(sector) + ": " + r.why;
    if (*r.status != blkif::rsp_okay)
      return std::string(what) + " at sector " + std::to_string(sector) + ": status " + std::to_string(*r.status);
    return {};
  }

  F* fe_;
  typename G::shared_pages pages_;
  std::array<grant_ref, pages> refs_;
  std::uint64_t next_id_ = 1;
  std::uint64_t answered_ = 0;
};

}  // namespace blkfront
