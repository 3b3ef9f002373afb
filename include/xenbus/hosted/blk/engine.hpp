// [hosted] The blkif engine: one request copy in, its grants mapped or grant-copied, the I/O done on a block_image, one
// response out.
#pragma once

#include <xenbus/grant.hpp>
#include <xenbus/hosted/blk/image.hpp>
#include <xenbus/protocol/blkif.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace blk {

/// Most grant references one map call is given (both grant adapters map at most 64 at once).
inline constexpr std::size_t map_batch = 64;

/// How a request's data reaches the guest's pages.
enum class data_path : std::uint8_t {
  map,   ///< map the data grants and do the I/O straight through the mappings (persistent grants possible)
  copy,  ///< do the I/O on a private bounce buffer and grant-copy it to or from the guest's pages
};

constexpr std::string_view to_string(data_path p) noexcept { return p == data_path::copy ? "grant copy" : "grant map"; }

/// How one request ended, beyond its status: what the log and the counters report.
enum class outcome : std::uint8_t {
  done,           ///< answered BLKIF_RSP_OKAY
  refused,        ///< failed the checks before any I/O (see the refusal)
  bad_grant,      ///< a data or indirect page could not be mapped or copied (see the grant error)
  io_failed,      ///< the image reported an error (see the image error)
  not_supported,  ///< the image cannot discard here: BLKIF_RSP_EOPNOTSUPP
};

/// A response and why it says what it says.
struct served {
  blkif::response rsp;
  outcome what = outcome::done;
  blkif::refusal refusal{};
  grant_error grant{grant_errc::bad_ref};
  image_error image{image_errc::io};
};

/// Counters of one queue (never reset while it is connected).
struct queue_stats {
  std::uint64_t requests = 0, reads = 0, writes = 0, flushes = 0, discards = 0;
  std::uint64_t sectors_read = 0, sectors_written = 0;
  std::uint64_t refused = 0, bad_grants = 0, io_errors = 0;
  std::uint64_t persistent_hits = 0, persistent_maps = 0;  ///< data pages found in / added to the cache
  std::uint64_t grant_copies = 0;                          ///< copy ops done (data_path::copy)
};

/// Serves the requests of one queue of a blkif device: each private copy of a ring slot is
/// checked (blkif::check), its indirect pages mapped and their segments copied out once and
/// checked, its data pages mapped (readable for a write, writable for a read), the image read
/// or written straight through the mappings, and only then is a response made. So a response
/// is never sent before the data is where the request's semantics put it, and a request that
/// fails any check touches neither the image nor a guest page.
///
/// With persistent grants (the frontend wrote feature-persistent = 1, and we offered it),
/// data and indirect pages stay mapped writable in a cache of at most `persistent_bound`
/// pages, dropped with the server; a page that does not fit is mapped for the one request.
///
/// With data_path::copy (G must model grant_copier, else the server maps), nothing is
/// mapped: the indirect pages' segments are grant-copied into the private segment list, a
/// write's data is grant-copied into a bounce buffer and then written to the image, a read
/// is read into the bounce buffer and then grant-copied out. Each segment is one copy op
/// with its own status; any failed op fails the request with BLKIF_RSP_ERROR (for a write,
/// before anything reaches the image). Persistent grants are a mapping cache, so there are
/// none in copy mode: the backend must not offer feature-persistent then.
///
/// Memory: the segment copy holds at most max_indirect_segments entries, the per-request
/// mappings at most ceil(segments / map_batch) + 1 objects, the cache `persistent_bound`
/// mappings; all are sized once in the constructor except the cache, which grows to its bound.
/// In copy mode the bounce buffer is max(11, max_indirect_segments) pages (1 MiB per queue
/// with the default 256 indirect segments), allocated once in the constructor.
template <grant_mapper G, block_image I>
class request_server {
 public:
  using mapping = typename G::mapping;

