// Tests include/xenbus/posix/xenstore/ring_service.hpp: dom0's xenstored serving guests' rings on a simulated machine
// (posix::machine grants and event channels), driven by Xen's own libxenstore as the toolstack.
#include "xsring_support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <poll.h>

extern "C" {
#include <xenstore.h>
}

using namespace std::chrono_literals;
using namespace xsring;

namespace {

/// The toolstack through libxenstore on the host's socket (as libxl talks to xenstored).
class toolstack {
 public:
  explicit toolstack(const sim_host& h) {
    ::setenv("XENSTORED_PATH", h.socket().c_str(), 1);
    h_ = xs_open(0);
    REQUIRE(h_ != nullptr);
  }
  ~toolstack() { xs_close(h_); }
  xs_handle* h() { return h_; }

  bool write(const std::string& path, const std::string& v) {
    return xs_write(h_, XBT_NULL, path.c_str(), v.data(), static_cast<unsigned>(v.size()));
  }
  std::string read(const std::string& path) {
    unsigned len = 0;
    void* v = xs_read(h_, XBT_NULL, path.c_str(), &len);
    if (!v) return "<errno " + std::to_string(errno) + ">";
    std::string s{static_cast<char*>(v), len};
    std::free(v);
    return s;
  }
  std::string owner(const std::string& path) {
    unsigned n = 0;
    xs_permissions* p = xs_get_permissions(h_, XBT_NULL, path.c_str(), &n);
    if (!p) return "<errno " + std::to_string(errno) + ">";
    std::string s = std::to_string(p[0].id);
    std::free(p);
    return s;
  }
  /// The home libxl makes for a guest: owned by the guest, readable by nobody else.
  void make_home(unsigned domid) {
    const std::string home = "/local/domain/" + std::to_string(domid);
    REQUIRE(xs_mkdir(h_, XBT_NULL, home.c_str()));
    xs_permissions perm{static_cast<unsigned>(domid), XS_PERM_NONE};
    REQUIRE(xs_set_permissions(h_, XBT_NULL, home.c_str(), &perm, 1));
  }
  /// Waits for a watch event with `token`; returns its path ("" on timeout).
  std::string event(const std::string& token, int ms = 5000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{ms};
    for (;;) {
      if (char** v = xs_check_watch(h_)) {
        std::string path = v[XS_WATCH_PATH], tok = v[XS_WATCH_TOKEN];
        std::free(v);
        if (tok == token) return path;
        continue;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{xs_fileno(h_), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count() < 50 ? left.count() : 50));
    }
  }
  /// Drops the events queued now.
  void drain() {
    while (!event("\x01never", 100).empty()) {
    }
  }

 private:
  xs_handle* h_ = nullptr;
};

template <class P>
bool eventually(P pred, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

/// Writes one request into a guest's ring by hand (as a hostile guest would), then signals.
void inject(sim_guest& g, xs::msg_type t, std::string_view payload, std::uint32_t len) {
  auto* x = g.layout();
  const std::uint32_t prod = std::atomic_ref(x->req_prod).load(std::memory_order_relaxed);
  char h[16];
  xs::encode_header(xs::header{static_cast<std::uint32_t>(t), 1, 0, len}, std::span<char, 16>{h, 16});
  std::string m{h, 16};
  m += payload;
  for (std::uint32_t i = 0; i < m.size(); ++i) x->req[(prod + i) & 1023] = m[i];
  std::atomic_ref(x->req_prod).store(prod + static_cast<std::uint32_t>(m.size()), std::memory_order_release);
  g.notify();
}

void introduce(toolstack& ts, sim_guest& g) {
  ts.make_home(g.domid());
  REQUIRE(xs_introduce_domain(ts.h(), g.domid(), 0x1234, g.port()));
}

}  // namespace

TEST_CASE("a guest introduced by the toolstack uses xenstore through its ring") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  REQUIRE(xs_watch(ts.h(), "@introduceDomain", "intro"));
  CHECK(ts.event("intro") == "@introduceDomain");  // on registration
  CHECK_FALSE(xs_is_domain_introduced(ts.h(), 5));
  sim_guest g{m, 5};
  introduce(ts, g);
  CHECK(ts.event("intro") == "@introduceDomain");
  CHECK(xs_is_domain_introduced(ts.h(), 5));
  CHECK(host.call([](auto&, auto& svc) { return svc.serves(5); }));
  REQUIRE(ts.write("/local/domain/0/name", "Domain-0"));

