// Tests include/xenbus/hosted/xenstore/ring_connection.hpp: a guest's xenstore page served by the store, with
// hostile index and framing input stopping only that guest's connection.
#include <xenbus/hosted/xenstore/ring_connection.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/ring/xenstore_page.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace xs = xenbus::xenstore;
using namespace std::string_view_literals;
using namespace std::string_literals;
using T = xs::msg_type;

struct alignas(4096) page {
  std::byte bytes[4096]{};
  xenbus::xenstore_domain_interface_layout* x() {
    return reinterpret_cast<xenbus::xenstore_domain_interface_layout*>(bytes);
  }
  std::uint32_t load(std::uint32_t& field) { return std::atomic_ref(field).load(std::memory_order_acquire); }
  void store(std::uint32_t& field, std::uint32_t v) { std::atomic_ref(field).store(v, std::memory_order_release); }
};

struct reply {
  xs::header hdr;
  std::string payload;
  bool is_error() const { return hdr.kind() == T::error; }
};

/// The guest's end of one page, speaking wire messages through xenstore_ring_guest; pump()
/// stands for the server's loop.
class guest {
 public:
  explicit guest(page& p) {
    auto g = xenbus::xenstore_ring_guest::attach(p.bytes);
    REQUIRE(g.has_value());
    g_ = std::make_unique<xenbus::xenstore_ring_guest>(*g);
  }
  /// Queues raw bytes; returns how many the request ring took.
  std::size_t put(std::string_view bytes) {
    auto n = g_->write(std::as_bytes(std::span<const char>{bytes.data(), bytes.size()}));
    return n ? *n : 0;
  }
  static std::string frame(T t, std::string_view payload, std::uint32_t req = 1, std::uint32_t tx = 0) {
    std::string m(xs::header_size, '\0');
    xs::encode_header(xs::header{static_cast<std::uint32_t>(t), req, tx, static_cast<std::uint32_t>(payload.size())},
                      std::span<char, xs::header_size>{m.data(), xs::header_size});
    m += payload;
    return m;
  }
  /// Takes every reply and event the response ring holds now.
  std::vector<reply> take() {
    char buf[1024];
    for (;;) {
      auto n = g_->read(std::as_writable_bytes(std::span<char>{buf}));
      if (!n || *n == 0) break;
      in_.append(buf, *n);
    }
    std::vector<reply> out;
    while (in_.size() >= xs::header_size) {
      const auto h = xs::decode_header(std::span<const char, xs::header_size>{in_.data(), xs::header_size});
      if (in_.size() < xs::header_size + h.len) break;
      out.push_back(reply{h, in_.substr(xs::header_size, h.len)});
      in_.erase(0, xs::header_size + h.len);
    }
    return out;
  }
  xenbus::xenstore_ring_guest& end() { return *g_; }

 private:
  std::unique_ptr<xenbus::xenstore_ring_guest> g_;
  std::string in_;
};

/// One request through the ring, pumping until its reply (and any events before it) arrive.
reply ask(guest& g, xs::ring_connection& c, T t, std::string_view payload, std::vector<reply>* events = nullptr) {
  const std::string m = guest::frame(t, payload, 7);
  std::size_t sent = 0;
  for (int round = 0; round < 64; ++round) {
    sent += g.put(std::string_view{m}.substr(sent));
    c.pump();
    std::optional<reply> answer;
    for (auto& r : g.take()) {
      if (r.hdr.kind() == T::watch_event) {
        if (events) events->push_back(r);
      } else if (!answer) {
        answer = r;
      }
    }
    if (answer) return *answer;
  }
  FAIL("no reply");
  return {};
}

std::unique_ptr<xs::ring_connection> serve(xs::store& s, page& p, std::uint32_t domid, bool privileged = false,
                                           bool fresh = true) {
  auto c = xs::ring_connection::attach(s, p.bytes, domid, privileged, fresh);
  REQUIRE(c.has_value());
  return std::move(*c);
}

}  // namespace

