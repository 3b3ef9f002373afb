// xenbus-xsring-lab: the lab's probes of dom0's xenstored (tests/xenlab/scenarios/7x-xenstored*.sh).
// In a domU it is the hostile guest program, speaking raw xenstore messages through the kernel's
// /dev/xen/xenbus: quotas, probing other domains, privileged requests, watches it never reads.
// In dom0 it plays a hostile guest kernel by writing that guest's xenstore page itself (mapped as
// the xenstored maps it), reads the page's control fields, and times dom0's own requests.
// Output lines: "PASS name detail", "FAIL name detail", "INFO text", "FIGURE name value unit".
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/xen/xenstored.hpp>
#include <xenbus/ring/xenstore_page.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace {

namespace xs = xenbus::xenstore;
using T = xs::msg_type;
using namespace std::string_view_literals;

int failures = 0;
void pass(const std::string& name, const std::string& detail) {
  std::printf("PASS %s %s\n", name.c_str(), detail.c_str());
}
void fail(const std::string& name, const std::string& detail) {
  std::printf("FAIL %s %s\n", name.c_str(), detail.c_str());
  ++failures;
}
void info(const std::string& text) { std::printf("INFO %s\n", text.c_str()); }
void figure(const std::string& name, double v, const char* unit) {
  std::printf("FIGURE %s %.1f %s\n", name.c_str(), v, unit);
}
void expect(const std::string& name, bool ok, const std::string& detail) {
  ok ? pass(name, detail) : fail(name, detail);
}

/// One raw conversation with xenstored through the guest kernel's /dev/xen/xenbus: the kernel
/// forwards each message over the domain's ring (watches it registers on our behalf).
class xenbus_dev {
 public:
  struct reply {
    T type = T::invalid;
    std::string payload;
    int sys_errno = 0;  ///< the kernel refused the write itself (e.g. a watch over quota)
    bool ok() const { return sys_errno == 0 && type != T::error; }
    std::string what() const {
      if (sys_errno) return std::string{"kernel: "} + std::strerror(sys_errno);
      if (type == T::error) return payload.substr(0, payload.find('\0'));
      return "OK";
    }
  };

  xenbus_dev() : fd_{::open(xs::xenbus_device, O_RDWR | O_CLOEXEC)} {}
  ~xenbus_dev() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  /// Sends one request; without `wait`, returns at once (its reply stays queued unread).
  reply ask(T t, std::string_view payload, std::uint32_t tx = 0, bool wait = true) {
    std::string m(xs::header_size, '\0');
    const std::uint32_t id = ++req_;
    xs::encode_header(xs::header{static_cast<std::uint32_t>(t), id, tx, static_cast<std::uint32_t>(payload.size())},
                      std::span<char, xs::header_size>{m.data(), xs::header_size});
    m += payload;
    if (::write(fd_, m.data(), m.size()) != static_cast<ssize_t>(m.size())) return reply{T::invalid, {}, errno};
    if (!wait) return {};
    for (;;) {
      reply r = next();
      if (r.sys_errno || r.type != T::watch_event) return r;
      ++events_;
    }
  }
  /// The next message the kernel hands us (reply or watch event).
  reply next() {
    char h[xs::header_size];
    if (!read_all(h, sizeof h)) return reply{T::invalid, {}, errno ? errno : EIO};
    const auto hdr = xs::decode_header(std::span<const char, xs::header_size>{h, xs::header_size});
    std::string p(hdr.len, '\0');
    if (hdr.len > xs::payload_max || !read_all(p.data(), p.size())) return reply{T::invalid, {}, EIO};
    return reply{hdr.kind(), p, 0};
  }
  std::uint64_t events() const { return events_; }

 private:
  bool read_all(char* to, std::size_t n) {
    while (n > 0) {
      const ssize_t got = ::read(fd_, to, n);
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        return false;
      }
      to += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }
  int fd_;
  std::uint32_t req_ = 0;
  std::uint64_t events_ = 0;
};