  auto c = g.connect();
  c.set_reply_timeout(5000ms);
  // Its own home: relative paths resolve there, it owns what it makes.
  REQUIRE(c.write("data/x", "1").has_value());
  CHECK(c.read("/local/domain/5/data/x").value() == "1");
  CHECK(ts.owner("/local/domain/5/data/x") == "5");
  CHECK(c.get_domain_path(5).value() == "/local/domain/5");
  // Elsewhere: refused.
  CHECK(c.read("/local/domain/0/name").error() == xs::errc::eacces);
  CHECK(c.write("/local/domain/0/x", "1").error() == xs::errc::eacces);
  CHECK(c.write("/tool/x", "1").error() == xs::errc::eacces);
  CHECK(c.read("/local/domain/6").error() == xs::errc::eacces);  // existence does not leak
  // Watches fire over the ring, with relative paths for relative watches.
  auto w = c.watch("data");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "data");
  REQUIRE(ts.write("/local/domain/5/data/y", "from dom0"));
  CHECK(w->next(5000ms).value().path == "data/y");
  CHECK(c.read("data/y").value() == "from dom0");
  // Transactions.
  auto r = c.transact([&](xs::tx t) { return c.write("data/z", "t", t); });
  REQUIRE(r.has_value());
  CHECK(ts.read("/local/domain/5/data/z") == "t");
  // Privileged requests are refused to a guest.
  CHECK(host.call([](auto& s, auto& svc) { return s.is_domain_introduced(5) && svc.stats().introduced == 1; }));
}

TEST_CASE("dom0's own kernel ring is served: privileged, and it may introduce") {
  auto m = make_machine();
  sim_host host{m};
  auto k = host.kernel();
  k.set_reply_timeout(5000ms);
  REQUIRE(k.write("/local/domain/0/backend/vbd/5/51712/state", "2").has_value());
  CHECK(k.read("/local/domain/0/backend/vbd/5/51712/state").value() == "2");
  toolstack ts{host};
  CHECK(ts.read("/local/domain/0/backend/vbd/5/51712/state") == "2");
  auto w = k.watch("/local/domain/0/backend");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "/local/domain/0/backend");
  REQUIRE(ts.write("/local/domain/0/backend/vif/5/0/state", "1"));
  CHECK(w->next(5000ms).value().path == "/local/domain/0/backend/vif/5/0/state");
}

TEST_CASE("XS_RELEASE ends the guest's connection, fires @releaseDomain and hands its nodes to dom0") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  sim_guest g{m, 5};
  introduce(ts, g);
  auto c = g.connect();
  c.set_reply_timeout(2000ms);
  REQUIRE(c.write("data/a", "1").has_value());
  REQUIRE(c.write("data/b/c", "2").has_value());
  REQUIRE(xs_write(ts.h(), XBT_NULL, "/shared", "", 0));
  xs_permissions acl[2] = {{0, XS_PERM_NONE}, {5, XS_PERM_READ}};
  REQUIRE(xs_set_permissions(ts.h(), XBT_NULL, "/shared", acl, 2));
  auto w = c.watch("data");
  REQUIRE(w.has_value());
  CHECK(host.call([](auto& s, auto&) { return s.owned_nodes(5); }) == 5);  // home, data, a, b, c
  REQUIRE(xs_watch(ts.h(), "@releaseDomain", "rel"));
  CHECK(ts.event("rel") == "@releaseDomain");
  REQUIRE(xs_release_domain(ts.h(), 5));
  CHECK(ts.event("rel") == "@releaseDomain");
  CHECK_FALSE(xs_is_domain_introduced(ts.h(), 5));
  CHECK(host.call([](auto& s, auto& svc) {
    return !svc.serves(5) && s.owned_nodes(5) == 0 && s.owned_nodes(0) > 0 && s.consistent();
  }));
  CHECK(ts.owner("/local/domain/5/data/b/c") == "0");
  CHECK(ts.read("/local/domain/5/data/a") == "1");
  // The permission entry naming domain 5 is gone: a later domain 5 inherits nothing.
  unsigned n = 0;
  xs_permissions* p = xs_get_permissions(ts.h(), XBT_NULL, "/shared", &n);
  REQUIRE(p != nullptr);
  CHECK(n == 1);
  std::free(p);
  // A second release: not introduced any more.
  CHECK_FALSE(xs_release_domain(ts.h(), 5));
  CHECK(errno == ENOENT);
  CHECK_FALSE(xs_release_domain(ts.h(), 0));
  CHECK(errno == EINVAL);
  // The guest's page is no longer served: its requests go unanswered.
  CHECK(c.read("data/a").error() == xs::errc::broken);
}

