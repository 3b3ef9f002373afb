// xenbus-blkback --serve's building blocks (include/xenbus/hosted/blk/service.hpp,
// include/xenbus/posix/blk/serve.hpp): posix::blk_server runs a device_service over
// backend/qdisk in dom0 and serves each device from the image file its `params` names; our
// own blkif frontends run in a frontend service of the guest, on the same event loop, over
// our in-process store and a POSIX machine. Devices appear, do I/O, vanish, come back, fail
// with a bad `params`, and all close together at shutdown.
#include "blkback_support.hpp"

#include <xenbus/hosted/blk/service.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/posix/blk/serve.hpp>
#include <xenbus/posix/device/service_loop.hpp>
#include <xenbus/posix/event_loop.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

using namespace blktest;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr domid_t guest = front_dom;
constexpr std::size_t image_bytes = 1 << 20;

/// A blkif frontend for the guest's service: responses arrive through on_notify.
struct disk_front final : frontend<blk::vbd, store_t, evtchn_t, grants_t> {
  disk_front(store_t& s, evtchn_t& e, grants_t& g, unsigned devid, frontend_options o)
      : frontend(s, e, g, guest, devid, o) {}
  void on_notify(unsigned q) {
    for (;;) {
      for (;;) {
        auto r = take_response(q);
        if (!r || !*r) break;
        status[(*r)->id] = (*r)->status;
      }
      auto more = queue_at(q).ring->final_check();
      if (!more || !*more) break;
    }
  }
  bool submit(const blkif::request& r) { return connected() && queue_at(0).ring->produce(r) && push(0); }
  std::map<std::uint64_t, std::int16_t> status;
};

/// Image files in a private directory.
struct image_dir {
  std::string dir;
  image_dir() {
    char tmpl[] = "/tmp/xenbus-blkserve-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir = tmpl;
  }
  ~image_dir() {
    for (const auto& p : made) ::unlink(p.c_str());
    ::rmdir(dir.c_str());
  }
  /// A file of image_bytes, filled with `seed`'s pattern so that a stray write shows.
  std::string make(const std::string& name, unsigned seed) {
    const std::string p = dir + "/" + name;
    std::vector<std::byte> data(image_bytes);
    fill(data.data(), data.size(), seed);
    const int fd = ::open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    ::close(fd);
    made.push_back(p);
    return p;
  }
  static std::vector<std::byte> read(const std::string& p, std::uint64_t off, std::size_t n) {
    std::vector<std::byte> out(n);
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::pread(fd, out.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) out.clear();
    if (fd >= 0) ::close(fd);
    return out;
  }
  std::vector<std::string> made;
};

/// dom0 with a blk_server over backend/qdisk and the guest with a frontend service, on one loop.
struct serve_world {
  using server_t = posix::blk_server<store_t, evtchn_t, grants_t, blk::qdisk>;
  using front_service = device_service<store_t, disk_front>;

  xenstore::store store;
  posix::machine m = rig<>::make_machine();
  store_t ts{store, back_dom}, bs{store, back_dom}, fs{store, guest};
  evtchn_t bev = rig<>::open_evtchn(m, back_dom), fev = rig<>::open_evtchn(m, guest);
  grants_t bgr{m, back_dom}, fgr{m, guest};
  std::optional<grants_t::shared_pages> pages;  // 64 data pages, granted writable to dom0 (outlive the backend)
  posix::event_loop loop;
  std::vector<std::string> log;
  std::optional<server_t> server;
  std::optional<front_service> front;
  std::optional<posix::service_runner<front_service>> front_run;
  posix::event_loop::handle fev_h = 0;
  std::uint64_t next_id = 1;

  serve_world() {
    REQUIRE(loop.ok());
    std::array<grant_ref, 64> refs{};
    auto p = fgr.share(back_dom, refs, true);
    REQUIRE(p.has_value());
    pages.emplace(std::move(*p));
  }
  ~serve_world() { stop_front(); }