std::string z(std::string_view s) { return std::string{s} + '\0'; }

/// In a domU: every quota of an unprivileged domain is hit, with the error a client sees.
int guest_quotas() {
  xenbus_dev dev;
  if (!dev.ok()) {
    fail("guest.open", std::string{"/dev/xen/xenbus: "} + std::strerror(errno));
    return 1;
  }
  // Nodes: the domain's own count includes what it already owns (its home, data/, devices).
  int made = 0;
  xenbus_dev::reply r;
  for (; made < 1200; ++made) {
    r = dev.ask(T::write, z("data/q/n" + std::to_string(made)) + "x");
    if (!r.ok()) break;
  }
  expect("quota.nodes", r.what() == "ENOSPC" && made > 900, std::to_string(made) + " nodes made, then " + r.what());
  (void)dev.ask(T::rm, z("data/q"));
  r = dev.ask(T::write, z("data/size") + std::string(2049, 's'));
  expect("quota.node-size", r.what() == "ENOSPC", "a 2049-byte value: " + r.what());
  r = dev.ask(T::write, z("data/size") + std::string(2048, 's'));
  expect("quota.node-size-fits", r.ok(), "a 2048-byte value: " + r.what());
  const std::string self = dev.ask(T::read, z("domid")).payload;  // libxl writes <home>/domid
  r = dev.ask(T::set_perms, z("data/size") + z("n" + self) + z("r1") + z("r2") + z("r3") + z("r4") + z("r5") + z("r6"));
  expect("quota.perms", r.what() == "ENOSPC", "6 entries after the owner: " + r.what());
  // Watches: the kernel's own (frontends, control/shutdown, ...) count too.
  int watches = 0;
  for (; watches < 200; ++watches) {
    r = dev.ask(T::watch, z("data/w" + std::to_string(watches)) + z("t" + std::to_string(watches)));
    if (!r.ok()) break;
  }
  expect("quota.watches",
         (r.what() == "E2BIG" || r.what().find("Argument list too long") != std::string::npos) && watches > 64 &&
             watches <= 128,
         std::to_string(watches) + " watches set, then " + r.what());
  for (int i = 0; i < watches; ++i)
    (void)dev.ask(T::unwatch, z("data/w" + std::to_string(i)) + z("t" + std::to_string(i)));
  // Transactions.
  std::vector<std::uint32_t> txs;
  for (int i = 0; i < 20; ++i) {
    r = dev.ask(T::transaction_start, "\0"sv);
    if (!r.ok()) break;
    txs.push_back(static_cast<std::uint32_t>(std::strtoul(r.payload.c_str(), nullptr, 10)));
  }
  expect("quota.transactions", r.what() == "ENOSPC" && txs.size() == 10,
         std::to_string(txs.size()) + " open, then " + r.what());
  for (auto t : txs) (void)dev.ask(T::transaction_end, "F\0"sv, t);
  // Outstanding requests: 60 sent before any reply is read; the server stops reading at its
  // quota and goes on as replies are taken; every one is answered.
  for (int i = 0; i < 60; ++i) (void)dev.ask(T::read, z("data/size"), 0, false);
  int answered = 0;
  for (int i = 0; i < 60; ++i) {
    auto m = dev.next();
    if (m.type == T::read) ++answered;
    if (m.type == T::watch_event) --i;
  }
  expect("quota.outstanding", answered == 60, std::to_string(answered) + " of 60 pipelined reads answered");
  return failures ? 1 : 0;
}

