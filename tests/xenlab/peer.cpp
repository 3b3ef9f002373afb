// xenbus-xenlab-peer: the cross-domain programs of the QEMU lab (scenarios 10-adapters and 50-notify), and the ring
// runs on the POSIX machine as a check off Xen.
#include "peer_adapters.hpp"
#include "peer_rings.hpp"
#include "peer_support.hpp"

#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>

namespace {

using namespace xenlab;
using xenbus::domid_t;
using xenbus::no_tx;

constexpr const char* usage_text =
    "usage: xenbus-xenlab-peer COMMAND [OPTIONS]\n"
    "\n"
    "The cross-domain checks of the xenbus QEMU lab. Every check prints one line (PASS, FAIL,\n"
    "INFO or FIGURE); the exit status is 0 only if every check passed.\n"
    "\n"
    "  adapters-domu [--backend-domid N]   in the domU: event channel, grant and xenstore\n"
    "                                       checks against dom0 (start it first)\n"
    "  adapters-dom0 --domid N              in dom0: the other side, against domU N\n"
    "  ring-front [--backend-domid N] [RUN OPTIONS]\n"
    "                                       in the domU: the frontend of the ring runs, on\n"
    "                                       pages it grants and an event channel it offers\n"
    "  ring-back --domid N                  in dom0: their backend; prints the figures\n"
    "  posix-rings [RUN OPTIONS]            the same runs between two threads on the POSIX\n"
    "                                       machine (no Xen needed)\n"
    "\n"
    "RUN OPTIONS (the frontend decides, the backend follows):\n"
    "  --seconds S          length of each run (default 1.5)\n"
    "  --loads K,K...       requests in flight of the notify runs (default 1,32)\n"
    "  --streams P:O,...    streams: payload blkif or netif_tx, ring-page-order 0-2\n"
    "                       (default blkif:0,netif_tx:0)\n"
    "  --rounds N           repeat the whole plan N times (default 1)\n"
    "  --sleep-bound-us N   moderated sleeps end after N us (default 200)\n"
    "  --poll-us N          polled consumers look at the ring N us first (default 25)\n";

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "xenbus-xenlab-peer: %s\n\n%s", why.c_str(), usage_text);
  std::exit(2);
}