TEST_CASE("a guest's requests are answered through its ring, messages larger than the ring included") {
  xs::store s;
  page p;
  auto c = serve(s, p, 0, true, false);
  guest g{p};
  CHECK(p.load(p.x()->server_features) == (xenbus::xenstore_feature_reconnection | xenbus::xenstore_feature_error));
  CHECK(ask(g, *c, T::read, "/nope\0"sv).payload == "ENOENT\0"sv);
  const std::string big(3000, 'x');
  for (int i = 0; i < 5; ++i) {  // 5 x ~3 KiB each way: the 1 KiB rings wrap several times
    CHECK(ask(g, *c, T::write, "/big\0"s + big).payload == "OK\0"sv);
    CHECK(ask(g, *c, T::read, "/big\0"sv).payload == big);
  }
  CHECK(c->requests() == 11);
}

TEST_CASE("dom0's ring is attached at the indices its kernel left, across the 2^32 wrap") {
  xs::store s;
  page p;
  for (auto* f : {&p.x()->req_cons, &p.x()->req_prod, &p.x()->rsp_cons, &p.x()->rsp_prod}) *f = 0xfffffe00u;
  guest g{p};
  // The kernel wrote a request before the server started.
  REQUIRE(g.put(guest::frame(T::write, "/early\0v"sv, 3)) > 0);
  auto c = serve(s, p, 0, true, false);
  c->pump();
  auto r = g.take();
  REQUIRE(r.size() == 1);
  CHECK(r[0].hdr.req_id == 3);
  CHECK(r[0].payload == "OK\0"sv);
  for (int i = 0; i < 40; ++i) CHECK(ask(g, *c, T::read, "/early\0"sv).payload == "v");
  CHECK(p.load(p.x()->req_prod) < 0x1000u);  // wrapped
}

TEST_CASE("a fresh guest ring starts with both queues empty, as C xenstored's XS_INTRODUCE") {
  xs::store s;
  page p;
  p.x()->req_prod = 40;  // left over: the reset drops it
  p.x()->rsp_cons = 9;
  auto c = serve(s, p, 5);
  CHECK(p.x()->req_prod == 0);
  CHECK(p.x()->req_cons == 0);
  CHECK(p.x()->rsp_cons == 0);
  CHECK(p.x()->rsp_prod == 0);
  guest g{p};
  CHECK(ask(g, *c, T::get_domain_path, "5\0"sv).payload == "/local/domain/5\0"sv);
}

TEST_CASE("a guest that breaks its ring is stopped, another guest's connection carries on") {
  xs::store s;
  page bad_page, good_page;
  auto bad = serve(s, bad_page, 1);
  auto good = serve(s, good_page, 2);
  guest b{bad_page}, g{good_page};
  auto* x = bad_page.x();
  REQUIRE(ask(b, *bad, T::watch, "@releaseDomain\0t\0"sv).payload == "OK\0"sv);
  const auto before_id = bad->id();
  REQUIRE(s.connected(before_id));
  std::uint32_t expect_error = xenbus::xenstore_error_ringidx;
  SUBCASE("request producer index more than a ring ahead") {
    bad_page.store(x->req_prod, bad_page.load(x->req_cons) + 5000);
  }
  SUBCASE("request producer index behind the consumer") { bad_page.store(x->req_prod, bad_page.load(x->req_cons) - 1); }
  SUBCASE("response consumer index ahead of what was produced") {
    REQUIRE(g.put(guest::frame(T::read, "/x\0"sv)) > 0);  // something for the good one meanwhile
    // The consumer index jumps far past the producer; the server notices when it needs
    // more room than it last saw (its cached view only ever understates the room): 40
    // replies of 32 bytes are more than the ring holds.
    bad_page.store(x->rsp_cons, bad_page.load(x->rsp_prod) + 5000);
    std::string many;
    for (int i = 0; i < 40; ++i) many += guest::frame(T::get_domain_path, "1\0"sv);
    REQUIRE(b.put(many) == many.size());
  }
  SUBCASE("response consumer index more than a ring behind the producer") {
    bad_page.store(x->rsp_cons, bad_page.load(x->rsp_prod) - 2000);
    std::string many;
    for (int i = 0; i < 40; ++i) many += guest::frame(T::get_domain_path, "1\0"sv);
    REQUIRE(b.put(many) == many.size());
  }
  SUBCASE("a message longer than XENSTORE_PAYLOAD_MAX") {
    REQUIRE(b.put(guest::frame(T::write, "/a\0"sv).substr(0, 12) + std::string("\x01\x10\x00\x00", 4)) == 16);
    expect_error = xenbus::xenstore_error_proto;
  }
  SUBCASE("a length of 2^32 - 1") {
    std::string h = guest::frame(T::read, ""sv);
    std::memset(h.data() + 12, 0xff, 4);
    REQUIRE(b.put(h) == 16);
    expect_error = xenbus::xenstore_error_proto;
  }
  auto r = bad->pump();
  CHECK(r.stopped);
  CHECK(r.notify);
  CHECK(bad->stopped());
  CHECK(bad->stop_reason().error == expect_error);
  CHECK(bad_page.load(x->error) == expect_error);
  CHECK_FALSE(s.connected(before_id));  // watches, transactions and output dropped with it
  // Nothing more is read or written for it: the guest's further bytes are ignored.
  const auto prod = bad_page.load(x->rsp_prod);
  CHECK_FALSE(bad->pump().notify);
  CHECK(bad_page.load(x->rsp_prod) == prod);
  // The other guest is served as before.
  good->pump();
  (void)g.take();
  CHECK(ask(g, *good, T::write,
            "/local/domain/2/ok\0"sv
            "yes"sv)
            .hdr.kind() == T::error);  // no home: EACCES
  CHECK(ask(g, *good, T::get_domain_path, "2\0"sv).payload == "/local/domain/2\0"sv);
}