/// In a domU: other domains' nodes, dom0's, and privileged requests are refused.
int guest_probe(const std::string& other) {
  xenbus_dev dev;
  if (!dev.ok()) {
    fail("guest.open", std::string{"/dev/xen/xenbus: "} + std::strerror(errno));
    return 1;
  }
  struct probe {
    const char* name;
    T type;
    std::string payload;
    const char* want;
  };
  const std::string od = "/local/domain/" + other;
  const std::vector<probe> probes = {
      {"read-dom0", T::read, z("/local/domain/0/name"), "EACCES"},
      {"list-dom0", T::directory, z("/local/domain/0"), "EACCES"},
      {"list-backends", T::directory, z("/local/domain/0/backend"), "EACCES"},
      {"read-other", T::read, z(od + "/name"), "EACCES"},
      {"list-other", T::directory, z(od), "EACCES"},
      {"perms-other", T::get_perms, z(od), "EACCES"},
      {"write-other", T::write, z(od + "/data/x") + "y", "EACCES"},
      {"rm-other", T::rm, z(od + "/data"), "EACCES"},
      {"write-tool", T::write, z("/tool/x") + "y", "EACCES"},
      {"write-root", T::write, z("/x") + "y", "EACCES"},
      {"mkdir-local", T::mkdir, z("/local/domain/999"), "EACCES"},
      {"list-domains", T::directory, z("/local/domain"), "EACCES"},
      {"give-away", T::set_perms, z("data") + z("n0"), "EPERM"},
      {"introduce", T::introduce, z("77") + z("1") + z("1"), "EACCES"},
      {"release", T::release, z(other), "EACCES"},
      {"is-introduced", T::is_domain_introduced, z(other), "EACCES"},
      {"set-target", T::set_target, z("1") + z(other), "EACCES"},
      {"resume", T::resume, z(other), "EACCES"},
      {"control", T::control, z("print") + z("hello"), "EACCES"},
      {"special-perms", T::set_perms, z("@releaseDomain") + z("n0") + z("r1"), "EACCES"},
  };
  for (const auto& p : probes) {
    const auto r = dev.ask(p.type, p.payload);
    expect(std::string{"probe."} + p.name, r.what() == p.want, "want " + std::string{p.want} + ", got " + r.what());
  }
  // What it may do: its own home, and the path of any domain.
  auto r = dev.ask(T::write, z("data/probe") + "mine");
  expect("probe.own-write", r.ok(), r.what());
  r = dev.ask(T::read, z("data/probe"));
  expect("probe.own-read", r.ok() && r.payload == "mine", r.what());
  r = dev.ask(T::get_domain_path, z(other));
  expect("probe.domain-path", r.payload == z(od), r.what() + " " + r.payload.c_str());
  return failures ? 1 : 0;
}

/// In a domU: `k` watches on its own data/flood, then nothing is ever read for `seconds`.
int guest_watch(int k, int seconds) {
  xenbus_dev dev;
  if (!dev.ok()) return 1;
  for (int i = 0; i < k; ++i) {
    auto r = dev.ask(T::watch, z("data/flood") + z("f" + std::to_string(i)));
    if (!r.ok()) {
      info("watch " + std::to_string(i) + ": " + r.what());
      break;
    }
  }
  std::printf("INFO %d watches set on data/flood; not reading for %d s\n", k, seconds);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds{seconds});
  return 0;
}

xenbus::xenstore_domain_interface_layout* map_page(std::optional<xenbus::xen::ring_mapper>& m,
                                                   std::optional<xenbus::xen::ring_mapper::mapping>& page,
                                                   xenbus::domid_t domid) {
  auto mapper = xenbus::xen::ring_mapper::open();
  if (!mapper) {
    fail("map", std::string{"gntdev: "} + std::strerror(mapper.error()));
    return nullptr;
  }
  m.emplace(std::move(*mapper));
  std::uint64_t mfn = 0;
  if (auto c = xs::client::connect()) {
    if (auto v = c->read("/local/domain/" + std::to_string(domid) + "/store/ring-ref"))
      mfn = std::strtoull(v->c_str(), nullptr, 10);
  }
  auto p = m->map_ring(domid, mfn);
  if (!p) {
    fail("map", "domain " + std::to_string(domid) + "'s xenstore page: " + std::strerror(p.error()));
    return nullptr;
  }
  page.emplace(std::move(*p));
  return static_cast<xenbus::xenstore_domain_interface_layout*>(page->data());
}

