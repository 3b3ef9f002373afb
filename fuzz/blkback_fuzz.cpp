// The input plays a hostile blkif frontend against xenbus-blkback's engine. Two modes:
//  - slots (first byte even): a run of raw request slots served one by one by a
//    blk::request_server, interleaved with writes into the granted pages (indirect segment
//    tables); grant references below 64 name real pages, others are taken as they are;
//  - ring (first byte odd): a connected blk::backend_device whose shared ring page the input
//    scribbles on (slots and req_prod) between kicks.
// Every response must carry the request's id and a status of 0, -1 or -2; a request that
// is not answered OKAY must leave the image as it was; nothing may touch the image outside
// its bounds; a broken ring must close the device. ASan and UBSan watch the rest.
#include "../tests/blkback_support.hpp"

#include <xenbus/hosted/blk/engine.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace {

using namespace blktest;

constexpr std::size_t image_bytes = 64 * 512;
constexpr unsigned writable_pages = 16;

/// What outlives one input in slot mode: the machine and the frontend's pages (16 granted
/// writable, 2 read-only) and the backend's grant table.
struct world {
  posix::machine m = make();
  grants_t fe_g{m, front_dom}, be_g{m, back_dom};
  std::array<grant_ref, writable_pages> rw_refs{};
  std::array<grant_ref, 2> ro_refs{};
  std::optional<grants_t::shared_pages> rw, ro;
  static posix::machine make() {
    auto r = posix::machine::create({.frames = 64, .domains = 2, .grants_per_domain = 64, .ports_per_domain = 8});
    if (!r) std::abort();
    return std::move(*r);
  }
  world() {
    auto a = fe_g.share(back_dom, rw_refs, true);
    auto b = fe_g.share(back_dom, ro_refs, false);
    if (!a || !b) std::abort();
    rw.emplace(std::move(*a));
    ro.emplace(std::move(*b));
  }
  /// A reference from the input: small values name our pages, others stay as they are.
  grant_ref pick(grant_ref raw) const {
    if (raw >= 64) return raw;
    const unsigned i = raw % (writable_pages + 2);
    return i < writable_pages ? rw_refs[i] : ro_refs[i - writable_pages];
  }
  std::byte* page(unsigned i) const { return static_cast<std::byte*>(rw->data()) + (i % writable_pages) * 4096; }
};

world& the_world() {
  static world w;
  return w;
}

void check_response(const blkif::response& rsp, std::uint64_t id) {
  if (rsp.id != id) std::abort();
  if (rsp.status != blkif::rsp_okay && rsp.status != blkif::rsp_error && rsp.status != blkif::rsp_eopnotsupp)
    std::abort();
}

void slots_mode(const std::uint8_t* data, std::size_t size) {
  world& w = the_world();
  const std::uint8_t cfg = size > 1 ? data[1] : 0;
  ram_image img{image_bytes, (cfg & 2) != 0};
  for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<std::byte>(i * 7);
  img.discard_unsupported = (cfg & 4) != 0;
  blkif::limits l;
  l.capacity_sectors = image_bytes / 512;
  l.align_sectors = (cfg & 8) ? 8 : 1;
  l.max_indirect_segments = (cfg & 16) ? 600 : (cfg & 32) ? 16 : 0;
  l.read_only = img.g.read_only;
  l.flush = l.barrier = !l.read_only && (cfg & 64) == 0;
  l.discard = !l.read_only;
  blk::request_server<grants_t, ram_image> server{w.be_g, img, front_dom, l, (cfg & 128) ? 4u : 0u};
  std::size_t at = 2;
  while (at < size) {
    const std::uint8_t kind = data[at++];
    if (kind % 4 == 3) {
      // 64 bytes into a page: eight indirect segments, their references picked as above.
      if (size - at < 3 + 64) return;
      std::byte* p = w.page(data[at]) + (std::size_t{data[at + 1]} | std::size_t{data[at + 2]} << 8) % 4033;
      at += 3;
      std::array<blkif::segment, 8> segs;
      std::memcpy(segs.data(), data + at, sizeof segs);
      for (auto& s : segs) s.gref = w.pick(s.gref);
      std::memcpy(p, segs.data(), sizeof segs);
      at += 64;
      continue;
    }
    if (size - at < sizeof(blkif::request)) return;
    blkif::request r;
    std::memcpy(&r, data + at, sizeof r);
    at += sizeof r;
    if (kind % 4 != 2) {  // usually make the references plausible; sometimes leave them raw
      for (auto& s : r.seg) s.gref = w.pick(s.gref);
      if (r.operation == blkif::op_indirect) {
        blkif::request_indirect in;
        std::memcpy(&in, &r, sizeof in);
        for (auto& g : in.indirect_grefs) g = w.pick(g);
        std::memcpy(&r, &in, sizeof in);
      }
    }
    const auto before = img.data;
    const auto s = server.serve(r);
    check_response(s.rsp, r.id);
    if (s.rsp.status != blkif::rsp_okay && img.data != before) std::abort();  // a failed request wrote
    if (img.out_of_range != 0) std::abort();
  }
}

void ring_mode(const std::uint8_t* data, std::size_t size) {
  ram_image img{image_bytes};
  rig r{img};
  const std::uint8_t cfg = size > 1 ? data[1] : 0;
  if (!r.up({.max_ring_page_order = 1, .max_queues = 2, .max_indirect_segments = 16, .persistent_grants = 4},
            frontend_options{.ring_page_order = cfg & 1u, .queues = 1 + ((cfg >> 1) & 1u)}, (cfg & 4) != 0))
    std::abort();
  auto& q = r.fe->queue_at(0);
  auto* page = static_cast<std::byte*>(q.pages->data());
  const std::size_t page_bytes = q.pages->size();
  std::size_t at = 2;
  while (at < size && r.dev->connected()) {
    const std::uint8_t kind = data[at++];
    if (kind % 2 == 0) {
      // A slot write: offset (2 bytes) and 16 bytes anywhere after the indices.
      if (size - at < 18) break;
      const std::size_t off = 64 + (std::size_t{data[at]} | std::size_t{data[at + 1]} << 8) % (page_bytes - 64 - 16);
      std::array<std::uint8_t, 16> bytes;
      std::memcpy(bytes.data(), data + at + 2, 16);
      // References in the written bytes that are small name real pages.
      std::memcpy(page + off, bytes.data(), 16);
      at += 18;
    } else {
      // req_prod, then a kick.
      if (size - at < 4) break;
      std::uint32_t prod;
      std::memcpy(&prod, data + at, 4);
      at += 4;
      std::memcpy(page, &prod, 4);
      (void)r.fev.notify(q.port);
      r.run_backend();
      (void)r.responses();
      r.pump();
    }
  }
  if (r.dev->driver().reason() == close_reason::ring_broken && r.dev->connected()) std::abort();
  if (img.out_of_range != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  if (data[0] % 2 == 0)
    slots_mode(data, size);
  else
    ring_mode(data, size);
  return 0;
}
