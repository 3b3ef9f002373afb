// Tests include/xenbus/testing/faults.hpp: the wrappers inject what they promise, the same
// seed gives the same run, and the device drivers survive every fault they inject.
#include "device_removal.hpp"
#include "device_test_support.hpp"

#include <xenbus/testing/faults.hpp>

using namespace devtest;
using xenbus::close_reason;
using xenbus::state;
namespace xt = xenbus::testing;

namespace {

/// The plan the next faulty_env uses for its connections (each gets its own seed).
xt::fault_plan next_plan{};

/// In-process, every party's store connection wrapped in a faulty_store.
struct faulty_env {
  using store_type = xt::faulty_store<embedded_store>;
  static constexpr bool live = false;
  xenstore::store store;
  std::deque<embedded_store> inner;
  std::deque<store_type> conns;
  xt::fault_plan plan = next_plan;
  bool ok() const { return true; }
  store_type& connect(domid_t d) {
    embedded_store& i = inner.emplace_back(store, d, true);
    plan.seed = plan.seed * 31 + 7;
    return conns.emplace_back(i, plan);
  }
  xt::fault_counts total() const {
    xt::fault_counts t{};
    for (const auto& c : conns) {
      t.spurious_watch += c.counts().spurious_watch;
      t.coalesced_watch += c.counts().coalesced_watch;
      t.commit_eagain += c.counts().commit_eagain;
      t.reconnects += c.counts().reconnects;
    }
    return t;
  }
};

}  // namespace

TEST_CASE("the same seed injects the same faults") {
  auto run = [](std::uint64_t seed) {
    next_plan = {.seed = seed, .spurious_watch = 300, .coalesce_watch = 300, .commit_eagain = 400};
    rig<faulty_env> r;
    REQUIRE(r.tk.create().has_value());
    r.start_backend();
    r.start_frontend();
    REQUIRE_MESSAGE(r.connected(), r.dump());
    const auto t = r.env.total();
    return std::array<unsigned, 3>{t.spurious_watch, t.coalesced_watch, t.commit_eagain};
  };
  const auto a = run(42), b = run(42);
  CHECK(a == b);
  CHECK(a[0] + a[1] + a[2] > 0);
}

TEST_CASE("drivers connect, hand over and close under spurious, coalesced watches and EAGAIN commits") {
  xt::fault_counts seen{};
  for (std::uint64_t seed = 1; seed <= 24; ++seed) {
    CAPTURE(seed);
    next_plan = {.seed = seed, .spurious_watch = 250, .coalesce_watch = 400, .commit_eagain = 500};
    rig<faulty_env> r;
    REQUIRE(r.tk.create().has_value());
    r.start_backend({.skip_init_wait = seed % 3 == 0});
    r.start_frontend({.skip_init_wait = seed % 2 == 0});
    REQUIRE_MESSAGE(r.connected(), r.dump());
    CHECK(r.exchange(20));
    r.start_frontend({.start = frontend_start::handover}, "new frontend");
    REQUIRE_MESSAGE(r.connected(), r.dump());
    CHECK_FALSE(r.frontends.front().active());
    r.fe().close();
    REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
    const auto t = r.env.total();
    seen.spurious_watch += t.spurious_watch;
    seen.coalesced_watch += t.coalesced_watch;
    seen.commit_eagain += t.commit_eagain;
  }
  // The run really exercised each fault.
  CHECK(seen.spurious_watch > 0);
  CHECK(seen.coalesced_watch > 0);
  CHECK(seen.commit_eagain > 0);
}

TEST_CASE("a xenstore reconnection loses open transactions and fires every watch again") {
  xenstore::store st;
  embedded_store inner{st, 0};
  xt::faulty_store<embedded_store> s{inner, {}};
  REQUIRE(s.watch("/a", "tok").has_value());
  REQUIRE(s.next_watch_event(0).has_value());  // fires once when set
  CHECK(s.next_watch_event(0).error().code == store_errc::timeout);
  auto tx = s.transaction_start();
  REQUIRE(tx.has_value());
  REQUIRE(s.reconnect().has_value());
  CHECK(s.write(*tx, "/a", "1").error().code == store_errc::eagain);
  CHECK(s.transaction_end(*tx, true).error().code == store_errc::eagain);
  auto ev = s.next_watch_event(0);
  REQUIRE(ev.has_value());
  CHECK(ev->path == "/a");
  // in_transaction retries and succeeds on the new connection.
  CHECK(xenbus::in_transaction(s, [&](store_tx t) { return s.write(t, "/a", "2"); }).has_value());
  CHECK(s.read(no_tx, "/a").value() == "2");
}

TEST_CASE("a reconnection in the middle of the handshake does not stall it") {
  next_plan = {.seed = 5};
  rig<faulty_env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_backend();
  r.start_frontend();
  for (auto& c : r.env.conns) REQUIRE(c.reconnect().has_value());
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.env.total().reconnects == r.env.conns.size());
  CHECK(r.exchange(5));
}