TEST_CASE("garbage that still frames gets error replies and the connection stays") {
  xs::store s;
  page p;
  auto c = serve(s, p, 3);
  guest g{p};
  CHECK(ask(g, *c, static_cast<T>(999), "junk"sv).payload == "ENOSYS\0"sv);
  CHECK(ask(g, *c, T::read, "no-nul"sv).payload == "EINVAL\0"sv);
  CHECK(ask(g, *c, T::watch_event, "/a\0t\0"sv).payload == "ENOSYS\0"sv);
  CHECK(ask(g, *c, T::introduce,
            "4\0"
            "1\0"
            "1\0"sv)
            .payload == "EACCES\0"sv);
  CHECK(ask(g, *c, T::is_domain_introduced, "0\0"sv).payload == "EACCES\0"sv);
  CHECK(ask(g, *c, T::read, "/../x\0"sv).payload == "EINVAL\0"sv);
  CHECK_FALSE(c->stopped());
  CHECK(ask(g, *c, T::get_domain_path, "3\0"sv).payload == "/local/domain/3\0"sv);
}

TEST_CASE("a guest that never reads holds a bounded amount of output and stops being read") {
  xs::limits l;
  xs::store s{l};
  page p;
  auto c = serve(s, p, 4);
  guest g{p};
  // 200 requests, written as fast as the request ring takes them; no reply is ever read.
  const std::string m = guest::frame(T::get_domain_path, "4\0"sv);
  int written = 0;
  std::string pending;
  for (int round = 0; round < 1000 && written < 200; ++round) {
    if (pending.empty()) {
      pending = m;
      ++written;
    }
    pending.erase(0, g.put(pending));
    c->pump();
  }
  for (int i = 0; i < 10; ++i) c->pump();
  CHECK_FALSE(s.accepting(c->id()));
  // The response ring is full; the store holds at most `outstanding` replies beyond it.
  CHECK(p.load(p.x()->rsp_prod) - p.load(p.x()->rsp_cons) == 1024);
  CHECK(c->requests() <= 1024 / (16 + 16) + l.outstanding + 1);
  CHECK(s.held_bytes(c->id()) <= xs::store::output_bound(l));
  // Reading resumes the flow: every request is answered in the end.
  std::size_t answered = 0;
  for (int round = 0; round < 2000 && answered < static_cast<std::size_t>(written); ++round) {
    if (!pending.empty()) pending.erase(0, g.put(pending));
    if (pending.empty() && written < 200) {
      pending = m;
      ++written;
    }
    c->pump();
    answered += g.take().size();
  }
  CHECK(answered == 200);
  CHECK_FALSE(c->stopped());
}

