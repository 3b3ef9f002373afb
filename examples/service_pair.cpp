// A RAM-disk backend and its frontend run by device services on one event loop: neither
// driver has a poll loop of its own. The toolstack adds a device, each service creates its
// driver, the frontend writes 8 sectors and reads them back through granted pages, then
// both services shut down together. One process, our embedded xenstore, a POSIX machine.
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/posix/device/service_loop.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

extern "C" {
#include <xen/io/blkif.h>
}

using namespace xenbus;
using namespace std::chrono_literals;

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
using evtchn_t = posix::evtchn_handle;
using grants_t = posix::grant_table;

/// The backend: a backend<> plus the one hook it needs. The service calls on_notify(q) when
/// the frontend raised queue q's event channel.
struct ramdisk_back : backend<blk, store_t, evtchn_t, grants_t> {
  ramdisk_back(store_t& s, evtchn_t& e, grants_t& g, domid_t fe, unsigned devid, std::vector<std::byte>& disk)
      : backend(s, e, g, dom0, fe, devid, {.features = {{"sectors", "2048"}}}), disk_{&disk}, grants_{&g}, fe_{fe} {}

  void on_notify(unsigned q) {
    do {
      for (;;) {
        auto req = take_request(q);
        if (!req || !*req) break;
        queue_at(q).ring->produce(serve(**req));  // our private copy: the guest cannot change it
      }
      (void)push(q);
    } while (more(q));
  }

 private:
  bool more(unsigned q) {
    auto m = queue_at(q).ring->final_check();  // asks for a notification before we stop
    return m && *m;
  }
  blkif_response_t serve(const blkif_request_t& r) {
    blkif_response_t rsp{};
    rsp.id = r.id;
    rsp.operation = r.operation;
    rsp.status = BLKIF_RSP_ERROR;
    const auto& seg = r.seg[0];
    const std::size_t off = r.sector_number * sector + seg.first_sect * sector;
    const std::size_t len = (std::size_t{seg.last_sect} - seg.first_sect + 1) * sector;
    if (r.nr_segments != 1 || seg.last_sect >= 8 || seg.first_sect > seg.last_sect || off + len > disk_->size())
      return rsp;
    const grant_ref ref = seg.gref;
    auto page = grants_->map(fe_, {&ref, 1}, r.operation == BLKIF_OP_READ);
    if (!page) return rsp;
    auto* data = static_cast<std::byte*>(page->data()) + seg.first_sect * sector;
    if (r.operation == BLKIF_OP_WRITE) std::memcpy(disk_->data() + off, data, len);
    if (r.operation == BLKIF_OP_READ) std::memcpy(data, disk_->data() + off, len);
    rsp.status = BLKIF_RSP_OKAY;
    return rsp;
  }
  std::vector<std::byte>* disk_;
  grants_t* grants_;
  domid_t fe_;
};

/// The frontend: responses arrive through on_notify, as they would through an interrupt.
struct disk_front : frontend<blk, store_t, evtchn_t, grants_t> {
  using frontend::frontend;
  void on_notify(unsigned q) {
    do {
      for (;;) {
        auto rsp = take_response(q);
        if (!rsp || !*rsp) break;
        done.push_back(**rsp);
      }
    } while ([&] {
      auto m = queue_at(q).ring->final_check();
      return m && *m;
    }());
  }
  bool submit(std::uint8_t op, grant_ref page, std::uint64_t id) {
    blkif_request_t r{};
    r.operation = op;
    r.nr_segments = 1;
    r.id = id;
    r.sector_number = 8;
    r.seg[0] = blkif_request_segment{page, 0, 7};
    return queue_at(0).ring->produce(r) && push(0);
  }
  std::vector<blkif_response_t> done;
};

int main() {
  auto log = [](const char* who) {
    return [who](std::string_view l) { std::printf("%-8s %.*s\n", who, int(l.size()), l.data()); };
  };
  xenstore::store store;
  store_t ts{store, dom0}, bs{store, dom0}, fs{store, guest};
  auto m = posix::machine::create();
  if (!m) return 1;
  auto bev = evtchn_t::open(*m, dom0);
  auto fev = evtchn_t::open(*m, guest);
  if (!bev || !fev) return 1;
  grants_t bgrants{*m, dom0}, fgrants{*m, guest};
  std::vector<std::byte> disk(2048 * sector);

  // One service per end: each watches its directory and builds a driver per device.
  device_service<store_t, ramdisk_back> back{
      bs, {.side = service_side::backend, .self = dom0, .type = "vbd"}, [&](device_probe& p) {
        auto d = std::make_unique<ramdisk_back>(bs, *bev, bgrants, p.address.frontend_domid, p.address.devid, disk);
        d->set_logger(log("backend"));
        return d;
      }};
  device_service<store_t, disk_front> front{
      fs, {.side = service_side::frontend, .self = guest, .type = "vbd"}, [&](device_probe& p) {
        auto d =
            std::make_unique<disk_front>(fs, *fev, fgrants, guest, p.address.devid, frontend_options{.start = p.start});
        d->set_logger(log("frontend"));
        return d;
      }};
  back.set_logger(log("service"));
  front.set_logger(log("service"));
  if (!back.start() || !front.start()) return 1;

  // One loop owns the store's events, the event channels and every deadline.
  posix::event_loop loop;
  posix::service_runner back_run{loop, back};
  posix::service_runner front_run{loop, front};
  const auto back_ports = posix::attach_evtchn(loop, *bev, back);
  const auto front_ports = posix::attach_evtchn(loop, *fev, front);

  toolstack<store_t> tk{ts, device_address{guest, dom0, "vbd", vdev}};
  if (!tk.create()) return 1;
  auto connected = [&] {
    disk_front* f = front.find(vdev);
    return f && f->connected();
  };
  if (!loop.run_until(connected, 5s)) return 1;
  disk_front& f = *front.find(vdev);

  std::array<grant_ref, 1> out_ref{}, in_ref{};
  auto out = fgrants.share(dom0, out_ref, false);  // the backend only reads what we write
  auto in = fgrants.share(dom0, in_ref, true);     // and writes what we read
  if (!out || !in) return 1;
  for (std::size_t i = 0; i < out->size(); ++i) static_cast<unsigned char*>(out->data())[i] = (unsigned char)(i * 7);
  bool ok = f.submit(BLKIF_OP_WRITE, out_ref[0], 1) && loop.run_until([&] { return f.done.size() == 1; }, 5s);
  ok = ok && f.submit(BLKIF_OP_READ, in_ref[0], 2) && loop.run_until([&] { return f.done.size() == 2; }, 5s);
  ok = ok && f.done[0].status == BLKIF_RSP_OKAY && f.done[1].status == BLKIF_RSP_OKAY;
  ok = ok && std::memcmp(out->data(), in->data(), out->size()) == 0;
  std::printf("%-8s wrote and read back 8 sectors: %s\n", "example", ok ? "identical" : "MISMATCH");

  ok = posix::shut_down(loop, front_run, back_run) && ok;  // every device closed, none timed out
  loop.remove(back_ports);
  loop.remove(front_ports);
  std::printf("%-8s %s\n", "example", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
