// xenbus-blkback: serves a raw image file or a block device to a Xen guest's blkfront, as
// the user-space backend of one vbd device, or (--serve) of every device of backend/<type>/.
// The device logic is blk::backend_device (include/xenbus/hosted/blk/backend.hpp), and the
// service of many devices posix::blk_server (include/xenbus/posix/blk/serve.hpp); this file
// only parses the command line, opens the image and the Xen handles, optionally plays the
// toolstack, and runs a loop.
#include <xenbus/hosted/blk/backend.hpp>
#include <xenbus/hosted/blk/service.hpp>
#include <xenbus/posix/blk/file_image.hpp>
#include <xenbus/posix/blk/serve.hpp>
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

extern "C" {
#include <xenstore.h>
}

namespace {

using namespace xenbus;

struct config {
  std::string image;
  long domid = -1, devid = -1, backend_domid = 0;
  std::string type = "vbd";
  bool read_only = false;
  bool create = false;
  bool serve = false;  // every device of backend/<type>/, on the service and event loop
  std::string pid_file;
  int machine_fd = -1;  // testing: a POSIX machine instead of Xen's devices
  int spin_us = 0;
  long close_timeout_ms = -1;  // --serve: how long SIGTERM waits for the frontends (all at once); -1: 5000
  bool profile = false;  // time the image calls and the loop (off by default: a PV dom0 may read clocks by system call)
  blk::device_options dev{};
};

int usage(const char* argv0, int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: %s --image PATH --domid N --devid N [options]\n"
               "       %s --serve [--type vbd|qdisk] [options]\n"
               "       %s --help | --version\n"
               "Serves a raw image file or a block device to a Xen guest's blkfront, as the\n"
               "backend of one vbd device, or of every device the toolstack creates.\n"
               "  --image PATH               the image file or block device to serve\n"
               "  --domid N                  the frontend's domain\n"
               "  --devid N                  the device id (the frontend's virtual-device: 51712 is xvda)\n"
               "  --backend-domid N          this domain (default 0)\n"
               "  --type vbd|qdisk           serve backend/<type>/<domid>/<devid> (default vbd; the kernel's\n"
               "                             blkback also claims vbd, no kernel driver claims qdisk)\n"
               "  --serve                    serve every device that appears in backend/<type>/, each from\n"
               "                             the image its params node names (PATH, raw:PATH or aio:PATH),\n"
               "                             read-only if its mode node is r (not with --image, --domid,\n"
               "                             --devid, --read-only, --create, --spin-us, --profile)\n"
               "  --close-timeout-ms N       --serve: on SIGTERM wait up to N ms for the frontends to close\n"
               "                             (default 5000, all devices at once)\n"
               "  --read-only                open the image read-only and tell the frontend so\n"
               "  --create                   act as the toolstack: write both directories with their\n"
               "                             permissions, unplug and remove them on exit\n"
               "  --max-ring-page-order N    offer rings of up to 2^N pages (default 4, at most 6)\n"
               "  --max-queues N             offer up to N queues (default 4, at most 64)\n"
               "  --max-indirect-segments N  offer indirect requests of up to N segments (default 256,\n"
               "                             at most 4096; 0: none)\n"
               "  --persistent-grants N      keep up to N pages mapped per queue for a frontend with\n"
               "                             feature-persistent (default 1056; 0: do not offer it)\n"
               "  --grant-copy               move the data by grant copy through a bounce buffer instead of\n"
               "                             mapping the guest's pages (persistent grants are not offered)\n"
               "  --no-discard               do not offer discard\n"
               "  --no-flush                 do not offer flush and barrier\n"
               "  --spin-us N                after work, poll the rings N microseconds before sleeping\n"
               "  --profile                  time the loop and the image calls, reported on exit\n"
               "  --pid-file FILE            write the process id there once the device is set up\n"
               "  --machine-fd FD            (testing) a POSIX machine instead of Xen's devices; the store\n"
               "                             is found as libxenstore finds it ($XENSTORED_PATH)\n"
               "  -h, --help                 print this help and exit\n"
               "  --version                  print the version and exit\n"
               "Stops on SIGINT or SIGTERM after closing the device(s). See xenbus-blkback(8).\n",
               argv0, argv0, argv0);
  return rc;
}