std::uint32_t ld(std::uint32_t& f) { return std::atomic_ref(f).load(std::memory_order_acquire); }

/// In dom0: the control fields of a guest's page.
int peek(xenbus::domid_t domid) {
  std::optional<xenbus::xen::ring_mapper> m;
  std::optional<xenbus::xen::ring_mapper::mapping> page;
  auto* x = map_page(m, page, domid);
  if (!x) return 1;
  std::printf("INFO dom%u page: req %u..%u rsp %u..%u features %u connection %u\n", domid, ld(x->req_cons),
              ld(x->req_prod), ld(x->rsp_cons), ld(x->rsp_prod), ld(x->server_features), ld(x->connection));
  std::printf("error=%u\n", ld(x->error));
  return 0;
}

/// In dom0: writes what a hostile guest kernel would into its page.
int scribble(xenbus::domid_t domid, std::string_view mode) {
  std::optional<xenbus::xen::ring_mapper> m;
  std::optional<xenbus::xen::ring_mapper::mapping> page;
  auto* x = map_page(m, page, domid);
  if (!x) return 1;
  const std::uint32_t cons = ld(x->req_cons), prod = ld(x->req_prod);
  if (mode == "req-prod-ahead") {
    std::atomic_ref(x->req_prod).store(cons + 5000, std::memory_order_release);
  } else if (mode == "oversized") {
    char h[xs::header_size];
    xs::encode_header(xs::header{static_cast<std::uint32_t>(T::write), 1, 0, 100000},
                      std::span<char, xs::header_size>{h, xs::header_size});
    for (std::uint32_t i = 0; i < xs::header_size; ++i) x->req[(prod + i) & 1023] = h[i];
    std::atomic_ref(x->req_prod).store(prod + static_cast<std::uint32_t>(xs::header_size), std::memory_order_release);
  } else {
    fail("scribble", "unknown mode");
    return 2;
  }
  info("dom" + std::to_string(domid) + " page scribbled (" + std::string{mode} + "): req " + std::to_string(cons) +
       ".." + std::to_string(ld(x->req_prod)));
  return 0;
}

/// In dom0: `n` writes through the socket, timed; prints the mean as a figure.
int dom0_writes(int n, const std::string& path, const std::string& name) {
  auto c = xs::client::connect();
  if (!c) {
    fail("dom0.connect", "the socket");
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i)
    if (auto r = c->write(path, std::to_string(i)); !r) {
      fail("dom0.write", std::string{r.error().name()});
      return 1;
    }
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  figure(name, us, "us");
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: xenbus-xsring-lab guest-quotas | guest-probe OTHER_DOMID | guest-watch K SECONDS\n"
               "       xenbus-xsring-lab peek DOMID | scribble DOMID req-prod-ahead|oversized\n"
               "       xenbus-xsring-lab dom0-writes N PATH NAME\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string_view cmd = argc > 1 ? argv[1] : "";
  if (cmd == "guest-quotas") return guest_quotas();
  if (cmd == "guest-probe" && argc == 3) return guest_probe(argv[2]);
  if (cmd == "guest-watch" && argc == 4) return guest_watch(std::atoi(argv[2]), std::atoi(argv[3]));
  if (cmd == "peek" && argc == 3) return peek(static_cast<xenbus::domid_t>(std::atoi(argv[2])));
  if (cmd == "scribble" && argc == 4) return scribble(static_cast<xenbus::domid_t>(std::atoi(argv[2])), argv[3]);
  if (cmd == "dom0-writes" && argc == 5) return dom0_writes(std::atoi(argv[2]), argv[3], argv[4]);
  return usage();
}