  request_server(G& grants, I& image, domid_t frontend, const blkif::limits& limits, std::size_t persistent_bound = 0,
                 data_path path = data_path::map)
      : grants_{&grants},
        image_{&image},
        frontend_{frontend},
        limits_{limits},
        persistent_bound_{persistent_bound},
        path_{grant_copier<G> ? path : data_path::map} {
    const std::size_t max_segs = std::max<std::size_t>(blkif::max_segments_per_request, limits.max_indirect_segments);
    segs_.reserve(max_segs);
    if (path_ == data_path::copy) {
      persistent_bound_ = 0;  // a persistent grant is a kept mapping: nothing to keep here
      bounce_.resize(max_segs * xen_page_size);
      ops_.reserve(max_segs);
      return;
    }
    pages_.reserve(max_segs);
    bufs_.reserve(max_segs);
    maps_.reserve(max_segs / map_batch + 2);
  }

  request_server(request_server&&) noexcept = default;
  request_server& operator=(request_server&&) = delete;

  const blkif::limits& limits() const noexcept { return limits_; }
  const queue_stats& stats() const noexcept { return stats_; }
  std::size_t persistent_pages() const noexcept { return cache_.size(); }
  /// The data path in use (map when copy was asked of a G that cannot copy).
  data_path path() const noexcept { return path_; }

  /// Serves one request, given as the private copy of its ring slot.
  served serve(const blkif::request& slot) {
    ++stats_.requests;
    auto c = blkif::check(slot, limits_);
    if (!c) return refuse(slot, c.error());
    served s = run(*c);
    maps_.clear();  // the request's own mappings end here, after the I/O
    return s;
  }

 private:
  served run(blkif::checked_request& c) {
    served s;
    s.rsp = blkif::make_response(c.id, c.operation, blkif::rsp_okay);
    switch (c.what) {
      case blkif::action::flush:
        ++stats_.flushes;
        return finish(s, image_->flush());
      case blkif::action::discard: {
        ++stats_.discards;
        return finish(s, image_->discard(c.sector * blkif::sector_bytes, c.nr_sectors * blkif::sector_bytes, c.secure));
      }
      case blkif::action::read:
      case blkif::action::write:
      case blkif::action::write_flush:
        break;
    }
    // The segments, in private memory: the direct ones from the slot copy, the indirect ones
    // copied once out of their pages and checked here (the frontend may change the pages).
    segs_.clear();
    if (c.indirect) {
      if (auto g = copy_indirect_segments(c); !g) return grant_failed(s, g.error());
      if (auto k = blkif::check_indirect_segments(c, segs_, limits_); !k) {
        s.rsp.status = blkif::status_of(k.error());
        s.what = outcome::refused;
        s.refusal = k.error();
        ++stats_.refused;
        return s;
      }
    } else {
      segs_.assign(c.seg.begin(), c.seg.begin() + c.nr_segments);
    }
    const bool reading = c.what == blkif::action::read;
    if (path_ == data_path::copy) return copy_io(s, c, reading);
    // A read writes into the guest's pages: they must be granted writable.
    if (auto g = map_pages(segs_, reading); !g) return grant_failed(s, g.error());
    bufs_.clear();
    for (std::size_t i = 0; i < segs_.size(); ++i) {
      std::byte* at = pages_[i] + std::size_t{segs_[i].first_sect} * blkif::sector_bytes;
      const std::size_t len = (std::size_t{segs_[i].last_sect} - segs_[i].first_sect + 1) * blkif::sector_bytes;
      if (!bufs_.empty() && bufs_.back().data + bufs_.back().size == at)
        bufs_.back().size += len;  // contiguous in our address space: one buffer
      else
        bufs_.push_back(io_buffer{at, len});
    }
    return image_io(s, c, reading, bufs_);
  }

  // The image read or write (and the flush a write_flush asks for) into or out of `bufs`.
  served image_io(served s, const blkif::checked_request& c, bool reading, std::span<const io_buffer> bufs) {
    const std::uint64_t offset = c.sector * blkif::sector_bytes;
    if (reading) {
      ++stats_.reads;
      stats_.sectors_read += c.nr_sectors;
      return finish(s, image_->read(offset, bufs));
    }
    ++stats_.writes;
    stats_.sectors_written += c.nr_sectors;
    auto w = image_->write(offset, bufs);
    if (!w || c.what != blkif::action::write_flush) return finish(s, w);
    ++stats_.flushes;
    return finish(s, image_->flush());  // a barrier or a flush with data: durable before the answer
  }