int version() {
  std::printf("xenbus-blkback (xenbus) %d.%d.%d\n", XENBUS_VERSION_MAJOR, XENBUS_VERSION_MINOR, XENBUS_VERSION_PATCH);
  return 0;
}

bool number(const char* text, std::uint64_t max, long& out) {
  auto v = xenstore::parse_decimal(text, max);
  if (!v) return false;
  out = static_cast<long>(*v);
  return true;
}

void log_line(std::string_view line) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  std::fprintf(stderr, "xenbus-blkback: [%5ld.%03ld] %.*s\n", static_cast<long>(ts.tv_sec), ts.tv_nsec / 1000000,
               static_cast<int>(line.size()), line.data());
}

/// The image, with the time spent in each call counted (reported when the program stops):
/// it tells the image's share of the time the backend is busy.
class timed_image {
 public:
  timed_image(posix::file_image& img, bool on) : img_{&img}, on_{on} {}
  const blk::image_geometry& geometry() const noexcept { return img_->geometry(); }
  bool is_device() const noexcept { return img_->is_device(); }
  auto read(std::uint64_t off, std::span<const blk::io_buffer> b) {
    return timed([&] { return img_->read(off, b); });
  }
  auto write(std::uint64_t off, std::span<const blk::io_buffer> b) {
    return timed([&] { return img_->write(off, b); });
  }
  auto flush() {
    return timed([&] { return img_->flush(); });
  }
  auto discard(std::uint64_t off, std::uint64_t len, bool secure) {
    return timed([&] { return img_->discard(off, len, secure); });
  }
  std::chrono::nanoseconds spent() const noexcept { return spent_; }

 private:
  template <class F>
  result<void, blk::image_error> timed(F&& f) {
    if (!on_) return f();
    const auto t0 = std::chrono::steady_clock::now();
    auto r = f();
    spent_ += std::chrono::steady_clock::now() - t0;
    return r;
  }
  posix::file_image* img_;
  bool on_;
  std::chrono::nanoseconds spent_{0};
};
static_assert(blk::block_image<timed_image>);

long ms(std::chrono::nanoseconds d) { return static_cast<long>(d.count() / 1000000); }

void write_pid_file(const config& c) {
  if (c.pid_file.empty()) return;
  if (FILE* f = std::fopen(c.pid_file.c_str(), "w")) {
    std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
    std::fclose(f);
  }
}

/// The toolstack's part, as libxl does it for a disk: both directories in one transaction,
/// each readable by the other end, the frontend's owned by the guest.
class toolstack_nodes {
 public:
  toolstack_nodes(const config& c, std::string backend_dir, std::string frontend_dir)
      : c_{c}, be_{std::move(backend_dir)}, fe_{std::move(frontend_dir)} {}
  ~toolstack_nodes() {
    if (h_) ::xs_close(h_);
  }