TEST_CASE("with orphan_policy::remove a departed domain's nodes are removed, watchers told") {
  auto m = make_machine();
  sim_host host{m, {}, xs::orphan_policy::remove};
  toolstack ts{host};
  sim_guest g{m, 7};
  introduce(ts, g);
  auto c = g.connect();
  c.set_reply_timeout(2000ms);
  REQUIRE(c.write("data/a", "1").has_value());
  REQUIRE(xs_watch(ts.h(), "/local/domain/7/data", "data"));
  CHECK(ts.event("data") == "/local/domain/7/data");
  REQUIRE(xs_release_domain(ts.h(), 7));
  CHECK(ts.event("data") == "/local/domain/7/data");
  CHECK(ts.read("/local/domain/7") == "<errno " + std::to_string(ENOENT) + ">");
  CHECK(host.call([](auto& s, auto&) { return s.owned_nodes(7) == 0 && s.consistent(); }));
}

TEST_CASE("a dying domain found after VIRQ_DOM_EXC is cleaned up: watches, transactions, quota, connection") {
  auto m = make_machine();
  xs::limits l;
  l.nodes_per_domain = 8;
  sim_host host{m, l};
  toolstack ts{host};
  REQUIRE(xs_watch(ts.h(), "@releaseDomain", "rel"));
  CHECK(ts.event("rel") == "@releaseDomain");
  auto g = std::make_unique<sim_guest>(m, 5);
  introduce(ts, *g);
  {
    auto c = g->connect();
    c.set_reply_timeout(2000ms);
    // Fill its quota: the home counts, so 7 more.
    for (int i = 0; i < 7; ++i) REQUIRE(c.write("n" + std::to_string(i), "v").has_value());
    CHECK(c.write("one-too-many", "v").error() == xs::errc::enospc);
    auto w = c.watch("n0");
    REQUIRE(w.has_value());
    auto tx = c.transaction_start();
    REQUIRE(tx.has_value());
    REQUIRE(c.write("n0", "in tx", *tx).has_value());
    CHECK(host.call([](auto& s, auto& svc) {
      auto id = svc.connection_of(5);
      return id && s.connected(*id) && s.owned_nodes(5) == 8;
    }));
  }
  host.domains.set(5, xs::domain_status::dying);
  CHECK(ts.event("rel") == "@releaseDomain");
  CHECK(host.call([](auto& s, auto& svc) {
    return !svc.serves(5) && s.owned_nodes(5) == 0 && svc.stats().died == 1 && s.consistent();
  }));
  CHECK(ts.owner("/local/domain/5/n3") == "0");
  CHECK(ts.read("/local/domain/5/n0") == "v");  // the transaction never committed
  bool logged = false;
  for (auto& line : host.log()) logged = logged || line.find("domain 5 dying") != std::string::npos;
  CHECK(logged);
  // A new domain 5 (the id reused, as Xen may) starts from a clean quota.
  g.reset();
  REQUIRE(xs_rm(ts.h(), XBT_NULL, "/local/domain/5"));
  host.domains.set(5, xs::domain_status::running);
  sim_guest again{m, 5};
  introduce(ts, again);
  auto c2 = again.connect();
  c2.set_reply_timeout(2000ms);
  for (int i = 0; i < 7; ++i) REQUIRE(c2.write("n" + std::to_string(i), "v").has_value());
}