  // Copy mode: segs_ (already checked) packed back to back in the bounce buffer. A write's
  // data is copied in first and reaches the image only if every op succeeded; a read's is
  // copied out once the image filled the buffer.
  served copy_io(served s, const blkif::checked_request& c, bool reading) {
    ops_.clear();
    std::size_t at = 0;
    for (const auto& seg : segs_) {
      const std::size_t len = (std::size_t{seg.last_sect} - seg.first_sect + 1) * blkif::sector_bytes;
      // The bounce buffer holds max_segs pages and each checked segment is at most one page.
      ops_.push_back(grant_copy_op{bounce_.data() + at, frontend_, seg.gref,
                                   static_cast<std::uint16_t>(std::size_t{seg.first_sect} * blkif::sector_bytes),
                                   static_cast<std::uint16_t>(len),
                                   reading ? copy_dir::to_grant : copy_dir::from_grant});
      at += len;
    }
    const io_buffer buf{bounce_.data(), at};
    if (!reading) {
      if (auto g = grant_copy(); !g) return grant_failed(s, g.error());
      return image_io(s, c, false, std::span<const io_buffer>(&buf, 1));
    }
    s = image_io(s, c, true, std::span<const io_buffer>(&buf, 1));
    if (s.what != outcome::done) return s;
    if (auto g = grant_copy(); !g) return grant_failed(s, g.error());
    return s;
  }

  // Runs ops_; the first failed op's error (or the call's) if any failed.
  result<void, grant_error> grant_copy() {
    if constexpr (grant_copier<G>) {
      stats_.grant_copies += ops_.size();
      auto r = grants_->copy(std::span<grant_copy_op>(ops_));
      if (!r) return r;
      for (const auto& op : ops_)
        if (!op.status) return op.status;
      return {};
    } else {
      return unexpected{grant_error{grant_errc::unavailable}};  // unreachable: path_ is map
    }
  }

  // Copies exactly nr_segments entries out of the request's indirect pages into segs_:
  // through mappings, or by grant copy in copy mode.
  result<void, grant_error> copy_indirect_segments(const blkif::checked_request& c) {
    if (path_ == data_path::copy) {
      ops_.clear();
      segs_.resize(c.nr_segments);
      for (unsigned i = 0; i < c.nr_indirect_pages; ++i) {
        const std::size_t first = std::size_t{i} * blkif::segments_per_indirect_page;
        const std::size_t n = std::min<std::size_t>(blkif::segments_per_indirect_page, c.nr_segments - first);
        ops_.push_back(grant_copy_op{reinterpret_cast<std::byte*>(segs_.data() + first), frontend_, c.indirect_grefs[i],
                                     0, static_cast<std::uint16_t>(n * sizeof(blkif::segment)), copy_dir::from_grant});
      }
      auto g = grant_copy();
      if (!g) segs_.clear();
      return g;
    }
    std::array<blkif::segment, blkif::max_indirect_pages_per_request> page_refs{};
    for (unsigned i = 0; i < c.nr_indirect_pages; ++i) page_refs[i] = blkif::segment{c.indirect_grefs[i], 0, 0};
    if (auto g = map_pages(std::span<const blkif::segment>(page_refs.data(), c.nr_indirect_pages), false); !g) return g;
    for (unsigned i = 0; i < c.nr_indirect_pages; ++i) {
      const std::size_t first = std::size_t{i} * blkif::segments_per_indirect_page;
      const std::size_t n = std::min<std::size_t>(blkif::segments_per_indirect_page, c.nr_segments - first);
      const std::size_t at = segs_.size();
      segs_.resize(at + n);
      // One copy out of the shared page; only the copy is checked and used.
      std::memcpy(segs_.data() + at, pages_[i], n * sizeof(blkif::segment));
    }
    return {};
  }