  bool create(const std::string& image_kind) {
    h_ = ::xs_open(0);
    if (!h_) return false;
    const auto guest = static_cast<unsigned>(c_.domid), self = static_cast<unsigned>(c_.backend_domid);
    for (int attempt = 0; attempt < 16; ++attempt) {
      const xs_transaction_t t = ::xs_transaction_start(h_);
      if (t == XBT_NULL) return false;
      xs_permissions be_perms[2] = {{self, XS_PERM_NONE}, {guest, XS_PERM_READ}};
      xs_permissions fe_perms[2] = {{guest, XS_PERM_NONE}, {self, XS_PERM_READ}};
      bool ok = ::xs_mkdir(h_, t, be_.c_str()) && ::xs_set_permissions(h_, t, be_.c_str(), be_perms, 2) &&
                ::xs_mkdir(h_, t, fe_.c_str()) && ::xs_set_permissions(h_, t, fe_.c_str(), fe_perms, 2);
      const std::pair<std::string, std::string> nodes[] = {
          {be_ + "/frontend", fe_},
          {be_ + "/frontend-id", std::to_string(guest)},
          {be_ + "/online", "1"},
          {be_ + "/removable", "0"},
          {be_ + "/bootable", "1"},
          {be_ + "/type", image_kind},
          {be_ + "/mode", c_.read_only ? "r" : "w"},
          {be_ + "/params", c_.image},
          {be_ + "/dev", "xvd"},
          {be_ + "/device-type", "disk"},
          {be_ + "/state", "1"},
          {fe_ + "/backend", be_},
          {fe_ + "/backend-id", std::to_string(self)},
          {fe_ + "/virtual-device", std::to_string(c_.devid)},
          {fe_ + "/device-type", "disk"},
          {fe_ + "/state", "1"},
      };
      for (const auto& [path, value] : nodes)
        ok = ok && ::xs_write(h_, t, path.c_str(), value.data(), static_cast<unsigned>(value.size()));
      if (!ok) {
        (void)::xs_transaction_end(h_, t, true);
        return false;
      }
      if (::xs_transaction_end(h_, t, false)) return true;
      if (errno != EAGAIN) return false;
    }
    return false;
  }
  /// Unplug as libxl does: online = 0, then the backend's state Closing.
  void unplug() {
    if (!h_) return;
    (void)::xs_write(h_, XBT_NULL, (be_ + "/online").c_str(), "0", 1);
    (void)::xs_write(h_, XBT_NULL, (be_ + "/state").c_str(), "5", 1);
  }
  std::string frontend_state() {
    if (!h_) return "";
    unsigned len = 0;
    void* v = ::xs_read(h_, XBT_NULL, (fe_ + "/state").c_str(), &len);
    if (!v) return "";
    std::string s(static_cast<const char*>(v), len);
    std::free(v);
    return s;
  }
  void remove() {
    if (!h_) return;
    (void)::xs_rm(h_, XBT_NULL, fe_.c_str());
    (void)::xs_rm(h_, XBT_NULL, be_.c_str());
  }

 private:
  const config& c_;
  std::string be_, fe_;
  xs_handle* h_ = nullptr;
};

