// A minimal block device to copy: a backend serving a RAM disk with Xen's own blkif
// request/response types, a frontend that writes 4 KiB and reads them back through
// granted data pages. One process, our embedded xenstore, a POSIX machine for grants.
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>

#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

extern "C" {
#include <xen/io/blkif.h>
}

using namespace xenbus;

/// What a driver author declares: the ring's messages, the device type, the limits.
struct blk {
  using request = blkif_request_t;
  using response = blkif_response_t;
  static constexpr std::string_view type = "vbd";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 0;
  static constexpr unsigned max_queues = 1;
};

constexpr domid_t dom0 = 0, guest = 1;
constexpr unsigned vdev = 51712;  // xvda
constexpr std::size_t sector = 512;

using store_t = embedded_store;
using front_t = frontend<blk, store_t, posix::evtchn_handle, posix::grant_table>;
using back_t = backend<blk, store_t, posix::evtchn_handle, posix::grant_table>;

/// Runs the watch events of both connections until `done()`; in-process, nothing else can
/// change the store, so "no event left" means "stuck".
template <class Done>
bool pump(store_t& fs, front_t& fe, store_t& bs, back_t& be, Done done) {
  while (!done()) {
    const unsigned events = deliver_watch_events(fs, 0, fe) + deliver_watch_events(bs, 0, be);
    if (events == 0) return done();
  }
  return true;
}

/// The backend's work: each request names one granted page of the guest; copy the sectors.
void serve(back_t& be, posix::evtchn_handle& ev, posix::grant_table& grants, std::vector<std::byte>& disk) {
  // Sleep only after the final check (it asks the frontend to notify us for the next one).
  for (;;) {
    auto more = be.queue_at(0).ring->final_check();
    if (!more || *more) break;
    if (!posix::wait_readable(ev.fd(), 1000)) return;
    if (auto p = ev.pending()) (void)ev.unmask(*p);
  }
  for (;;) {
    auto req = be.take_request(0);
    if (!req || !*req) break;
    const blkif_request_t& r = **req;  // our private copy: the guest cannot change it now
    blkif_response_t rsp{};
    rsp.id = r.id;
    rsp.operation = r.operation;
    rsp.status = BLKIF_RSP_ERROR;
    const auto& seg = r.seg[0];
    const std::size_t off = r.sector_number * sector + seg.first_sect * sector;
    const std::size_t len = (std::size_t{seg.last_sect} - seg.first_sect + 1) * sector;
    if (r.nr_segments == 1 && seg.last_sect < 8 && seg.first_sect <= seg.last_sect && off + len <= disk.size()) {
      const grant_ref ref = seg.gref;
      auto page = grants.map(guest, {&ref, 1}, r.operation == BLKIF_OP_READ);
      if (page) {
        auto* data = static_cast<std::byte*>(page->data()) + seg.first_sect * sector;
        if (r.operation == BLKIF_OP_WRITE) std::memcpy(disk.data() + off, data, len);
        if (r.operation == BLKIF_OP_READ) std::memcpy(data, disk.data() + off, len);
        rsp.status = BLKIF_RSP_OKAY;
      }
    }
    be.queue_at(0).ring->produce(rsp);
  }
  (void)be.push(0);
}

/// The frontend's side of one I/O: a request naming a granted page, then its response.
bool io(front_t& fe, std::uint8_t op, grant_ref page, std::uint64_t id) {
  blkif_request_t r{};
  r.operation = op;
  r.nr_segments = 1;
  r.handle = 0;
  r.id = id;
  r.sector_number = 8;
  r.seg[0] = blkif_request_segment{page, 0, 7};
  return fe.queue_at(0).ring->produce(r) && fe.push(0);
}

int main() {
  xenstore::store store;
  store_t ts{store, dom0}, fs{store, guest}, bs{store, dom0};
  auto m = posix::machine::create();
  if (!m) return 1;
  auto fev = posix::evtchn_handle::open(*m, guest);
  auto bev = posix::evtchn_handle::open(*m, dom0);
  if (!fev || !bev) return 1;
  posix::grant_table fgrants{*m, guest}, bgrants{*m, dom0};

  toolstack<store_t> tk{ts, device_address{guest, dom0, "vbd", vdev}};
  if (!tk.create()) return 1;
  back_t be{bs, *bev, bgrants, dom0, guest, vdev, {.features = {{"feature-flush-cache", "0"}, {"sectors", "2048"}}}};
  front_t fe{fs, *fev, fgrants, guest, vdev};
  auto log = [](const char* who) {
    return [who](std::string_view l) { std::printf("%-8s %.*s\n", who, int(l.size()), l.data()); };
  };
  be.set_logger(log("backend"));
  fe.set_logger(log("frontend"));
  if (!be.start() || !fe.start()) return 1;
  if (!pump(fs, fe, bs, be, [&] { return fe.connected() && be.connected(); })) return 1;

  std::vector<std::byte> disk(2048 * sector);
  std::array<grant_ref, 1> out_ref{}, in_ref{};
  auto out = fgrants.share(dom0, out_ref, false);  // the backend only reads what we write
  auto in = fgrants.share(dom0, in_ref, true);     // and writes what we read
  if (!out || !in) return 1;
  for (std::size_t i = 0; i < out->size(); ++i)
    static_cast<unsigned char*>(out->data())[i] = static_cast<unsigned char>(i * 7);

  bool ok = io(fe, BLKIF_OP_WRITE, out_ref[0], 1);
  serve(be, *bev, bgrants, disk);
  ok = ok && io(fe, BLKIF_OP_READ, in_ref[0], 2);
  serve(be, *bev, bgrants, disk);
  for (std::uint64_t want = 1; ok && want <= 2; ++want) {
    auto rsp = fe.take_response(0);
    ok = rsp && *rsp && (*rsp)->id == want && (*rsp)->status == BLKIF_RSP_OKAY;
  }
  ok = ok && std::memcmp(out->data(), in->data(), out->size()) == 0;
  std::printf("%-8s wrote and read back 8 sectors: %s\n", "example", ok ? "identical" : "MISMATCH");

  fe.close();
  ok = pump(fs, fe, bs, be, [&] { return fe.own() == state::closed && be.own() == state::closed; }) && ok;
  ok = tk.remove().has_value() && ok;
  std::printf("%-8s %s\n", "example", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