TEST_CASE("delayed and invented notifications: a consumer that polls with a timeout loses nothing") {
  auto m = xenbus::posix::machine::create({.frames = 8, .domains = 2, .grants_per_domain = 8, .ports_per_domain = 4});
  REQUIRE(m.has_value());
  auto a = xenbus::posix::evtchn_handle::open(*m, 0);
  auto b = xenbus::posix::evtchn_handle::open(*m, 1);
  REQUIRE((a && b));
  auto offered = b->bind_unbound(0);
  REQUIRE(offered.has_value());
  auto local = a->bind_interdomain(1, *offered);
  REQUIRE(local.has_value());
  xt::faulty_evtchn<xenbus::posix::evtchn_handle> fb{
      *b, {.seed = 9, .delay_notify = 500, .max_delay = 3, .spurious_notify = 200}};
  // The wrapper learns bound ports from its own bind calls: a second port bound through it
  // gives its spurious notifications a port to name.
  auto port2 = fb.bind_unbound(0);
  REQUIRE(port2.has_value());
  unsigned delivered = 0, spurious = 0;
  for (unsigned round = 0; round < 50; ++round) {
    REQUIRE(a->notify(*local).has_value());
    // The consumer's loop: wait (bounded), then take what is pending, then unmask.
    for (int tries = 0; tries < 8; ++tries) {
      (void)xenbus::posix::wait_readable(fb.fd(), 1);
      auto p = fb.pending();
      if (!p) continue;
      if (*p == *offered) {
        ++delivered;
        REQUIRE(fb.unmask(*p).has_value());
        break;
      }
      ++spurious;  // a hint with nothing behind it: ignore it
    }
  }
  CHECK(delivered == 50);
  CHECK(fb.counts().delayed_notify > 0);
  CHECK(fb.counts().spurious_notify == spurious);
}

TEST_CASE("hostile ring indices break the ring for good and close the device with a reason") {
  rig<inproc_env> r;
  r.up();
  REQUIRE(r.exchange(3));
  xt::fault_rng rng{77};
  auto& fq = r.fe().queue_at(0);
  SUBCASE("the frontend publishes req_prod a ring ahead") {
    xt::corrupt_ring_indices({static_cast<std::byte*>(fq.pages->data()), fq.pages->size()},
                             xt::ring_attack::req_prod_overflow, r.be().queue_at(0).ring->req_cons(),
                             r.be().queue_at(0).ring->size(), rng);
    auto req = r.be().take_request(0);
    REQUIRE_FALSE(req.has_value());
    CHECK(req.error() == xenbus::ring_error::prod_overflow);
    CHECK(r.be().reason() == close_reason::ring_broken);
    REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
    auto err = r.ts_store.read(0, r.be().error_path());
    REQUIRE(err.has_value());
    CHECK(err->find("corrupted") != std::string::npos);
  }
  SUBCASE("the backend moves rsp_prod backwards") {
    xt::corrupt_ring_indices({static_cast<std::byte*>(fq.pages->data()), fq.pages->size()},
                             xt::ring_attack::rsp_prod_backwards, fq.ring->rsp_cons(), fq.ring->size(), rng);
    auto rsp = r.fe().take_response(0);
    REQUIRE_FALSE(rsp.has_value());
    CHECK(r.fe().reason() == close_reason::ring_broken);
    REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
  }
}

// The toolstack removes the device between any two store operations of one driver, during
// the handshake and the close that follows: no write of either driver may bring a
// directory back (a xenstore write creates missing parents), and every driver that
// started ends stopped, with a reason.
TEST_CASE("a removal between any two store operations of a driver never re-creates the device") {
  const device_address addr{front_dom, back_dom, std::string(test_protocol::type), devid};
  using S = devtest::removing_store<embedded_store>;
  using fe_type = frontend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;
  using be_type = backend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;
  for (const bool in_frontend : {true, false}) {
    bool fired = true;
    unsigned k = 0;
    for (; fired && k < 1000; ++k) {  // bounded: a handshake and close take a few dozen operations
      CAPTURE(in_frontend);
      CAPTURE(k);
      auto m = posix::machine::create({.frames = 16, .domains = 4, .grants_per_domain = 16, .ports_per_domain = 8});
      REQUIRE(m.has_value());
      auto fev = posix::evtchn_handle::open(*m, front_dom);
      auto bev = posix::evtchn_handle::open(*m, back_dom);
      REQUIRE((fev && bev));
      posix::grant_table fg{*m, front_dom}, bg{*m, back_dom};
      xenstore::store st;
      embedded_store ts{st, 0}, fi{st, front_dom}, bi{st, back_dom};
      S fs{fi}, bs{bi};
      toolstack<embedded_store> tk{ts, addr};
      REQUIRE(tk.create().has_value());
      (in_frontend ? fs : bs).arm(k, [&] {
        REQUIRE(ts.remove(no_tx, addr.frontend_dir()).has_value());
        REQUIRE(ts.remove(no_tx, addr.backend_dir()).has_value());
      });
      std::optional<be_type> be;
      std::optional<fe_type> fe;
      be.emplace(bs, *bev, bg, back_dom, front_dom, devid);
      if (!be->start()) be.reset();
      fe.emplace(fs, *fev, fg, front_dom, devid);
      if (!fe->start()) fe.reset();
      auto pump = [&] {
        for (int round = 0; round < 64; ++round) {
          unsigned n = 0;
          if (be) n += deliver_watch_events(bs, 0, *be);
          if (fe) n += deliver_watch_events(fs, 0, *fe);
          if (!n) return;
        }
      };
      pump();
      if (fe) fe->close();
      if (be) be->close();
      pump();
      fired = (in_frontend ? fs : bs).fired();
      if (!fired) {
        // The whole run passed before the removal: both ends closed on request.
        CHECK((fe && fe->own() == state::closed));
        CHECK((be && be->own() == state::closed));
        break;
      }
      CHECK(devtest::children(ts, devtest::frontend_parent(addr)).empty());
      CHECK(devtest::children(ts, devtest::backend_parent(addr)).empty());
      if (fe) {
        CHECK_FALSE(fe->active());
        CHECK(fe->reason() != close_reason::none);
      }
      if (be) {
        CHECK_FALSE(be->active());
        CHECK(be->reason() != close_reason::none);
      }
    }
    CHECK(k > 20);  // the sweep covered the handshake, not just the first operations
    CHECK(k < 1000);
  }
}