/// The loop: event-channel ports to the device, watch events to the device, a signal to
/// stop; it sleeps in one poll() on the three descriptors. The device needs nothing else,
/// so a service's loop that owns these descriptors for many devices can replace this one.
template <class Device, class E, class S>
int run(Device& dev, E& evtchn, S& store, int sfd, const config& c, toolstack_nodes* ts, const timed_image& img) {
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  std::chrono::nanoseconds idle{0};
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    pollfd fds[3] = {{evtchn.fd(), POLLIN, 0}, {sfd, POLLIN, 0}, {store.watch_fd(), POLLIN, 0}};
    // While stopping, look at the frontend's node every 100 ms (nothing of ours watches it).
    const int wait_ms = dev.pending_work() ? 0 : stopping ? 100 : -1;
    const auto asleep = c.profile ? std::chrono::steady_clock::now() : started;
    if (::poll(fds, 3, wait_ms) < 0 && errno != EINTR) {
      std::perror("xenbus-blkback: poll");
      return 1;
    }
    if (c.profile) idle += std::chrono::steady_clock::now() - asleep;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si{};
      while (::read(sfd, &si, sizeof si) == sizeof si) {
      }
      if (!stopping) {
        stopping = true;
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        log_line("stopping: closing the device");
        if (dev.driver().own() == state::closed)
          ;  // nothing to close
        else if (ts)
          ts->unplug();  // as the toolstack: online = 0, backend Closing
        else
          dev.driver().close();
      }
    }
    bool worked = false;
    for (int i = 0; i < 256 && (fds[0].revents & POLLIN); ++i) {
      auto p = evtchn.pending();
      if (!p) break;
      worked = true;
      if (!dev.on_event(*p)) (void)evtchn.unmask(*p);
    }
    if (dev.pending_work()) worked |= dev.serve();
    if (worked && c.spin_us > 0) {
      // Keep looking at the rings for a while: the next request often comes before a wakeup
      // would. Each request served restarts the spin.
      const auto spin = std::chrono::microseconds(c.spin_us);
      for (auto until = std::chrono::steady_clock::now() + spin; std::chrono::steady_clock::now() < until;)
        if (dev.serve_polling() > 0) until = std::chrono::steady_clock::now() + spin;
      (void)dev.serve();  // re-arms req_event: the frontend kicks us once we sleep
    }
    for (int i = 0; i < 256 && (fds[2].revents & POLLIN); ++i) {
      auto ev = store.next_watch_event(0);
      if (!ev) break;
      dev.handle(*ev);
    }
    if (!dev.driver().active()) {
      log_line("device gone: " + dev.driver().reason_text());
      if (ts) ts->remove();
      return 0;
    }
    if (stopping) {
      const state own = dev.driver().own();
      const bool fe_done = !ts || ts->frontend_state() == "6" || ts->frontend_state().empty();
      if ((own == state::closed && fe_done) || std::chrono::steady_clock::now() > deadline) {
        if (own != state::closed) log_line("the frontend did not close in 10 s");
        if (ts) ts->remove();
        log_line(blk::describe(dev.lifetime_stats()));
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        const auto total = std::chrono::steady_clock::now() - started;
        const std::string profile = c.profile ? std::to_string(ms(total - idle)) + " ms awake, of which " +
                                                    std::to_string(ms(img.spent())) + " ms in image calls; "
                                              : std::string();
        log_line("time: " + std::to_string(ms(total)) + " ms running, " + profile + "CPU user " +
                 std::to_string(ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000) + " ms, system " +
                 std::to_string(ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000) + " ms; " +
                 std::to_string(ru.ru_nvcsw) + " voluntary context switches");
        return 0;
      }
    }
  }
}

template <class P, class E, class G>
int serve(const config& c, posix::file_image& file, E& evtchn, G& grants, int sfd) {
  timed_image img{file, c.profile};
  auto store = xen::xs_store::open();
  if (!store) {
    std::fprintf(stderr, "xenbus-blkback: cannot connect to xenstore\n");
    return 1;
  }
  const device_address addr{static_cast<domid_t>(c.domid), static_cast<domid_t>(c.backend_domid), std::string(P::type),
                            static_cast<unsigned>(c.devid)};
  // With --type qdisk the frontend still lives under device/vbd: blkfront looks there.
  const std::string fe_dir = device_address{addr.frontend_domid, 0, "vbd", addr.devid}.frontend_dir();
  std::optional<toolstack_nodes> ts;
  if (c.create) {
    ts.emplace(c, addr.backend_dir(), fe_dir);
    if (!ts->create(img.is_device() ? "phy" : "file")) {
      std::fprintf(stderr, "xenbus-blkback: cannot create the device's directories: %s\n", std::strerror(errno));
      return 1;
    }
    log_line("created " + addr.backend_dir() + " and " + fe_dir);
  }
  blk::backend_device<xen::xs_store, E, G, timed_image, P> dev{
      *store, evtchn, grants, img, addr.backend_domid, addr.frontend_domid, addr.devid, c.dev};
  dev.set_logger(log_line);
  if (auto s = dev.start(); !s) {
    std::fprintf(stderr, "xenbus-blkback: cannot start the backend at %s: %.*s\n", addr.backend_dir().c_str(),
                 static_cast<int>(to_string(s.error().code).size()), to_string(s.error().code).data());
    if (ts) ts->remove();
    return 1;
  }
  write_pid_file(c);
  return run(dev, evtchn, *store, sfd, c, ts ? &*ts : nullptr, img);
}