TEST_CASE("one pump moves a bounded number of bytes and says when more is waiting") {
  xs::store s;
  page p;
  auto c = serve(s, p, 0, true, false);
  guest g{p};
  std::string burst;
  while (burst.size() + 22 < 1024) burst += guest::frame(T::read, "/nope\0"sv);
  REQUIRE(g.put(burst) == burst.size());
  auto r = c->pump(64);
  CHECK(r.more);
  CHECK(c->requests() < 10);
  for (int i = 0; i < 100 && c->pump(64).more; ++i) (void)g.take();
}

TEST_CASE("ring reconnection drops the connection's watches, transactions and partial messages") {
  xs::store s;
  page p;
  auto c = serve(s, p, 0, true, false);
  guest g{p};
  std::vector<reply> events;
  REQUIRE(ask(g, *c, T::watch, "/w\0tok\0"sv, &events).payload == "OK\0"sv);
  CHECK(events.size() == 1);  // the registration's event
  events.clear();
  REQUIRE(ask(g, *c, T::transaction_start, "\0"sv).hdr.kind() == T::transaction_start);
  const auto old_id = c->id();
  REQUIRE(g.put(guest::frame(T::write, "/half\0value"sv).substr(0, 20)) == 20);  // a partial message
  c->pump();
  REQUIRE(g.end().begin_reconnect().has_value());
  auto r = c->pump();
  CHECK(r.notify);
  CHECK(c->reconnects() == 1);
  CHECK(p.load(p.x()->connection) == xenbus::xenstore_connected);
  CHECK(g.end().reconnected());
  CHECK_FALSE(s.connected(old_id));
  CHECK(s.connected(c->id()));
  // A fresh connection on a packet boundary: the watch is gone, writes fire nothing.
  CHECK(ask(g, *c, T::write, "/w\0x"sv, &events).payload == "OK\0"sv);
  c->pump();
  CHECK(g.take().empty());
  CHECK(events.empty());
  CHECK_FALSE(s.exists("/half"));
}

TEST_CASE("a stopped guest comes back through a reconnection") {
  xs::store s;
  page p;
  auto c = serve(s, p, 0, true, false);
  guest g{p};
  std::string h = guest::frame(T::read, ""sv);
  std::memset(h.data() + 12, 0x7f, 4);
  REQUIRE(g.put(h) == 16);
  REQUIRE(c->pump().stopped);
  CHECK(p.load(p.x()->error) == xenbus::xenstore_error_proto);
  REQUIRE(g.end().begin_reconnect().has_value());
  c->pump();
  CHECK_FALSE(c->stopped());
  CHECK(p.load(p.x()->error) == xenbus::xenstore_error_none);
  CHECK(g.end().reconnected());
  CHECK(ask(g, *c, T::write, "/back\0y"sv).payload == "OK\0"sv);
}

TEST_CASE("a connection field other than 0 or 1 makes the server wait, not spin") {
  xs::store s;
  page p;
  auto c = serve(s, p, 6);
  guest g{p};
  REQUIRE(g.put(guest::frame(T::read, "/x\0"sv)) > 0);
  p.store(p.x()->connection, 7);
  auto r = c->pump();
  CHECK_FALSE(r.more);
  CHECK_FALSE(r.notify);
  CHECK(c->requests() == 0);
  CHECK_FALSE(c->stopped());
}

TEST_CASE("reset (XS_INTRODUCE again) empties the rings and starts a fresh connection") {
  xs::store s;
  page p;
  auto c = serve(s, p, 7);
  guest g{p};
  CHECK(ask(g, *c, T::get_domain_path, "7\0"sv).payload == "/local/domain/7\0"sv);
  REQUIRE(g.put(guest::frame(T::read, "/x\0"sv).substr(0, 5)) == 5);
  c->pump();
  const auto old = c->id();
  c->reset();
  CHECK(p.x()->req_prod == 0);
  CHECK(p.x()->rsp_prod == 0);
  CHECK_FALSE(s.connected(old));
  guest fresh{p};
  CHECK(ask(fresh, *c, T::get_domain_path, "7\0"sv).payload == "/local/domain/7\0"sv);
}