  static service_config config(std::chrono::milliseconds close_timeout = 5s) {
    service_config c;
    c.self = back_dom;
    c.max_attempts = 3;
    c.retry_backoff = 20ms;
    c.retry_backoff_max = 80ms;
    c.close_timeout = close_timeout;
    return c;
  }
  void start_server(service_config c = config(), blk::device_options o = {}) {
    auto logger = [this](std::string_view l) { log.push_back("be " + std::string(l)); };
    server.emplace(loop, bs, bev, bgr, c, o, logger);
    REQUIRE(server->start().has_value());
  }
  void start_front() {
    service_config c;
    c.side = service_side::frontend;
    c.self = guest;
    c.type = "vbd";
    front.emplace(fs, c, [this](device_probe& p) {
      auto d = std::make_unique<disk_front>(fs, fev, fgr, p.address.devid, frontend_options{.start = p.start});
      d->set_logger([this](std::string_view l) { log.push_back("fe " + std::string(l)); });
      return d;
    });
    REQUIRE(front->start().has_value());
    front_run.emplace(loop, *front);
    fev_h = posix::attach_evtchn(loop, fev, *front);
  }
  /// The guest's kernel is gone: its drivers stop answering (nothing is written).
  void stop_front() {
    loop.remove(fev_h);
    fev_h = 0;
    front_run.reset();
    front.reset();
  }

  static device_address backend_address(unsigned devid) { return device_address{guest, back_dom, "qdisk", devid}; }
  static std::string backend_dir(unsigned devid) { return backend_address(devid).backend_dir(); }
  static std::string frontend_dir(unsigned devid) {
    return device_address{guest, back_dom, "vbd", devid}.frontend_dir();
  }

  /// As libxl adds a qdisk: both directories, `params` and `mode`, in one transaction.
  void create(unsigned devid, const std::string& params, const std::string& mode = "w") {
    REQUIRE(add_qdisk(ts, devid, params, mode).has_value());
  }
  /// Both directories removed at once, as a toolstack cleaning up after a crash.
  void remove(unsigned devid) {
    (void)ts.remove(no_tx, frontend_dir(devid));
    (void)ts.remove(no_tx, backend_dir(devid));
  }
  std::string read(const std::string& path) {
    auto r = ts.read(no_tx, path);
    return r ? *r : "<" + std::string(to_string(r.error().code)) + ">";
  }
  std::string error_node(unsigned devid) {
    return read("/local/domain/0/error/backend/qdisk/" + std::to_string(guest) + "/" + std::to_string(devid) +
                "/error");
  }

  server_t::driver_type* back_driver(unsigned devid) { return server ? server->find(devid, guest) : nullptr; }
  disk_front* front_driver(unsigned devid) { return front ? front->find(devid) : nullptr; }
  bool both_connected(unsigned devid) {
    auto* b = back_driver(devid);
    auto* f = front_driver(devid);
    return b && f && b->connected() && f->connected();
  }
  template <class Pred>
  bool run_until(Pred p, std::chrono::milliseconds limit = 5s) {
    return loop.run_until(p, limit);
  }
  void run_for(std::chrono::milliseconds t) {
    (void)loop.run_until([] { return false; }, t);
  }

  std::byte* page(unsigned i) const { return static_cast<std::byte*>(pages->data()) + i * 4096; }
  /// One full-page request of `op` on device `devid` at `sector` through page `pg`, and its status.
  std::int16_t io(unsigned devid, std::uint8_t op, std::uint64_t sector, unsigned pg) {
    disk_front* f = front_driver(devid);
    const std::uint64_t id = next_id++;
    if (!f || !f->submit(rig<>::rw(op, id, sector, {blkif::segment{pages->refs()[pg], 0, 7}}))) return 99;
    if (!run_until([&] { return front_driver(devid) && front_driver(devid)->status.count(id) > 0; })) return 98;
    return front_driver(devid)->status[id];
  }
  /// Writes a patterned page at `sector` and reads it back through another page: true if
  /// both succeed, the data comes back intact and the image file holds it.
  bool write_read(unsigned devid, const std::string& image, std::uint64_t sector, unsigned seed) {
    const unsigned out = devid % 32 * 2, in = out + 1;
    fill(page(out), 4096, seed);
    std::memset(page(in), 0, 4096);
    if (io(devid, blkif::op_write, sector, out) != blkif::rsp_okay) return false;
    if (io(devid, blkif::op_read, sector, in) != blkif::rsp_okay) return false;
    const auto file = image_dir::read(image, sector * 512, 4096);
    return std::memcmp(page(in), page(out), 4096) == 0 && file.size() == 4096 &&
           std::memcmp(file.data(), page(out), 4096) == 0;
  }
  std::string dump() const {
    std::string s;
    for (const auto& l : log) s += l + "\n";
    return s;
  }
};

constexpr unsigned xvdb = 51728, xvdc = 51744, xvdd = 51760;

}  // namespace