/// --serve: every device of backend/<type>/ in this domain, each from the image its params
/// node names, on one event loop (store watch, event channels, deadlines, the signal).
/// SIGINT or SIGTERM closes every device at once, bounded by one close timeout.
template <class P, class E, class G>
int serve_all(const config& c, E& evtchn, G& grants, int sfd) {
  auto store = xen::xs_store::open();
  if (!store) {
    std::fprintf(stderr, "xenbus-blkback: cannot connect to xenstore\n");
    return 1;
  }
  posix::event_loop loop;
  if (!loop.ok()) {
    std::fprintf(stderr, "xenbus-blkback: epoll: %s\n", std::strerror(loop.error()));
    return 1;
  }
  service_config sc;
  sc.self = static_cast<domid_t>(c.backend_domid);
  sc.close_timeout = std::chrono::milliseconds(c.close_timeout_ms);
  posix::blk_server<xen::xs_store, E, G, P> server{loop, *store, evtchn, grants, sc, c.dev, log_line};
  if (auto s = server.start(); !s) {
    std::fprintf(stderr, "xenbus-blkback: cannot watch %s: %.*s\n", server.service().root().c_str(),
                 static_cast<int>(to_string(s.error().code).size()), to_string(s.error().code).data());
    return 1;
  }
  log_line("serving every device of " + server.service().root());
  write_pid_file(c);
  bool signalled = false;
  const auto on_signal = loop.add_fd(sfd, [&] {
    signalfd_siginfo si{};
    while (::read(sfd, &si, sizeof si) == sizeof si) {
    }
    signalled = true;
    loop.stop();
  });
  // A store connection that failed is out of the loop: nothing would ever wake it again.
  const auto on_failure = loop.add_poller([&] {
    if (server.service().store_failed()) loop.stop();
    return false;
  });
  loop.run();
  loop.remove(on_signal);
  loop.remove(on_failure);
  if (!signalled) {
    log_line("the store connection failed: stopping");
    return 1;
  }
  log_line("stopping: closing " + std::to_string(server.service().drivers()) + " device(s)");
  const bool clean = server.shut_down();
  log_line(clean ? std::string("every device closed")
                 : "a frontend did not close in " + std::to_string(c.close_timeout_ms) + " ms");
  return 0;
}

/// Opens the event channels and grants (a POSIX machine for tests, else Xen's devices) and
/// returns fn(evtchn, grants).
template <class F>
int with_handles(const config& c, F&& fn) {
  if (c.machine_fd >= 0) {
    auto m = posix::machine::attach(c.machine_fd);
    if (!m) {
      std::fprintf(stderr, "xenbus-blkback: --machine-fd %d: %s\n", c.machine_fd, std::strerror(m.error().sys_errno));
      return 1;
    }
    auto ev = posix::evtchn_handle::open(*m, static_cast<domid_t>(c.backend_domid));
    if (!ev) return 1;
    posix::grant_table grants{*m, static_cast<domid_t>(c.backend_domid)};
    return fn(*ev, grants);
  }
  auto ev = xen::evtchn_handle::open();
  auto grants = xen::gnttab::open();
  if (!ev || !grants) {
    std::fprintf(stderr, "xenbus-blkback: no /dev/xen/evtchn or /dev/xen/gntdev (not a Xen domain, or no privilege)\n");
    return 1;
  }
  return fn(*ev, *grants);
}