TEST_CASE("a domain found shut down fires @releaseDomain once, and again after XS_RESUME") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  REQUIRE(xs_watch(ts.h(), "@releaseDomain", "rel"));
  CHECK(ts.event("rel") == "@releaseDomain");
  sim_guest g{m, 5};
  introduce(ts, g);
  host.domains.set(5, xs::domain_status::shutdown);
  CHECK(ts.event("rel") == "@releaseDomain");
  host.domains.raise();  // another exception elsewhere: nothing new about domain 5
  CHECK(ts.event("rel", 300).empty());
  CHECK(xs_is_domain_introduced(ts.h(), 5));
  REQUIRE(xs_resume_domain(ts.h(), 5));
  host.domains.set(5, xs::domain_status::running);
  CHECK(ts.event("rel", 300).empty());
  host.domains.set(5, xs::domain_status::shutdown);
  CHECK(ts.event("rel") == "@releaseDomain");
  host.domains.set(5, xs::domain_status::gone);
  CHECK(ts.event("rel") == "@releaseDomain");
  CHECK_FALSE(xs_is_domain_introduced(ts.h(), 5));
  CHECK(host.call([](auto&, auto& svc) { return svc.stats().shutdowns == 2 && svc.stats().died == 1; }));
}

TEST_CASE("XS_INTRODUCE of a domain already served resets its ring without a second @introduceDomain") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  REQUIRE(xs_watch(ts.h(), "@introduceDomain", "intro"));
  CHECK(ts.event("intro") == "@introduceDomain");
  sim_guest g{m, 5};
  introduce(ts, g);
  CHECK(ts.event("intro") == "@introduceDomain");
  {
    auto c = g.connect();
    c.set_reply_timeout(2000ms);
    REQUIRE(c.write("before", "1").has_value());
  }
  REQUIRE(xs_introduce_domain(ts.h(), 5, 0x1234, g.port()));
  CHECK(ts.event("intro", 300).empty());
  CHECK(g.layout()->req_prod == 0);
  CHECK(g.layout()->rsp_prod == 0);
  auto c = g.connect();
  c.set_reply_timeout(2000ms);
  CHECK(c.read("before").value() == "1");
  CHECK(host.call([](auto&, auto& svc) { return svc.stats().reintroduced == 1; }));
  // Bad arguments.
  CHECK_FALSE(xs_introduce_domain(ts.h(), 0, 1, 1));
  CHECK_FALSE(xs_introduce_domain(ts.h(), 9, 1, 0));
  CHECK_FALSE(xs_introduce_domain(ts.h(), 9, 1, 63));  // a port domain 9 never offered
  CHECK_FALSE(xs_is_domain_introduced(ts.h(), 9));
}

TEST_CASE("a hostile guest loses only its own connection, dom0 and an honest guest carry on") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  sim_guest bad{m, 5}, good{m, 6};
  introduce(ts, bad);
  introduce(ts, good);
  auto honest = good.connect();
  honest.set_reply_timeout(5000ms);
  auto kernel = host.kernel();
  kernel.set_reply_timeout(5000ms);
  REQUIRE(honest.write("x", "1").has_value());
  std::uint32_t want = xenbus::xenstore_error_ringidx;
  {
    auto c = bad.connect();
    c.set_reply_timeout(2000ms);
    REQUIRE(c.write("mine", "1").has_value());
    auto w = c.watch("mine");
    REQUIRE(w.has_value());
  }
  auto* x = bad.layout();
  SUBCASE("request producer index thousands ahead") {
    std::atomic_ref(x->req_prod).store(std::atomic_ref(x->req_cons).load() + 5000, std::memory_order_release);
  }
  SUBCASE("response consumer index far ahead of the producer") {
    std::atomic_ref(x->rsp_cons).store(std::atomic_ref(x->rsp_prod).load() + 5000, std::memory_order_release);
    // A reply larger than the room the server last saw makes it look at rsp_cons again.
    REQUIRE(ts.write("/local/domain/5/big", std::string(3000, 'b')));
    const std::string path = "/local/domain/5/big";
    inject(bad, xs::msg_type::read, path + '\0', static_cast<std::uint32_t>(path.size() + 1));
  }
  SUBCASE("a message length over XENSTORE_PAYLOAD_MAX") {
    inject(bad, xs::msg_type::read, "", 100000);
    want = xenbus::xenstore_error_proto;
  }
  bad.notify();
  REQUIRE(eventually([&] { return host.call([](auto&, auto& svc) { return svc.stop_reason(5).has_value(); }); }));
  CHECK(std::atomic_ref(x->error).load() == want);
  CHECK(host.call([](auto& s, auto& svc) {
    return svc.serves(5) && !svc.connection_of(5) && svc.stats().stopped == 1 && s.is_domain_introduced(5);
  }));
  // Everyone else is served.
  CHECK(honest.read("x").value() == "1");
  REQUIRE(honest.write("y", "2").has_value());
  CHECK(kernel.read("/local/domain/6/y").value() == "2");
  CHECK(ts.read("/local/domain/5/mine").size() == 1);
  // Its further notifications do nothing.
  for (int i = 0; i < 100; ++i) bad.notify();
  CHECK(honest.read("y").value() == "2");
  // It can still be released, and its nodes handed over.
  REQUIRE(xs_release_domain(ts.h(), 5));
  CHECK(ts.owner("/local/domain/5/mine") == "0");
}