std::uint64_t number(std::string_view text, std::uint64_t max, const char* what) {
  auto v = xenbus::xenstore::parse_decimal(text, max);
  if (!v) usage_error(std::string(what) + ": \"" + std::string(text) + "\" is not a decimal <= " + std::to_string(max));
  return *v;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = text.find(sep);
    out.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

struct options {
  std::optional<domid_t> domid;
  domid_t backend = 0;
  session_options session;
  std::vector<unsigned> loads{1, 32};
  std::vector<run_spec> streams{{impl::c, mode::stream, payload::blkif, 0, 0},
                                {impl::c, mode::stream, payload::netif_tx, 0, 0}};
  unsigned rounds = 1;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error("missing value after " + std::string(arg));
    const std::string_view val = argv[++i];
    if (arg == "--domid") {
      o.domid = static_cast<domid_t>(number(val, 0x7fef, "--domid"));
    } else if (arg == "--backend-domid") {
      o.backend = static_cast<domid_t>(number(val, 0x7fef, "--backend-domid"));
    } else if (arg == "--seconds") {
      char* end = nullptr;
      const std::string v(val);
      o.session.seconds = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(o.session.seconds > 0 && o.session.seconds <= 60))
        usage_error("--seconds: want a number of seconds in (0, 60]");
    } else if (arg == "--loads") {
      o.loads.clear();
      for (auto k : split(val, ',')) o.loads.push_back(static_cast<unsigned>(number(k, 32, "--loads")));
    } else if (arg == "--streams") {
      o.streams.clear();
      for (auto s : split(val, ',')) {
        auto parts = split(s, ':');
        if (parts.size() != 2 || (parts[0] != "blkif" && parts[0] != "netif_tx"))
          usage_error("--streams: want PAYLOAD:ORDER, PAYLOAD blkif or netif_tx");
        o.streams.push_back({impl::c, mode::stream, parts[0] == "blkif" ? payload::blkif : payload::netif_tx,
                             static_cast<unsigned>(number(parts[1], max_ring_order, "--streams order")), 0});
      }
    } else if (arg == "--rounds") {
      o.rounds = static_cast<unsigned>(number(val, 100, "--rounds"));
    } else if (arg == "--sleep-bound-us") {
      o.session.tuning.sleep_bound_ns = static_cast<long>(number(val, 1'000'000, "--sleep-bound-us") * 1000);
    } else if (arg == "--poll-us") {
      o.session.tuning.poll_budget = std::chrono::microseconds(number(val, 1'000'000, "--poll-us"));
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  for (unsigned k : o.loads)
    if (k == 0) usage_error("--loads: at least one request in flight");
  return o;
}

std::span<std::byte> bytes_of(void* p, std::size_t n) { return {static_cast<std::byte*>(p), n}; }

// ---- Ring runs between two domains ----------------------------------------------------------

// The domU publishes the session under its home, H = /local/domain/<domU>/data/xenlab/ring:
// ring-ref (the session's grant references, space-separated), event-channel, and
// frontend = "ready"; dom0 answers in H/backend ("connected", then "closed" once it has
// unmapped), a node the domU creates first. The domU removes H at the end.
std::string ring_home(domid_t d) { return "/local/domain/" + std::to_string(d) + "/data/xenlab/ring"; }

int ring_front(const options& o) {
  auto ev = open_xen_evtchn("ring-front");
  auto gs = xenbus::xen::gntshr::open();
  if (!gs) give_up("ring-front", "xengntshr_open (/dev/xen/gntalloc) failed");
  auto xs = xenbus::xen::xs_store::open();
  if (!xs) give_up("ring-front", "xs_open failed");
  auto self = xs->read(no_tx, "domid");
  if (!self) give_up("ring-front", "reading domid: " + describe(self.error()));
  const std::string h = ring_home(static_cast<domid_t>(number(*self, 0x7fef, "domid")));
  (void)xs->remove(no_tx, h);
  if (!xs->write(no_tx, h + "/backend", "")) give_up("ring-front", "cannot write " + h + "/backend");

  std::array<xenbus::grant_ref, session_pages> refs{};
  auto pages = gs->share(o.backend, refs, true);
  if (!pages) give_up("ring-front", "sharing " + std::to_string(session_pages) + " pages: " + describe(pages.error()));
  auto port = ev.bind_unbound(o.backend);
  if (!port) give_up("ring-front", "bind_unbound: " + describe(port.error()));
  std::string ref_text;
  for (auto r : refs) ref_text += (ref_text.empty() ? "" : " ") + std::to_string(r);
  if (!xs->write(no_tx, h + "/ring-ref", ref_text) || !xs->write(no_tx, h + "/event-channel", std::to_string(*port)) ||
      !xs->write(no_tx, h + "/frontend", "ready"))
    give_up("ring-front", "cannot publish the session under " + h);
  XENLAB_INFO("ring-front: %zu pages granted to d%u (refs %s), port %u offered; waiting for the backend", session_pages,
              o.backend, ref_text.c_str(), *port);
  auto connected = await_node(*xs, h + "/backend", [](std::string_view v) { return !v.empty(); });
  if (!connected || *connected != "connected")
    give_up("ring-front", "the backend did not connect: " + (connected ? *connected : describe(connected.error())));

  evtchn_link chan(ev, *port);
  const bool ok =
      front_session(chan, bytes_of(pages->data(), pages->size()), make_plan(o.loads, o.streams, o.rounds), o.session);
  auto closed = await_value(*xs, h + "/backend", "closed");
  if (!closed) XENLAB_FAIL("ring-front the backend did not unmap the session: %s", describe(closed.error()).c_str());
  (void)xs->remove(no_tx, h);  // the session is over: leave the domU's home as it was
  return ok && failures().load(std::memory_order_relaxed) == 0 ? 0 : 1;
}

int ring_back(const options& o) {
  if (!o.domid) usage_error("ring-back needs --domid");
  const domid_t domu = *o.domid;
  auto ev = open_xen_evtchn("ring-back");
  auto gt = xenbus::xen::gnttab::open();
  if (!gt) give_up("ring-back", "xengnttab_open (/dev/xen/gntdev) failed");
  auto xs = xenbus::xen::xs_store::open();
  if (!xs) give_up("ring-back", "xs_open failed");
  const std::string h = ring_home(domu);
  auto ready = await_value(*xs, h + "/frontend", "ready");
  if (!ready) give_up("ring-back", "waiting for the frontend: " + describe(ready.error()));

  // The domU's references and port, checked: exactly session_pages decimal references.
  auto ref_text = xs->read(no_tx, h + "/ring-ref");
  auto port_text = xs->read(no_tx, h + "/event-channel");
  if (!ref_text || !port_text) give_up("ring-back", "reading the session under " + h);
  const auto words = split(*ref_text, ' ');
  if (words.size() != session_pages)
    give_up("ring-back",
            "ring-ref has " + std::to_string(words.size()) + " references, want " + std::to_string(session_pages));
  std::array<xenbus::grant_ref, session_pages> refs{};
  for (std::size_t i = 0; i < session_pages; ++i)
    refs[i] = static_cast<xenbus::grant_ref>(number(words[i], 0xffffffffu, "ring-ref"));
  const auto remote = static_cast<xenbus::evtchn_port>(number(*port_text, 0xffffffffu, "event-channel"));

  bool ok = false;
  {
    auto m = gt->map(domu, refs, true);
    auto local = ev.bind_interdomain(domu, remote);
    if (!check(m && local, "ring-connect",
               (m ? "mapped " + std::to_string(session_pages) + " pages of d" + std::to_string(domu)
                  : "map: " + describe(m.error())) +
                   (local ? ", port " + std::to_string(remote) + " bound as " + std::to_string(*local)
                          : ", bind_interdomain: " + describe(local.error())))) {
      (void)xs->write(no_tx, h + "/backend", "error");
      return 1;
    }
    if (!xs->write(no_tx, h + "/backend", "connected")) give_up("ring-back", "cannot write " + h + "/backend");
    evtchn_link chan(ev, *local);
    ok = back_session(chan, bytes_of(m->data(), m->size()));
    XENLAB_INFO("ring-back: %llu wakeups without our port's notification",
                static_cast<unsigned long long>(chan.spurious_wakeups));
    (void)ev.unbind(*local);
  }  // unmapped
  (void)xs->write(no_tx, h + "/backend", "closed");
  return ok && failures().load(std::memory_order_relaxed) == 0 ? 0 : 1;
}

// ---- The same runs between two threads on the POSIX machine -----------------------------------

// Pins the calling thread to `cpu`, as xenbus-bench pins its two ends (best effort: on one
// CPU, or where affinity is refused, the threads float and the figures mean less).
bool pin_to(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return std::thread::hardware_concurrency() >= 2 && ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
}

int posix_rings(const options& o) {
  namespace px = xenbus::posix;
  auto m = px::machine::create({.frames = 64, .domains = 2, .grants_per_domain = 64, .ports_per_domain = 8});
  if (!m) give_up("posix-rings", "machine: errno " + errno_text(m.error().sys_errno));
  constexpr domid_t back_dom = 0, front_dom = 1;
  struct offer {
    std::array<xenbus::grant_ref, session_pages> refs;
    xenbus::evtchn_port port;
  };
  std::promise<offer> offered;
  std::promise<void> connected;
  bool back_ok = false;
  std::thread back([&] {
    (void)pin_to(1);
    auto ev = px::evtchn_handle::open(*m, back_dom);
    if (!ev) give_up("posix-rings", "backend evtchn: " + describe(ev.error()));
    px::grant_table gt(*m, back_dom);
    const offer off = offered.get_future().get();
    auto map = gt.map(front_dom, off.refs, true);
    if (!map) give_up("posix-rings", "backend map: " + describe(map.error()));
    auto local = ev->bind_interdomain(front_dom, off.port);
    if (!local) give_up("posix-rings", "bind_interdomain: " + describe(local.error()));
    connected.set_value();
    evtchn_link chan(*ev, *local);
    back_ok = back_session(chan, bytes_of(map->data(), map->size()));
  });
  if (!pin_to(0)) XENLAB_INFO("posix-rings: the two ends are not pinned to CPUs 0 and 1: the figures mean less");
  auto ev = px::evtchn_handle::open(*m, front_dom);
  if (!ev) give_up("posix-rings", "frontend evtchn: " + describe(ev.error()));
  px::grant_table gt(*m, front_dom);
  offer off{};
  auto pages = gt.share(back_dom, off.refs, true);
  if (!pages) give_up("posix-rings", "share: " + describe(pages.error()));
  auto port = ev->bind_unbound(back_dom);
  if (!port) give_up("posix-rings", "bind_unbound: " + describe(port.error()));
  off.port = *port;
  offered.set_value(off);
  connected.get_future().wait();
  evtchn_link chan(*ev, *port);
  const bool front_ok =
      front_session(chan, bytes_of(pages->data(), pages->size()), make_plan(o.loads, o.streams, o.rounds), o.session);
  back.join();
  return front_ok && back_ok && failures().load(std::memory_order_relaxed) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage_error("no command");
  const std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h") {
    std::fputs(usage_text, stdout);
    return 0;
  }
  const options o = parse(argc, argv);
  if (cmd == "adapters-domu") return adapters_domu(o.backend);
  if (cmd == "adapters-dom0") {
    if (!o.domid) usage_error("adapters-dom0 needs --domid");
    return adapters_dom0(*o.domid);
  }
  if (cmd == "ring-front") return ring_front(o);
  if (cmd == "ring-back") return ring_back(o);
  if (cmd == "posix-rings") return posix_rings(o);
  usage_error("unknown command " + std::string(cmd));
}