TEST_CASE("blk params: a path, raw:PATH or aio:PATH is served and other formats or empty paths are refused") {
  CHECK(*blk::parse_params("/srv/disk.img") == "/srv/disk.img");
  CHECK(*blk::parse_params("raw:/srv/disk.img") == "/srv/disk.img");
  CHECK(*blk::parse_params("aio:/srv/disk.img") == "/srv/disk.img");
  CHECK(*blk::parse_params("/srv/a:b.img") == "/srv/a:b.img");  // a colon after a '/' is part of the path
  CHECK(*blk::parse_params("disk.img") == "disk.img");
  CHECK(blk::parse_params("qcow2:/srv/disk.qcow2").error() == blk::source_errc::unknown_format);
  CHECK(blk::parse_params("vhd:/srv/disk.vhd").error() == blk::source_errc::unknown_format);
  CHECK(blk::parse_params("file:/srv/disk.img").error() == blk::source_errc::unknown_format);
  CHECK(blk::parse_params(":/srv/disk.img").error() == blk::source_errc::unknown_format);
  CHECK(blk::parse_params("").error() == blk::source_errc::empty_path);
  CHECK(blk::parse_params("aio:").error() == blk::source_errc::empty_path);
  CHECK(*blk::parse_mode("w") == false);
  CHECK(*blk::parse_mode("r") == true);
  CHECK(blk::parse_mode("").error() == blk::source_errc::bad_mode);
  CHECK(blk::parse_mode("w!").error() == blk::source_errc::bad_mode);
  CHECK(blk::parse_mode("rw").error() == blk::source_errc::bad_mode);
}

TEST_CASE("blk serve: two devices appear and are served from their params and one vanishes while the other serves on") {
  image_dir images;
  const std::string a = images.make("a.img", 1), b = images.make("b.img", 2);
  serve_world w;
  w.start_server();
  w.start_front();
  w.create(xvdb, "aio:" + a);
  w.create(xvdc, b);
  REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdb) && w.both_connected(xvdc); }), w.dump());
  CHECK(w.server->service().drivers() == 2);
  CHECK(w.read(serve_world::backend_dir(xvdb) + "/sectors") == std::to_string(image_bytes / 512));
  CHECK(w.write_read(xvdb, a, 8, 10));
  CHECK(w.write_read(xvdc, b, 16, 20));
  // Each device wrote its own image only: b's sector 8 still has b's pattern.
  {
    std::vector<std::byte> want(image_bytes);
    fill(want.data(), want.size(), 2);
    CHECK(image_dir::read(b, 8 * 512, 4096) == std::vector<std::byte>(want.begin() + 8 * 512, want.begin() + 16 * 512));
  }

  SUBCASE("one device's directories vanish: its backend goes, the other keeps serving") {
    w.remove(xvdb);
    REQUIRE_MESSAGE(w.run_until([&] { return w.server->service().drivers() == 1 && !w.back_driver(xvdb); }), w.dump());
    CHECK(w.server->service().stats().removed == 1);
    w.run_for(30ms);
    // Nothing of ours brought the directory back.
    CHECK(w.read(serve_world::backend_dir(xvdb)) == "<ENOENT>");
    CHECK(w.both_connected(xvdc));
    CHECK(w.write_read(xvdc, b, 24, 30));

    SUBCASE("created again at the same path, it is served again") {
      w.create(xvdb, "raw:" + a);
      REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdb); }), w.dump());
      CHECK(w.server->service().drivers() == 2);
      CHECK(w.write_read(xvdb, a, 32, 40));
      CHECK(w.write_read(xvdc, b, 40, 50));
      CHECK(w.server->service().stats().probes == 3);
    }
  }
  SUBCASE("a device with a mode of r is served read-only") {
    const std::string c = images.make("c.img", 3);
    w.create(xvdd, c, "r");
    REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdd); }), w.dump());
    CHECK(w.back_driver(xvdd)->device().limits().read_only);
    CHECK(w.read(serve_world::backend_dir(xvdd) + "/info") == std::to_string(blkif::vdisk_readonly));
    fill(w.page(60), 4096, 99);
    CHECK(w.io(xvdd, blkif::op_write, 0, 60) != blkif::rsp_okay);
    CHECK(w.io(xvdd, blkif::op_read, 0, 61) == blkif::rsp_okay);
    std::vector<std::byte> want(image_bytes);
    fill(want.data(), want.size(), 3);
    CHECK(std::memcmp(w.page(61), want.data(), 4096) == 0);
    CHECK(image_dir::read(c, 0, 4096) == std::vector<std::byte>(want.begin(), want.begin() + 4096));
  }
}