/// Returns fn(protocol) for the protocol of --type (the same blkif, served from backend/vbd or backend/qdisk).
template <class F>
int with_protocol(const config& c, F&& fn) {
  return c.type == "qdisk" ? fn(blk::qdisk{}) : fn(blk::vbd{});
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    long v = 0;
    if (a == "--image" && has_value) {
      c.image = argv[++i];
    } else if (a == "--domid" && has_value) {
      if (!number(argv[++i], 0x7fef, c.domid)) return usage(argv[0], 2);
    } else if (a == "--devid" && has_value) {
      if (!number(argv[++i], 0xffffffffu, c.devid)) return usage(argv[0], 2);
    } else if (a == "--backend-domid" && has_value) {
      if (!number(argv[++i], 0x7fef, c.backend_domid)) return usage(argv[0], 2);
    } else if (a == "--type" && has_value) {
      c.type = argv[++i];
      if (c.type != "vbd" && c.type != "qdisk") return usage(argv[0], 2);
    } else if (a == "--read-only") {
      c.read_only = true;
    } else if (a == "--create") {
      c.create = true;
    } else if (a == "--serve") {
      c.serve = true;
    } else if (a == "--close-timeout-ms" && has_value) {
      if (!number(argv[++i], 3600000, c.close_timeout_ms)) return usage(argv[0], 2);
    } else if (a == "--max-ring-page-order" && has_value) {
      if (!number(argv[++i], max_supported_ring_page_order, v)) return usage(argv[0], 2);
      c.dev.max_ring_page_order = static_cast<unsigned>(v);
    } else if (a == "--max-queues" && has_value) {
      if (!number(argv[++i], max_supported_queues, v) || v == 0) return usage(argv[0], 2);
      c.dev.max_queues = static_cast<unsigned>(v);
    } else if (a == "--max-indirect-segments" && has_value) {
      if (!number(argv[++i], blkif::max_indirect_segments_limit, v)) return usage(argv[0], 2);
      c.dev.max_indirect_segments = static_cast<std::uint32_t>(v);
    } else if (a == "--persistent-grants" && has_value) {
      if (!number(argv[++i], 1u << 20, v)) return usage(argv[0], 2);
      c.dev.persistent_grants = static_cast<std::size_t>(v);
      c.dev.offer_persistent = v > 0;
    } else if (a == "--grant-copy") {
      c.dev.path = blk::data_path::copy;
    } else if (a == "--no-discard") {
      c.dev.offer_discard = false;
    } else if (a == "--no-flush") {
      c.dev.offer_flush = false;
    } else if (a == "--spin-us" && has_value) {
      if (!number(argv[++i], 1000000, v)) return usage(argv[0], 2);
      c.spin_us = static_cast<int>(v);
    } else if (a == "--profile") {
      c.profile = true;
    } else if (a == "--pid-file" && has_value) {
      c.pid_file = argv[++i];
    } else if (a == "--machine-fd" && has_value) {
      if (!number(argv[++i], 1u << 20, v)) return usage(argv[0], 2);
      c.machine_fd = static_cast<int>(v);
    } else if (a == "-h" || a == "--help") {
      return usage(argv[0], 0);
    } else if (a == "--version") {
      return version();
    } else {
      return usage(argv[0], 2);
    }
  }
  if (c.serve) {
    // One device's options make no sense for many: each device's image, domain and mode come from the store.
    if (!c.image.empty() || c.domid >= 0 || c.devid >= 0 || c.read_only || c.create || c.spin_us || c.profile)
      return usage(argv[0], 2);
    if (c.close_timeout_ms < 0) c.close_timeout_ms = 5000;  // Linux's wait for each device at shutdown
  } else if (c.image.empty() || c.domid < 0 || c.devid < 0 || c.close_timeout_ms >= 0) {
    return usage(argv[0], 2);
  }

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    std::perror("xenbus-blkback: signalfd");
    return 1;
  }

  if (c.serve) {
    const int rc = with_protocol(c, [&](auto proto) {
      return with_handles(c, [&](auto& ev, auto& grants) { return serve_all<decltype(proto)>(c, ev, grants, sfd); });
    });
    ::close(sfd);
    return rc;
  }
  auto img = posix::file_image::open(c.image, c.read_only);
  if (!img) {
    std::fprintf(stderr, "xenbus-blkback: cannot open %s: %s (%s)\n", c.image.c_str(),
                 std::string(blk::to_string(img.error().code)).c_str(), std::strerror(img.error().sys_errno));
    return 1;
  }
  const auto& g = img->geometry();
  log_line(c.image + ": " + std::to_string(g.bytes) + " bytes, sector size " + std::to_string(g.sector_size) +
           (g.read_only ? ", read-only" : "") + (g.discard ? ", discard" : ""));
  const int rc = with_protocol(c, [&](auto proto) {
    return with_handles(c, [&](auto& ev, auto& grants) { return serve<decltype(proto)>(c, *img, ev, grants, sfd); });
  });
  ::close(sfd);
  return rc;
}
