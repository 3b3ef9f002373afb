// The xenbus-blkback program end to end, without Xen: xenbus-xenstored on a private socket,
// a POSIX machine handed to the program (--machine-fd), an image file, and our frontend in
// this process. The program plays the toolstack (--create), serves reads, writes, flushes
// and discards into the file, and on SIGTERM unplugs the device, waits for the frontend to
// close, removes both directories and exits 0, with every acknowledged write in the file.
#include "blkback_support.hpp"

#include <xenbus/xen/xs_store.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using namespace blktest;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t image_bytes = 8 << 20;

pid_t spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

bool socket_accepts(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

/// Waits for `pid` to exit within `seconds`; its exit status, or -1 (then it is killed).
int wait_exit(pid_t pid, int seconds) {
  const auto until = clock_type::now() + std::chrono::seconds(seconds);
  while (clock_type::now() < until) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

struct program_world {
  std::string dir, socket, image, pid_file;
  pid_t xenstored = -1, blkback = -1;
  posix::machine m = rig<>::make_machine();

  program_world() {
    char tmpl[] = "/tmp/xenbus-blkback-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir = tmpl;
    socket = dir + "/socket";
    image = dir + "/disk.img";
    pid_file = dir + "/blkback.pid";
    xenstored = spawn({XENBUS_XENSTORED_BINARY, "--no-fork", "--socket", socket});
    REQUIRE(xenstored > 0);
    for (int i = 0; i < 1000 && !socket_accepts(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(socket_accepts(socket));
    ::setenv("XENSTORED_PATH", socket.c_str(), 1);
    // A patterned image, so that a stray write anywhere shows.
    std::vector<char> data(image_bytes);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
    std::ofstream(image, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  ~program_world() {
    if (blkback > 0) {
      ::kill(blkback, SIGKILL);
      ::waitpid(blkback, nullptr, 0);
    }
    if (xenstored > 0) {
      ::kill(xenstored, SIGTERM);
      ::waitpid(xenstored, nullptr, 0);
    }
    ::unlink(image.c_str());
    ::unlink(pid_file.c_str());
    ::unlink(socket.c_str());
    ::rmdir(dir.c_str());
  }
  void start_blkback(std::vector<std::string> extra = {}) {
    REQUIRE(m.inheritable());
    std::vector<std::string> args{XENBUS_BLKBACK_BINARY,
                                  "--image",
                                  image,
                                  "--domid",
                                  std::to_string(front_dom),
                                  "--devid",
                                  std::to_string(vdev),
                                  "--machine-fd",
                                  std::to_string(m.fd()),
                                  "--create",
                                  "--pid-file",
                                  pid_file};
    args.insert(args.end(), extra.begin(), extra.end());
    launch(args);
  }
  /// Runs the program with `args` and waits for its pid file (written once it serves).
  void launch(const std::vector<std::string>& args) {
    blkback = spawn(args);
    REQUIRE(blkback > 0);
    for (int i = 0; i < 2000 && ::access(pid_file.c_str(), F_OK) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(::access(pid_file.c_str(), F_OK) == 0);
  }
  std::vector<char> file() const {
    std::vector<char> out(image_bytes + 1);
    const int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
    const ssize_t n = fd >= 0 ? ::pread(fd, out.data(), out.size(), 0) : -1;
    if (fd >= 0) ::close(fd);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  }
};

using front_t = frontend<blk::vbd, xen::xs_store, evtchn_t, grants_t>;

/// Runs the frontend's watch events until `done()` or 5 s (the program is another process).
template <class Done>
bool pump(xen::xs_store& s, front_t& fe, Done done) {
  const auto until = clock_type::now() + std::chrono::seconds(5);
  while (!done() && clock_type::now() < until) (void)deliver_watch_events(s, 20, fe);
  return done();
}

/// Sends one request on queue 0 and waits (up to 5 s) for its response.
blkif::response roundtrip(front_t& fe, evtchn_t& ev, const blkif::request& r) {
  auto fail = blkif::make_response(r.id, r.operation, 99);
  if (!fe.queue_at(0).ring->produce(r) || !fe.push(0)) return fail;
  const auto until = clock_type::now() + std::chrono::seconds(5);
  while (clock_type::now() < until) {
    auto rsp = fe.take_response(0);
    if (!rsp) return fail;
    if (*rsp) return **rsp;
    // Ask to be notified of the next response, then sleep only if it is not there yet.
    auto more = fe.queue_at(0).ring->final_check(1);
    if (!more) return fail;
    if (*more) continue;
    pollfd p{ev.fd(), POLLIN, 0};
    if (::poll(&p, 1, 10) > 0)
      while (auto port = ev.pending()) (void)ev.unmask(*port);
  }
  return fail;
}

TEST_CASE("xenbus-blkback serves an image file to our frontend and shuts down cleanly on SIGTERM") {
  program_world w;
  w.start_blkback();
  auto s = xen::xs_store::open();
  REQUIRE(s);
  // The program wrote both directories as a toolstack does.
  const std::string fdir = device_address{front_dom, back_dom, "vbd", vdev}.frontend_dir();
  auto vd = s->read(no_tx, fdir + "/virtual-device");
  REQUIRE(vd);
  CHECK(*vd == std::to_string(vdev));
  REQUIRE(s->write(no_tx, fdir + "/feature-persistent", "1"));

  auto fev = rig<>::open_evtchn(w.m, front_dom);
  grants_t fgr{w.m, front_dom};
  front_t fe{*s, fev, fgr, front_dom, vdev, frontend_options{.ring_page_order = 2}};
  REQUIRE(fe.start());
  REQUIRE(pump(*s, fe, [&] { return fe.connected(); }));
  const std::string bdir = device_address{front_dom, back_dom, "vbd", vdev}.backend_dir();
  CHECK(s->read(no_tx, bdir + "/sectors").value_or("") == std::to_string(image_bytes / 512));
  CHECK(s->read(no_tx, bdir + "/feature-discard").value_or("") == "1");  // /tmp punches holes

  std::array<grant_ref, 16> refs{};
  auto pages = fgr.share(back_dom, refs, true);
  REQUIRE(pages);
  auto page = [&](unsigned i) { return static_cast<std::byte*>(pages->data()) + i * 4096; };
  for (unsigned i = 0; i < 16; ++i) fill(page(i), 4096, 300 + i);

  auto expect = w.file();
  // Writes of 1..11 pages at scattered offsets, each acknowledged only once in the file.
  std::uint64_t id = 1;
  for (unsigned n = 1; n <= 11; ++n) {
    std::vector<blkif::segment> segs;
    for (unsigned i = 0; i < n; ++i) segs.push_back(blkif::segment{refs[i], 0, 7});
    const std::uint64_t sector = n * 1000;
    auto rsp = roundtrip(fe, fev, rig<>::rw(blkif::op_write, id++, sector, segs));
    REQUIRE(rsp.status == blkif::rsp_okay);
    for (unsigned i = 0; i < n; ++i) std::memcpy(expect.data() + sector * 512 + i * 4096, page(i), 4096);
    CHECK(w.file() == expect);  // visible in the file as soon as it is acknowledged
  }
  // Flush, a read back, a discard (a hole reads as zeros), a bad request.
  CHECK(roundtrip(fe, fev, rig<>::rw(blkif::op_flush_diskcache, id++, 0, {})).status == blkif::rsp_okay);
  std::memset(page(15), 0, 4096);
  REQUIRE(roundtrip(fe, fev, rig<>::rw(blkif::op_read, id++, 11000, {blkif::segment{refs[15], 0, 7}})).status ==
          blkif::rsp_okay);
  CHECK(std::memcmp(page(15), expect.data() + 11000 * 512, 4096) == 0);
  blkif::request_discard d{blkif::op_discard, 0, 0, id++, 2048, 64};
  blkif::request dr{};
  std::memcpy(&dr, &d, sizeof d);
  CHECK(roundtrip(fe, fev, dr).status == blkif::rsp_okay);
  std::memset(expect.data() + 2048 * 512, 0, 64 * 512);
  CHECK(
      roundtrip(fe, fev, rig<>::rw(blkif::op_write, id++, image_bytes / 512, {blkif::segment{refs[0], 0, 7}})).status ==
      blkif::rsp_error);
  CHECK(w.file() == expect);

  // SIGTERM: the program unplugs, our frontend follows to Closed, the directories go away.
  ::kill(w.blkback, SIGTERM);
  CHECK(pump(*s, fe, [&] { return fe.own() == state::closed; }));
  CHECK(wait_exit(w.blkback, 10) == 0);
  w.blkback = -1;
  CHECK_FALSE(s->read(no_tx, bdir + "/state"));
  CHECK_FALSE(s->read(no_tx, fdir + "/state"));
  CHECK(w.file() == expect);
}

TEST_CASE("xenbus-blkback: a frontend killed mid-I/O loses no acknowledged write, and the program survives it") {
  program_world w;
  w.start_blkback({"--type", "qdisk", "--persistent-grants", "0"});
  const std::string fdir = device_address{front_dom, back_dom, "vbd", vdev}.frontend_dir();
  const std::string bdir = device_address{front_dom, back_dom, "qdisk", vdev}.backend_dir();
  int acked_pipe[2];
  REQUIRE(::pipe(acked_pipe) == 0);
  const pid_t guest = ::fork();
  REQUIRE(guest >= 0);
  if (guest == 0) {
    // The guest: writes page after page, reporting each acknowledged id, until it is killed.
    ::close(acked_pipe[0]);
    auto s = xen::xs_store::open();
    if (!s) ::_exit(3);
    auto fev = rig<>::open_evtchn(w.m, front_dom);
    grants_t fgr{w.m, front_dom};
    front_t fe{*s, fev, fgr, front_dom, vdev};
    if (!fe.start() || !pump(*s, fe, [&] { return fe.connected(); })) ::_exit(4);
    std::array<grant_ref, 8> refs{};
    auto pages = fgr.share(back_dom, refs, true);
    if (!pages) ::_exit(5);
    for (std::uint32_t n = 0;; ++n) {
      auto* p = static_cast<std::byte*>(pages->data()) + (n % 8) * 4096;
      fill(p, 4096, n);
      auto rsp = roundtrip(fe, fev, rig<>::rw(blkif::op_write, n, (n % 1000) * 8, {blkif::segment{refs[n % 8], 0, 7}}));
      if (rsp.status != blkif::rsp_okay) ::_exit(6);
      if (::write(acked_pipe[1], &n, sizeof n) != sizeof n) ::_exit(7);
    }
  }
  ::close(acked_pipe[1]);
  // Let it write for a while, then kill it without warning.
  std::vector<std::uint32_t> acked;
  const auto until = clock_type::now() + std::chrono::seconds(20);
  while (acked.size() < 300 && clock_type::now() < until) {
    std::uint32_t n;
    if (::read(acked_pipe[0], &n, sizeof n) != sizeof n) break;
    acked.push_back(n);
  }
  ::kill(guest, SIGKILL);
  int st = 0;
  ::waitpid(guest, &st, 0);
  std::uint32_t n;
  while (::read(acked_pipe[0], &n, sizeof n) == sizeof n) acked.push_back(n);
  ::close(acked_pipe[0]);
  REQUIRE(acked.size() >= 300);
  // Every acknowledged write is in the file (the last one to each sector wins).
  const auto f = w.file();
  std::vector<std::uint32_t> last(1000, ~0u);
  for (auto a : acked) last[a % 1000] = a;
  std::vector<std::byte> want(4096);
  for (std::uint32_t slot = 0; slot < 1000; ++slot) {
    if (last[slot] == ~0u) continue;
    fill(want.data(), 4096, last[slot]);
    // A later unacknowledged write to the same sector may also have landed: accept either.
    const bool same = std::memcmp(f.data() + slot * 4096, want.data(), 4096) == 0;
    std::vector<std::byte> next(4096);
    fill(next.data(), 4096, last[slot] + 1000);
    const bool newer = std::memcmp(f.data() + slot * 4096, next.data(), 4096) == 0;
    CHECK_MESSAGE((same || newer), "sector slot " << slot << " lost write " << last[slot]);
  }
  // The toolstack removes the dead guest's frontend directory; the program closes and
  // stays alive until told to stop.
  auto s = xen::xs_store::open();
  REQUIRE(s);
  REQUIRE(s->remove(no_tx, fdir));
  std::string state_text;
  for (int i = 0; i < 500; ++i) {
    state_text = s->read(no_tx, bdir + "/state").value_or("");
    if (state_text == "6") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(state_text == "6");
  int status = 0;
  CHECK(::waitpid(w.blkback, &status, WNOHANG) == 0);  // still running
  ::kill(w.blkback, SIGTERM);
  CHECK(wait_exit(w.blkback, 15) == 0);
  w.blkback = -1;
}

TEST_CASE("xenbus-blkback --serve: devices the toolstack adds are served from their params, SIGTERM closes them") {
  program_world w;
  REQUIRE(w.m.inheritable());
  w.launch({XENBUS_BLKBACK_BINARY, "--serve", "--type", "qdisk", "--machine-fd", std::to_string(w.m.fd()), "--pid-file",
            w.pid_file, "--close-timeout-ms", "3000"});
  auto s = xen::xs_store::open();
  REQUIRE(s);
  REQUIRE(add_qdisk(*s, vdev, "aio:" + w.image));
  auto fev = rig<>::open_evtchn(w.m, front_dom);
  grants_t fgr{w.m, front_dom};
  front_t fe{*s, fev, fgr, front_dom, vdev};
  REQUIRE(fe.start());
  REQUIRE(pump(*s, fe, [&] { return fe.connected(); }));

  std::array<grant_ref, 2> refs{};
  auto pages = fgr.share(back_dom, refs, true);
  REQUIRE(pages);
  auto* out = static_cast<std::byte*>(pages->data());
  auto* in = out + 4096;
  fill(out, 4096, 77);
  auto expect = w.file();
  REQUIRE(roundtrip(fe, fev, rig<>::rw(blkif::op_write, 1, 4000, {blkif::segment{refs[0], 0, 7}})).status ==
          blkif::rsp_okay);
  std::memcpy(expect.data() + 4000 * 512, out, 4096);
  CHECK(w.file() == expect);
  REQUIRE(roundtrip(fe, fev, rig<>::rw(blkif::op_read, 2, 4000, {blkif::segment{refs[1], 0, 7}})).status ==
          blkif::rsp_okay);
  CHECK(std::memcmp(in, out, 4096) == 0);

  // A qcow2 disk is not ours to serve: after the retries, the reason is in its error node.
  REQUIRE(add_qdisk(*s, vdev + 16, "qcow2:" + w.image));
  const std::string err =
      "/local/domain/0/error/backend/qdisk/" + std::to_string(front_dom) + "/" + std::to_string(vdev + 16) + "/error";
  std::string text;
  for (int i = 0; i < 500 && text.empty(); ++i) {
    text = s->read(no_tx, err).value_or("");
    if (text.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(text.starts_with("22 probe: params has an image format other than raw"));
  CHECK(roundtrip(fe, fev, rig<>::rw(blkif::op_read, 3, 4000, {blkif::segment{refs[1], 0, 7}})).status ==
        blkif::rsp_okay);

  // SIGTERM: the device closes (our frontend follows), the program exits 0; the directories
  // stay for the toolstack.
  const auto t0 = clock_type::now();
  ::kill(w.blkback, SIGTERM);
  CHECK(pump(*s, fe, [&] { return fe.own() == state::closed; }));
  CHECK(wait_exit(w.blkback, 10) == 0);
  CHECK(clock_type::now() - t0 < std::chrono::seconds(3));
  w.blkback = -1;
  CHECK(s->read(no_tx, device_address{front_dom, back_dom, "qdisk", vdev}.backend_dir() + "/state").value_or("") ==
        "6");
  CHECK(w.file() == expect);
}

TEST_CASE("xenbus-blkback --serve refuses the options of a single device, and they refuse its own") {
  const std::vector<std::vector<std::string>> refused = {
      {"--serve", "--image", "/dev/null"},
      {"--serve", "--domid", "1"},
      {"--serve", "--devid", "51712"},
      {"--serve", "--read-only"},
      {"--serve", "--create"},
      {"--serve", "--spin-us", "10"},
      {"--serve", "--profile"},
      {"--image", "/dev/null", "--domid", "1", "--devid", "51712", "--close-timeout-ms", "100"},
  };
  for (auto args : refused) {
    args.insert(args.begin(), XENBUS_BLKBACK_BINARY);
    const pid_t pid = spawn(args);
    REQUIRE(pid > 0);
    CHECK_MESSAGE(wait_exit(pid, 10) == 2, args[1] << " " << args[2]);
  }
}

}  // namespace

TEST_CASE(
    "xenbus-blkback --grant-copy: data by grant copy, feature-persistent = 0, a bad grant answered with an error") {
  program_world w;
  w.start_blkback({"--grant-copy"});
  auto s = xen::xs_store::open();
  REQUIRE(s);
  const std::string fdir = device_address{front_dom, back_dom, "vbd", vdev}.frontend_dir();
  const std::string bdir = device_address{front_dom, back_dom, "vbd", vdev}.backend_dir();
  REQUIRE(s->write(no_tx, fdir + "/feature-persistent", "1"));  // asked for, and refused
  auto fev = rig<>::open_evtchn(w.m, front_dom);
  grants_t fgr{w.m, front_dom};
  front_t fe{*s, fev, fgr, front_dom, vdev, frontend_options{}};
  REQUIRE(fe.start());
  REQUIRE(pump(*s, fe, [&] { return fe.connected(); }));
  CHECK(s->read(no_tx, bdir + "/feature-persistent").value_or("") == "0");

  std::array<grant_ref, 11> refs{};
  auto pages = fgr.share(back_dom, refs, true);
  REQUIRE(pages);
  auto page = [&](unsigned i) { return static_cast<std::byte*>(pages->data()) + i * 4096; };
  for (unsigned i = 0; i < 11; ++i) fill(page(i), 4096, 700 + i);
  auto expect = w.file();
  std::vector<blkif::segment> segs;
  for (unsigned i = 0; i < 11; ++i) segs.push_back(blkif::segment{refs[i], 0, 7});
  REQUIRE(roundtrip(fe, fev, rig<>::rw(blkif::op_write, 1, 4000, segs)).status == blkif::rsp_okay);
  for (unsigned i = 0; i < 11; ++i) std::memcpy(expect.data() + 4000 * 512 + i * 4096, page(i), 4096);
  CHECK(w.file() == expect);
  std::memset(page(0), 0, 4096);
  REQUIRE(roundtrip(fe, fev, rig<>::rw(blkif::op_read, 2, 4008, {blkif::segment{refs[0], 0, 7}})).status ==
          blkif::rsp_okay);
  CHECK(std::memcmp(page(0), expect.data() + 4008 * 512, 4096) == 0);
  // A reference never granted, after a good one: an error, and nothing of it in the file.
  CHECK(roundtrip(fe, fev, rig<>::rw(blkif::op_write, 3, 0, {blkif::segment{refs[1], 0, 7}, {2000, 0, 7}})).status ==
        blkif::rsp_error);
  CHECK(w.file() == expect);
  CHECK(roundtrip(fe, fev, rig<>::rw(blkif::op_read, 4, 0, {blkif::segment{refs[1], 0, 7}})).status == blkif::rsp_okay);

  ::kill(w.blkback, SIGTERM);
  CHECK(pump(*s, fe, [&] { return fe.own() == state::closed; }));
  CHECK(wait_exit(w.blkback, 10) == 0);
  w.blkback = -1;
  CHECK(w.file() == expect);
}