  // Fills pages_[i] with our address of the page segs[i].gref names: from the persistent
  // cache, or newly mapped (in batches of map_batch; each batch's mapping is kept in maps_
  // until the request ends). Any reference that cannot be mapped fails the whole request.
  result<void, grant_error> map_pages(std::span<const blkif::segment> segs, bool writable) {
    pages_.assign(segs.size(), nullptr);
    std::array<grant_ref, map_batch> refs{};
    std::array<std::size_t, map_batch> which{};
    std::size_t n = 0;
    auto flush_batch = [&]() -> result<void, grant_error> {
      if (n == 0) return {};
      auto m = grants_->map(frontend_, std::span<const grant_ref>(refs.data(), n), writable);
      if (!m) return unexpected{m.error()};
      auto* base = static_cast<std::byte*>(m->data());
      for (std::size_t k = 0; k < n; ++k) pages_[which[k]] = base + k * xen_page_size;
      maps_.push_back(std::move(*m));
      n = 0;
      return {};
    };
    for (std::size_t i = 0; i < segs.size(); ++i) {
      if (std::byte* p = persistent_page(segs[i].gref)) {
        pages_[i] = p;
        continue;
      }
      refs[n] = segs[i].gref;
      which[n] = i;
      if (++n == map_batch)
        if (auto f = flush_batch(); !f) return f;
    }
    return flush_batch();
  }

  // The page of `ref` from the persistent cache, mapping it writable into the cache while
  // there is room; nullptr when persistent grants are off, the cache is full, or the map
  // failed (the caller then maps it for this request alone, with the access it needs).
  std::byte* persistent_page(grant_ref ref) {
    if (persistent_bound_ == 0) return nullptr;
    if (auto it = cache_.find(ref); it != cache_.end()) {
      ++stats_.persistent_hits;
      return static_cast<std::byte*>(it->second.data());
    }
    if (cache_.size() >= persistent_bound_) return nullptr;
    // blkif.h: a persistent frontend grants every page writable, since later requests reuse it.
    auto m = grants_->map(frontend_, std::span<const grant_ref>(&ref, 1), true);
    if (!m) return nullptr;
    ++stats_.persistent_maps;
    auto [it, inserted] = cache_.emplace(ref, std::move(*m));
    (void)inserted;
    return static_cast<std::byte*>(it->second.data());
  }

  served refuse(const blkif::request& slot, blkif::refusal why) {
    ++stats_.refused;
    served s;
    s.rsp = blkif::refuse(slot, why);
    s.what = outcome::refused;
    s.refusal = why;
    return s;
  }
  served grant_failed(served s, grant_error e) {
    ++stats_.bad_grants;
    s.rsp.status = blkif::rsp_error;
    s.what = outcome::bad_grant;
    s.grant = e;
    return s;
  }
  served finish(served s, const result<void, image_error>& r) {
    if (r) return s;
    s.image = r.error();
    if (r.error().code == image_errc::not_supported) {
      s.rsp.status = blkif::rsp_eopnotsupp;
      s.what = outcome::not_supported;
    } else {
      ++stats_.io_errors;
      s.rsp.status = blkif::rsp_error;
      s.what = outcome::io_failed;
    }
    return s;
  }

  G* grants_;
  I* image_;
  domid_t frontend_;
  blkif::limits limits_;
  std::size_t persistent_bound_;
  data_path path_;
  std::vector<blkif::segment> segs_;              // this request's segments, private copies
  std::vector<std::byte> bounce_;                 // copy mode: max_segs pages, the request's data
  std::vector<grant_copy_op> ops_;                // copy mode: this request's copy ops
  std::vector<std::byte*> pages_;                 // our address of each segment's page
  std::vector<io_buffer> bufs_;                   // the I/O's buffers, adjacent runs merged
  std::vector<mapping> maps_;                     // this request's own mappings
  std::unordered_map<grant_ref, mapping> cache_;  // persistent grants, at most persistent_bound_
  queue_stats stats_;
};

/// One line for a log: what happened to a request that did not end in BLKIF_RSP_OKAY.
inline std::string describe(const served& s) {
  std::string line = "request id " + std::to_string(s.rsp.id) + " op " + std::to_string(s.rsp.operation) + ": ";
  switch (s.what) {
    case outcome::done:
      return line + "done";
    case outcome::refused:
      return line + "refused (" + std::string(blkif::to_string(s.refusal)) + ")";
    case outcome::bad_grant:
      return line + "grant not mapped or copied (" + std::string(to_string(s.grant.code)) + ")";
    case outcome::io_failed:
      return line + "I/O failed (" + std::string(to_string(s.image.code)) + ", errno " +
             std::to_string(s.image.sys_errno) + ")";
    case outcome::not_supported:
      return line + "not supported by the image";
  }
  return line;
}

}  // namespace blk
XENBUS_END_NAMESPACE