TEST_CASE("blk serve: the device options apply to every device (grant copy)") {
  image_dir images;
  const std::string a = images.make("a.img", 1), b = images.make("b.img", 2);
  serve_world w;
  blk::device_options o;
  o.path = blk::data_path::copy;
  w.start_server(serve_world::config(), o);
  w.start_front();
  w.create(xvdb, a);
  w.create(xvdc, "raw:" + b);
  REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdb) && w.both_connected(xvdc); }), w.dump());
  for (unsigned d : {xvdb, xvdc}) {
    CHECK(w.back_driver(d)->device().path() == blk::data_path::copy);
    CHECK(w.read(serve_world::backend_dir(d) + "/feature-persistent") == "0");
  }
  CHECK(w.write_read(xvdb, a, 8, 5));
  CHECK(w.write_read(xvdc, b, 8, 6));
  CHECK(w.back_driver(xvdb)->device().stats().grant_copies > 0);
}

TEST_CASE("blk serve: a device that cannot be served gets its error node after bounded retries") {
  image_dir images;
  const std::string a = images.make("a.img", 1);
  serve_world w;
  w.start_server();
  w.start_front();
  w.create(xvdb, a);
  REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdb); }), w.dump());

  std::string params, want;
  SUBCASE("an image format other than raw") {
    params = "qcow2:" + a;
    want = "22 probe: params has an image format other than raw";
  }
  SUBCASE("an image that does not exist") {
    params = "aio:" + images.dir + "/missing.img";
    want = "2 probe: cannot open " + images.dir + "/missing.img: No such file or directory";
  }
  SUBCASE("a mode that is neither r nor w") {
    params = a;
    want = "22 probe: mode is neither r nor w";
  }
  INFO("params " << params);
  const auto t0 = clock_type::now();
  w.create(xvdc, params, params == a ? "rw" : "w");
  REQUIRE_MESSAGE(w.run_until([&] { return w.server->service().stats().given_up == 1; }), w.dump());
  // Three attempts, 20 ms then 40 ms apart: bounded, and not at once.
  CHECK(clock_type::now() - t0 >= 60ms);
  CHECK(w.server->service().stats().failures == 3);
  CHECK(w.error_node(xvdc).starts_with(want));
  CHECK(w.back_driver(xvdc) == nullptr);
  w.run_for(100ms);
  CHECK(w.server->service().stats().failures == 3);  // no further attempts
  // Nothing else broke: the good device still serves, and a new one is served.
  CHECK(w.write_read(xvdb, a, 8, 11));
  const std::string d = images.make("d.img", 4);
  w.create(xvdd, d);
  REQUIRE_MESSAGE(w.run_until([&] { return w.both_connected(xvdd); }), w.dump());
  CHECK(w.write_read(xvdd, d, 0, 12));
}

TEST_CASE("blk serve: shutdown closes every device at once, bounded by one close timeout") {
  image_dir images;
  serve_world w;
  constexpr auto timeout = 400ms;
  w.start_server(serve_world::config(timeout));
  w.start_front();
  const unsigned devs[] = {xvdb, xvdc, xvdd};
  std::vector<std::string> paths;
  for (unsigned i = 0; i < 3; ++i) {
    paths.push_back(images.make("d" + std::to_string(i) + ".img", i));
    w.create(devs[i], paths.back());
  }
  REQUIRE_MESSAGE(w.run_until([&] {
    for (unsigned d : devs)
      if (!w.both_connected(d)) return false;
    return true;
  }),
                  w.dump());
  for (unsigned i = 0; i < 3; ++i) CHECK(w.write_read(devs[i], paths[i], 8 * i, i));

  SUBCASE("live frontends follow at once") {
    const auto t0 = clock_type::now();
    CHECK(w.server->shut_down());
    CHECK(clock_type::now() - t0 < timeout);
    for (unsigned d : devs) CHECK(w.read(serve_world::backend_dir(d) + "/state") == "6");
    CHECK(w.server->service().stats().close_timeouts == 0);
  }
  SUBCASE("silent frontends cost one timeout for all, not one each") {
    w.stop_front();
    const auto t0 = clock_type::now();
    CHECK_FALSE(w.server->shut_down());
    const auto took = clock_type::now() - t0;
    CHECK(took >= timeout);
    CHECK(took < 2 * timeout);
    CHECK(w.server->service().stats().close_timeouts == 3);
    for (unsigned d : devs) CHECK(w.read(serve_world::backend_dir(d) + "/state") == "5");  // Closing
  }
  CHECK(w.server->service().done());
  CHECK(w.server->service().drivers() == 0);
}
