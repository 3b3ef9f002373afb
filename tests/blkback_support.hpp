// Test rig for xenbus-blkback's engine: a RAM image that records what was made durable and
// refuses anything out of range, and our own blkif frontend (the library's frontend driver
// plus granted data pages) against blk::backend_device, all over a POSIX machine and our
// embedded xenstore, in one process.
#pragma once

#include "blkif_front.hpp"

#include <xenbus/hosted/blk/backend.hpp>
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/protocol/blkif.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace blktest {

using namespace xenbus;

/// A block image in memory. `data` is what reads see, `durable` what a crash would keep:
/// it is copied from `data` by each flush. Any access outside the image is counted (and
/// refused): the engine must never make one.
struct ram_image {
  std::vector<std::byte> data, durable;
  blk::image_geometry g;
  unsigned flushes = 0, reads = 0, writes = 0, discards = 0;
  unsigned out_of_range = 0;         ///< must stay 0
  bool fail_writes = false;          ///< every write reports EIO (after writing nothing)
  bool discard_unsupported = false;  ///< the geometry offers discard, the call says not supported

  explicit ram_image(std::size_t bytes, bool read_only = false) : data(bytes), durable(bytes) {
    g.bytes = bytes;
    g.read_only = read_only;
    g.discard = !read_only;
    g.discard_granularity = 4096;
  }
  const blk::image_geometry& geometry() const noexcept { return g; }

  result<void, blk::image_error> read(std::uint64_t off, std::span<const blk::io_buffer> bufs) {
    ++reads;
    const std::uint64_t n = total(bufs);
    if (!in_range(off, n)) return unexpected{blk::image_error{blk::image_errc::out_of_range}};
    for (const auto& b : bufs) {
      std::memcpy(b.data, data.data() + off, b.size);
      off += b.size;
    }
    return {};
  }
  result<void, blk::image_error> write(std::uint64_t off, std::span<const blk::io_buffer> bufs) {
    ++writes;
    const std::uint64_t n = total(bufs);
    if (!in_range(off, n)) return unexpected{blk::image_error{blk::image_errc::out_of_range}};
    if (g.read_only) return unexpected{blk::image_error{blk::image_errc::read_only}};
    if (fail_writes) return unexpected{blk::image_error{blk::image_errc::io, 5}};
    for (const auto& b : bufs) {
      std::memcpy(data.data() + off, b.data, b.size);
      off += b.size;
    }
    return {};
  }
  result<void, blk::image_error> flush() {
    ++flushes;
    durable = data;
    return {};
  }
  result<void, blk::image_error> discard(std::uint64_t off, std::uint64_t len, bool) {
    ++discards;
    if (!in_range(off, len)) return unexpected{blk::image_error{blk::image_errc::out_of_range}};
    if (discard_unsupported) return unexpected{blk::image_error{blk::image_errc::not_supported}};
    std::memset(data.data() + off, 0, len);
    return {};
  }

 private:
  static std::uint64_t total(std::span<const blk::io_buffer> bufs) {
    std::uint64_t n = 0;
    for (const auto& b : bufs) n += b.size;
    return n;
  }
  bool in_range(std::uint64_t off, std::uint64_t n) {
    if (off <= data.size() && n <= data.size() - off) return true;
    ++out_of_range;
    return false;
  }
};
static_assert(blk::block_image<ram_image>);

using store_t = embedded_store;
using evtchn_t = posix::evtchn_handle;
using grants_t = posix::grant_table;

inline constexpr domid_t back_dom = 0, front_dom = 1;
inline constexpr unsigned vdev = 51712;  // xvda
inline constexpr unsigned pool_pages = 512;

/// The test frontend's side of the world and the backend under test.
template <class Image = ram_image>
struct rig {
  using device_t = blk::backend_device<store_t, evtchn_t, grants_t, Image>;
  using front_t = frontend<blk::vbd, store_t, evtchn_t, grants_t>;

  xenstore::store store;
  posix::machine m = make_machine();
  store_t ts{store, 0}, bs{store, back_dom}, fs{store, front_dom};
  evtchn_t bev = open_evtchn(m, back_dom), fev = open_evtchn(m, front_dom);
  grants_t bgr{m, back_dom}, fgr{m, front_dom};
  Image& img;
  toolstack<store_t> tk{ts, device_address{front_dom, back_dom, "vbd", vdev}};
  std::optional<device_t> dev;
  std::optional<front_t> fe;
  std::deque<grants_t::shared_pages> pool;  // pool_pages data pages, granted writable to the backend
  std::vector<std::string> log;

  explicit rig(Image& image) : img{image} {}
  ~rig() {
    fe.reset();
    dev.reset();
  }

  static posix::machine make_machine() {
    auto m = posix::machine::create({.frames = 2048, .domains = 4, .grants_per_domain = 2048, .ports_per_domain = 80});
    if (!m) std::abort();
    return std::move(*m);
  }
  static evtchn_t open_evtchn(const posix::machine& m, domid_t d) {
    auto e = evtchn_t::open(m, d);
    if (!e) std::abort();
    return std::move(*e);
  }

  /// Creates the device, starts our backend and the frontend (writing feature-persistent
  /// as asked), runs the handshake; true once both are Connected.
  bool up(blk::device_options o = {}, frontend_options fo = {}, bool persistent = false) {
    if (!tk.create()) return false;
    dev.emplace(bs, bev, bgr, img, back_dom, front_dom, vdev, o);
    dev->set_logger([this](std::string_view l) { log.push_back("backend: " + std::string(l)); });
    if (!dev->start()) return false;
    return start_frontend(fo, persistent);
  }
  bool start_frontend(frontend_options fo = {}, bool persistent = false) {
    const std::string fdir = tk.address().frontend_dir();
    (void)fs.write(no_tx, fdir + "/feature-persistent", persistent ? "1" : "0");
    (void)fs.write(no_tx, fdir + "/virtual-device", std::to_string(vdev));
    fe.emplace(fs, fev, fgr, front_dom, vdev, fo);
    fe->set_logger([this](std::string_view l) { log.push_back("frontend: " + std::string(l)); });
    if (!fe->start()) return false;
    if (pool.empty())
      for (unsigned i = 0; i < pool_pages / 64; ++i) {
        std::array<grant_ref, 64> refs{};
        auto p = fgr.share(back_dom, refs, true);
        if (!p) return false;
        pool.push_back(std::move(*p));
      }
    pump();
    return fe->connected() && dev->connected();
  }

  /// Delivers watch events until nothing moves (in-process, nothing else can change the store).
  void pump() {
    for (int round = 0; round < 100; ++round) {
      unsigned n = 0;
      if (fe) n += deliver_watch_events(fs, 0, *fe);
      if (dev) n += deliver_watch_events(bs, 0, *dev);
      if (n == 0) return;
    }
  }

  std::string dump() const {
    std::string all;
    for (const auto& l : log) all += l + "\n";
    return all;
  }

  // ---- the frontend's data pages -------------------------------------------------------
  grant_ref ref(unsigned page) const { return pool[page / 64].refs()[page % 64]; }
  std::byte* page(unsigned page) const { return static_cast<std::byte*>(pool[page / 64].data()) + (page % 64) * 4096; }

  // ---- requests ------------------------------------------------------------------------
  /// A direct request: one full-page segment per page in `pages`.
  static blkif::request rw(std::uint8_t op, std::uint64_t id, std::uint64_t sector, std::vector<blkif::segment> segs) {
    return blkfront::rw(op, id, sector, std::move(segs));
  }
  blkif::segment full(unsigned p) const { return blkif::segment{ref(p), 0, 7}; }

  /// Puts `r` on queue q's ring and pushes (notifying the backend if it asked).
  bool submit(const blkif::request& r, unsigned q = 0) {
    if (!fe->queue_at(q).ring->produce(r)) return false;
    return fe->push(q).has_value();
  }
  /// Lets the backend take every pending event-channel port, as its loop would.
  void run_backend() {
    for (int i = 0; i < 10000; ++i) {
      auto p = bev.pending();
      if (!p) {
        if (dev->pending_work()) {
          dev->serve();
          continue;
        }
        return;
      }
      if (!dev->on_event(*p)) (void)bev.unmask(*p);
    }
  }
  /// Every response waiting on queue q.
  std::vector<blkif::response> responses(unsigned q = 0) {
    std::vector<blkif::response> out;
    for (;;) {
      auto r = fe->take_response(q);
      if (!r || !*r) break;
      out.push_back(**r);
    }
    // Drain our own doorbell: the backend notifies us, and nobody else reads it here.
    while (auto p = fev.pending()) (void)fev.unmask(*p);
    return out;
  }
  /// One request, served, and its response (status 99 when none came).
  blkif::response roundtrip(const blkif::request& r, unsigned q = 0) {
    if (!submit(r, q)) return blkif::make_response(r.id, r.operation, 99);
    run_backend();
    auto rs = responses(q);
    if (rs.size() != 1) return blkif::make_response(r.id, r.operation, 99);
    return rs[0];
  }

  /// An indirect request over pages `data` (full pages), its segments in the pages `ind`.
  blkif::request indirect(std::uint8_t op, std::uint64_t id, std::uint64_t sector, const std::vector<unsigned>& data,
                          const std::vector<unsigned>& ind) {
    std::vector<blkif::segment> segs;
    for (unsigned p : data) segs.push_back(full(p));
    return indirect_segs(op, id, sector, segs, ind);
  }
  blkif::request indirect_segs(std::uint8_t op, std::uint64_t id, std::uint64_t sector,
                               const std::vector<blkif::segment>& segs, const std::vector<unsigned>& ind) {
    blkif::request_indirect in{};
    in.operation = blkif::op_indirect;
    in.indirect_op = op;
    in.nr_segments = static_cast<std::uint16_t>(segs.size());
    in.id = id;
    in.sector_number = sector;
    for (std::size_t i = 0; i < ind.size() && i < blkif::max_indirect_pages_per_request; ++i) {
      in.indirect_grefs[i] = ref(ind[i]);
      std::memset(page(ind[i]), 0, 4096);
    }
    for (std::size_t i = 0; i < segs.size(); ++i) {
      const std::size_t pg = i / blkif::segments_per_indirect_page;
      if (pg >= ind.size()) break;
      std::memcpy(page(ind[pg]) + (i % blkif::segments_per_indirect_page) * sizeof(blkif::segment), &segs[i],
                  sizeof(blkif::segment));
    }
    blkif::request r{};
    std::memcpy(&r, &in, sizeof in);
    return r;
  }
};

using blkfront::fill;

/// As libxl adds a qdisk disk of domain front_dom served from dom0: both directories, with the
/// image in `params` and `mode`, in one transaction (the frontend's stays device/vbd/<devid>).
template <device_store S>
result<void, store_error> add_qdisk(S& s, unsigned devid, const std::string& params, const std::string& mode = "w") {
  const std::string fe = device_address{front_dom, back_dom, "vbd", devid}.frontend_dir();
  const std::string be = device_address{front_dom, back_dom, "qdisk", devid}.backend_dir();
  return in_transaction(s, [&](store_tx tx) -> result<void, store_error> {
    const std::pair<std::string, std::string> nodes[] = {
        {be + "/frontend", fe},
        {be + "/frontend-id", std::to_string(front_dom)},
        {be + "/online", "1"},
        {be + "/params", params},
        {be + "/mode", mode},
        {be + "/state", "1"},
        {fe + "/backend", be},
        {fe + "/backend-id", std::to_string(back_dom)},
        {fe + "/virtual-device", std::to_string(devid)},
        {fe + "/state", "1"},
    };
    for (const auto& [path, value] : nodes)
      if (auto r = s.write(tx, path, value); !r) return r;
    return {};
  });
}

}  // namespace blktest