TEST_CASE("a guest that floods watches and never reads grows nothing without bound, and dom0 stays quick") {
  auto m = make_machine();
  xs::limits l;
  l.queued_events = 64;
  l.queued_event_bytes = 16 * 1024;
  sim_host host{m, l};
  toolstack ts{host};
  sim_guest g{m, 5};
  introduce(ts, g);
  // The guest speaks raw bytes: watches on its home, then it never reads the ring again.
  auto end = xenbus::xenstore_ring_guest::attach(g.page());
  REQUIRE(end.has_value());
  std::string out;
  for (int i = 0; i < 20; ++i) {
    const std::string path = "/local/domain/5", token = "t" + std::to_string(i);
    const std::string payload = path + '\0' + token + '\0';
    char h[16];
    xs::encode_header(xs::header{static_cast<std::uint32_t>(xs::msg_type::watch), static_cast<std::uint32_t>(i), 0,
                                 static_cast<std::uint32_t>(payload.size())},
                      std::span<char, 16>{h, 16});
    out.append(h, 16);
    out += payload;
  }
  std::size_t sent = 0;
  REQUIRE(eventually([&] {
    auto n = end->write(std::as_bytes(std::span<const char>{out.data() + sent, out.size() - sent}));
    if (n) sent += *n;
    g.notify();
    return sent == out.size();
  }));
  // Dom0 writes 2000 times under the watched path: 20 events each, none read.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) REQUIRE(ts.write("/local/domain/5/k", std::to_string(i)));
  const auto took = std::chrono::steady_clock::now() - t0;
  MESSAGE("2000 dom0 writes with a flooded, never-reading guest watching: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 20s);
  CHECK(ts.read("/local/domain/5/k") == "1999");
  CHECK(host.call([&](auto& s, auto& svc) {
    auto id = svc.connection_of(5);
    return id && s.held_bytes(*id) <= xs::store::output_bound(l) && s.dropped_events(*id) > 0;
  }));
  CHECK(host.call([](auto&, auto& svc) { return svc.stats().stopped == 0; }));
}

TEST_CASE("XS_SET_TARGET lets a device-model domain act as its target's owner") {
  auto m = make_machine();
  sim_host host{m};
  toolstack ts{host};
  sim_guest target{m, 5}, stub{m, 6};
  introduce(ts, target);
  introduce(ts, stub);
  auto t = target.connect();
  t.set_reply_timeout(5000ms);
  REQUIRE(t.write("data/secret", "s").has_value());
  auto s = stub.connect();
  s.set_reply_timeout(5000ms);
  CHECK(s.read("/local/domain/5/data/secret").error() == xs::errc::eacces);
  CHECK_FALSE(xs_set_target(ts.h(), 6, 9));  // 9 is not introduced
  CHECK(errno == ENOENT);
  REQUIRE(xs_set_target(ts.h(), 6, 5));
  CHECK(s.read("/local/domain/5/data/secret").value() == "s");
  REQUIRE(s.write("/local/domain/5/data/from-stub", "x").has_value());
  CHECK(ts.owner("/local/domain/5/data/from-stub") == "6");
  // Releasing the target ends the relation with it.
  REQUIRE(xs_release_domain(ts.h(), 5));
  CHECK(ts.owner("/local/domain/5/data/secret") == "0");
  CHECK(s.read("/local/domain/5/data/secret").error() == xs::errc::eacces);
}
