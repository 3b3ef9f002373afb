// Tests include/xenbus/posix/xenstore/client.hpp against a scripted server: the bytes the client
// sends, reply matching, watch queues, transactions, and every malformed reply it must refuse.
#include "xsclient_peer.hpp"

#include <xenbus/posix/xenstore/client.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace xenstore = xenbus::xenstore;
using xstest::msg;
using xstest::nul;
using xstest::ok;
using xstest::scripted_peer;
using xs_type = xenbus::detail::xs_type;

template <class F>
auto run(F f) {
  return std::async(std::launch::async, std::move(f));
}

TEST_CASE("each operation sends the payload libxenstore sends and decodes the reply") {
  scripted_peer srv;
  auto c = srv.client();

  SUBCASE("read") {
    auto r = run([&] { return c.read("/local/domain/1/name"); });
    auto f = srv.recv();
    CHECK(f.type == static_cast<std::uint32_t>(xs_type::read));
    CHECK(f.tx_id == 0);
    CHECK(f.payload == nul("/local/domain/1/name"));
    srv.send(msg(xs_type::read, f.req_id, "guest"));
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(*v == "guest");
  }
  SUBCASE("write carries the value without a NUL, in the given transaction") {
    auto r = run([&] { return c.write("data/x", "4", xenstore::tx{7}); });
    auto f = srv.recv();
    CHECK(f.type == static_cast<std::uint32_t>(xs_type::write));
    CHECK(f.tx_id == 7);
    CHECK(f.payload == std::string("data/x\0"
                                   "4",
                                   8));
    srv.send(msg(xs_type::write, f.req_id, ok(), f.tx_id));
    CHECK(r.get().has_value());
  }
  SUBCASE("directory splits names") {
    auto r = run([&] { return c.directory("/a"); });
    auto f = srv.recv();
    srv.send(msg(xs_type::directory, f.req_id, std::string("b\0c-1\0", 6)));
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(*v == std::vector<std::string>{"b", "c-1"});
  }
  SUBCASE("an empty directory") {
    auto r = run([&] { return c.directory("/a"); });
    auto f = srv.recv();
    srv.send(msg(xs_type::directory, f.req_id, ""));
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(v->empty());
  }
  SUBCASE("permissions both ways") {
    auto g = run([&] { return c.get_perms("/a"); });
    auto f = srv.recv();
    CHECK(f.payload == nul("/a"));
    srv.send(msg(xs_type::get_perms, f.req_id, std::string("n0\0r5\0b65535\0", 13)));
    auto p = g.get();
    REQUIRE(p.has_value());
    CHECK(*p == std::vector<xenstore::perm>{
                    {xenstore::access::none, 0}, {xenstore::access::read, 5}, {xenstore::access::both, 65535}});
    const xenstore::perm set[] = {{xenstore::access::write, 3}, {xenstore::access::read, 0}};
    auto s = run([&] { return c.set_perms("/a", set); });
    f = srv.recv();
    CHECK(f.payload == std::string("/a\0w3\0r0\0", 9));
    srv.send(msg(xs_type::set_perms, f.req_id, ok()));
    CHECK(s.get().has_value());
  }
  SUBCASE("mkdir, rm, domain path, transaction start and end") {
    auto m = run([&] { return c.mkdir("/m"); });
    auto f = srv.recv();
    CHECK(f.type == static_cast<std::uint32_t>(xs_type::mkdir));
    srv.send(msg(xs_type::mkdir, f.req_id, ok()));
    CHECK(m.get().has_value());
    auto d = run([&] { return c.rm("/m"); });
    f = srv.recv();
    CHECK(f.type == static_cast<std::uint32_t>(xs_type::rm));
    srv.send(msg(xs_type::rm, f.req_id, ok()));
    CHECK(d.get().has_value());
    auto p = run([&] { return c.get_domain_path(3); });
    f = srv.recv();
    CHECK(f.payload == nul("3"));
    srv.send(msg(xs_type::get_domain_path, f.req_id, nul("/local/domain/3")));
    auto pv = p.get();
    REQUIRE(pv.has_value());
    CHECK(*pv == "/local/domain/3");
    auto t = run([&] { return c.transaction_start(); });
    f = srv.recv();
    CHECK(f.payload == nul(""));
    srv.send(msg(xs_type::transaction_start, f.req_id, nul("42")));
    auto tv = t.get();
    REQUIRE(tv.has_value());
    CHECK(tv->id == 42);
    auto e = run([&] { return c.transaction_end(xenstore::tx{42}, false); });
    f = srv.recv();
    CHECK(f.tx_id == 42);
    CHECK(f.payload == nul("F"));
    srv.send(msg(xs_type::transaction_end, f.req_id, ok(), f.tx_id));
    CHECK(e.get().has_value());
  }
}

TEST_CASE("an XS_ERROR reply carries the protocol errno name") {
  scripted_peer srv;
  auto c = srv.client();
  auto r = run([&] { return c.read("/nope"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::error, f.req_id, nul("ENOENT")));
  auto v = r.get();
  REQUIRE(!v.has_value());
  CHECK(v.error() == xenstore::errc::enoent);
  CHECK(v.error().name() == "ENOENT");
  CHECK(c.health().has_value());  // an error answer is not a broken connection

  SUBCASE("an errno name this client does not know is eother, still not broken") {
    auto r2 = run([&] { return c.read("/x"); });
    f = srv.recv();
    srv.send(msg(xs_type::error, f.req_id, nul("EFUTURE")));
    auto v2 = r2.get();
    REQUIRE(!v2.has_value());
    CHECK(v2.error() == xenstore::errc::eother);
    CHECK(c.health().has_value());
  }
}

TEST_CASE("bad arguments fail locally without reaching the server") {
  scripted_peer srv;
  auto c = srv.client();
  for (auto p : {"", "/a/", "a//b", "/a b", "/a\nb", "@introduceDomain"}) {
    auto r = c.read(p);
    REQUIRE(!r.has_value());
    CHECK(r.error() == xenstore::errc::bad_request);
  }
  auto big = c.write("/a", std::string(5000, 'x'));
  REQUIRE(!big.has_value());
  CHECK(big.error() == xenstore::errc::bad_request);
  CHECK(c.health().has_value());
}

TEST_CASE("replies are matched to requests by req_id, in any order, with events between") {
  scripted_peer srv;
  auto c = srv.client();
  auto w = run([&] { return c.watch("/w"); });
  auto fw = srv.recv();
  CHECK(fw.payload.substr(0, 3) == std::string("/w\0", 3));
  const std::string token = fw.payload.substr(3, fw.payload.size() - 4);
  srv.send(msg(xs_type::watch, fw.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  CHECK(watch->token() == token);

  auto a = run([&] { return c.read("/a"); });
  auto fa = srv.recv();
  auto b = run([&] { return c.read("/b"); });
  auto fb = srv.recv();
  CHECK(fa.req_id != fb.req_id);
  // The answer to the second request first, with watch events around and between.
  srv.send(msg(xs_type::watch_event, 0, nul("/w/1") + nul(token)) + msg(xs_type::read, fb.req_id, "B") +
           msg(xs_type::watch_event, 0, nul("/w/2") + nul(token)) + msg(xs_type::read, fa.req_id, "A"));
  auto va = a.get();
  auto vb = b.get();
  REQUIRE(va.has_value());
  REQUIRE(vb.has_value());
  CHECK(*va == "A");
  CHECK(*vb == "B");
  auto e1 = watch->next(2000ms);
  auto e2 = watch->next(2000ms);
  REQUIRE(e1.has_value());
  REQUIRE(e2.has_value());
  CHECK(e1->path == "/w/1");
  CHECK(e2->path == "/w/2");
  CHECK(e1->lost == 0);
}

TEST_CASE("replies split into single bytes are reassembled") {
  scripted_peer srv;
  auto c = srv.client();
  auto r = run([&] { return c.read("/a"); });
  auto f = srv.recv();
  const auto bytes = msg(xs_type::read, f.req_id, "slow");
  for (char ch : bytes) srv.send(std::string_view(&ch, 1));
  auto v = r.get();
  REQUIRE(v.has_value());
  CHECK(*v == "slow");
}

struct bad_reply {
  const char* what;
  std::string bytes;  // {ID} is replaced by the request's req_id
  xenstore::fault fault;
};

TEST_CASE("a malformed reply latches the connection broken with the reason") {
  const std::vector<std::pair<const char*, xenstore::fault>> cases = {
      {"unsolicited req_id", xenstore::fault::unsolicited_reply},
      {"reply of another type", xenstore::fault::reply_type_mismatch},
      {"reply in another transaction", xenstore::fault::reply_tx_mismatch},
      {"len above 4096", xenstore::fault::oversized_len},
      {"unknown message type", xenstore::fault::bad_type},
      {"request-only type from the server", xenstore::fault::bad_type},
      {"error name without NUL", xenstore::fault::bad_error_name},
      {"error name not an errno", xenstore::fault::bad_error_name},
      {"watch event with one string", xenstore::fault::malformed_event},
      {"watch event with a bad path", xenstore::fault::malformed_event},
      {"end of stream mid-message", xenstore::fault::peer_closed},
  };
  for (const auto& one : cases) {
    const char* what = one.first;
    const xenstore::fault fault = one.second;
    CAPTURE(what);
    scripted_peer srv;
    auto c = srv.client();
    auto r = run([&] { return c.read("/a"); });
    auto f = srv.recv();
    const std::string w = what;
    if (w == "unsolicited req_id") srv.send(msg(xs_type::read, f.req_id + 1, "x"));
    if (w == "reply of another type") srv.send(msg(xs_type::write, f.req_id, ok()));
    if (w == "reply in another transaction") srv.send(msg(xs_type::read, f.req_id, "x", 5));
    if (w == "len above 4096") {
      std::string h = msg(xs_type::read, f.req_id, "");
      xenbus::detail::xs_put_u32(h.data() + 12, 4097);
      srv.send(h);
    }
    if (w == "unknown message type") srv.send(msg(static_cast<xs_type>(99), f.req_id, ""));
    if (w == "request-only type from the server") srv.send(msg(static_cast<xs_type>(20), f.req_id, ""));
    if (w == "error name without NUL") srv.send(msg(xs_type::error, f.req_id, "ENOENT"));
    if (w == "error name not an errno") srv.send(msg(xs_type::error, f.req_id, nul("nope")));
    if (w == "watch event with one string") srv.send(msg(xs_type::watch_event, 0, nul("/a")));
    if (w == "watch event with a bad path") srv.send(msg(xs_type::watch_event, 0, nul("/a//b") + nul("t")));
    if (w == "end of stream mid-message") {
      srv.send(msg(xs_type::read, f.req_id, "abcdef").substr(0, 20));
      srv.hang_up();
    }
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error() == xenstore::errc::broken);
    CHECK(v.error().fault == fault);
    CHECK(!v.error().reason().empty());
    // Latched: the next call fails at once with the same reason.
    auto again = c.read("/a");
    REQUIRE(!again.has_value());
    CHECK(again.error().fault == fault);
    REQUIRE(!c.health().has_value());
    CHECK(c.health().error().fault == fault);
  }
}

TEST_CASE("reply payloads that break their type's rules are refused") {
  struct one {
    const char* what;
    xs_type type;
    std::string payload;
  };
  const std::vector<one> cases = {
      {"write answered without OK", xs_type::write, nul("KO")},
      {"write answered OK without NUL", xs_type::write, "OK"},
      {"directory without final NUL", xs_type::directory, "a"},
      {"directory with an empty name", xs_type::directory, std::string("a\0\0", 3)},
      {"directory with a slash in a name", xs_type::directory, nul("a/b")},
      {"perms with a bad letter", xs_type::get_perms, nul("x0")},
      {"perms with a domid above 65535", xs_type::get_perms, nul("r65536")},
      {"perms empty", xs_type::get_perms, ""},
      {"transaction id zero", xs_type::transaction_start, nul("0")},
      {"transaction id not a number", xs_type::transaction_start, nul("1a")},
      {"transaction id above 32 bits", xs_type::transaction_start, nul("4294967296")},
      {"domain path relative", xs_type::get_domain_path, nul("local/domain/1")},
  };
  for (const auto& k : cases) {
    CAPTURE(k.what);
    scripted_peer srv;
    auto c = srv.client();
    auto r = run([&]() -> xenbus::xenstore::status {
      switch (k.type) {
        case xs_type::write:
          return c.write("/a", "v");
        case xs_type::directory: {
          auto d = c.directory("/a");
          if (!d) return xenbus::unexpected{d.error()};
          return {};
        }
        case xs_type::get_perms: {
          auto d = c.get_perms("/a");
          if (!d) return xenbus::unexpected{d.error()};
          return {};
        }
        case xs_type::transaction_start: {
          auto d = c.transaction_start();
          if (!d) return xenbus::unexpected{d.error()};
          return {};
        }
        default: {
          auto d = c.get_domain_path(1);
          if (!d) return xenbus::unexpected{d.error()};
          return {};
        }
      }
    });
    auto f = srv.recv();
    srv.send(msg(k.type, f.req_id, k.payload));
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error() == xenstore::errc::broken);
    CHECK(v.error().fault == xenstore::fault::malformed_payload);
  }
}

TEST_CASE("a broken connection fails every waiter and ends every watch") {
  scripted_peer srv;
  auto c = srv.client();
  auto w = run([&] { return c.watch("/w"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::watch, f.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  auto a = run([&] { return c.read("/a"); });
  auto b = run([&] { return c.read("/b"); });
  srv.recv();
  srv.recv();
  srv.hang_up();
  CHECK(a.get().error().fault == xenstore::fault::peer_closed);
  CHECK(b.get().error().fault == xenstore::fault::peer_closed);
  auto e = watch->next(2000ms);
  REQUIRE(!e.has_value());
  CHECK(e.error().fault == xenstore::fault::peer_closed);
  CHECK(xstest::readable(watch->fd()));  // pollers wake up to see the end
}

TEST_CASE("a watch queue is bounded: duplicates coalesce, overflow is counted and reported") {
  scripted_peer srv;
  auto c = srv.client();
  auto w = run([&] { return c.watch("/w", 3); });
  auto f = srv.recv();
  const std::string token = f.payload.substr(3, f.payload.size() - 4);
  srv.send(msg(xs_type::watch, f.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  CHECK(!xstest::readable(watch->fd()));
  auto ev = [&](const char* p) { return msg(xs_type::watch_event, 0, nul(p) + nul(token)); };
  // /w/a twice (coalesced), then /w/b, /w/c fill the queue of 3, /w/d and /w/e are dropped.
  srv.send(ev("/w/a") + ev("/w/a") + ev("/w/b") + ev("/w/c") + ev("/w/d") + ev("/w/e"));
  // A read answered after the events proves the reader has queued them all.
  auto r = run([&] { return c.read("/x"); });
  f = srv.recv();
  srv.send(msg(xs_type::read, f.req_id, "x"));
  REQUIRE(r.get().has_value());
  CHECK(xstest::readable(watch->fd()));
  auto s = watch->stats();
  CHECK(s.coalesced == 1);
  CHECK(s.dropped == 2);
  auto e1 = watch->try_next();
  REQUIRE(e1.has_value());
  CHECK(e1->path == "/w/a");
  CHECK(e1->lost == 2);  // the consumer learns at once that it must rescan
  CHECK(watch->try_next()->path == "/w/b");
  CHECK(watch->try_next()->path == "/w/c");
  auto none = watch->try_next();
  REQUIRE(!none.has_value());
  CHECK(none.error() == xenstore::errc::timeout);
  CHECK(!xstest::readable(watch->fd()));
  CHECK(watch->stats().delivered == 3);
}

TEST_CASE("a loss is reported with the next event the consumer takes") {
  scripted_peer srv;
  auto c = srv.client();
  auto w = run([&] { return c.watch("/w", 1); });
  auto f = srv.recv();
  const std::string token = f.payload.substr(3, f.payload.size() - 4);
  srv.send(msg(xs_type::watch, f.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  // The first event is consumed before the next two arrive: /w/b fits, /w/c is dropped.
  srv.send(msg(xs_type::watch_event, 0, nul("/w/a") + nul(token)));
  auto first = watch->next(2000ms);
  REQUIRE(first.has_value());
  CHECK(first->path == "/w/a");
  CHECK(first->lost == 0);
  srv.send(msg(xs_type::watch_event, 0, nul("/w/b") + nul(token)) +
           msg(xs_type::watch_event, 0, nul("/w/c") + nul(token)));
  auto r = run([&] { return c.read("/x"); });  // answered after the events: they are queued
  f = srv.recv();
  srv.send(msg(xs_type::read, f.req_id, "x"));
  REQUIRE(r.get().has_value());
  auto second = watch->try_next();
  REQUIRE(second.has_value());
  CHECK(second->path == "/w/b");
  CHECK(second->lost == 1);
  SUBCASE("the loss counter restarts after each report") {
    srv.send(msg(xs_type::watch_event, 0, nul("/w/d") + nul(token)) +
             msg(xs_type::watch_event, 0, nul("/w/e") + nul(token)) +
             msg(xs_type::watch_event, 0, nul("/w/f") + nul(token)));
    auto r2 = run([&] { return c.read("/x"); });
    f = srv.recv();
    srv.send(msg(xs_type::read, f.req_id, "x"));
    REQUIRE(r2.get().has_value());
    auto report = watch->try_next();
    REQUIRE(report.has_value());
    CHECK(report->path == "/w/d");
    CHECK(report->lost == 2);
    CHECK(watch->stats().dropped == 3);
    CHECK(!watch->try_next().has_value());
  }
}

TEST_CASE("destroying a watch sends XS_UNWATCH and its late events are counted as stray") {
  scripted_peer srv;
  auto c = srv.client();
  std::string token;
  {
    auto w = run([&] { return c.watch("/w"); });
    auto f = srv.recv();
    token = f.payload.substr(3, f.payload.size() - 4);
    srv.send(msg(xs_type::watch, f.req_id, ok()));
    auto watch = w.get();
    REQUIRE(watch.has_value());
    auto gone = run([&] { auto moved = std::move(*watch); });  // destructor runs in there
    f = srv.recv();
    CHECK(f.type == static_cast<std::uint32_t>(xs_type::unwatch));
    CHECK(f.payload == nul("/w") + nul(token));
    srv.send(msg(xs_type::unwatch, f.req_id, ok()));
    gone.get();
  }
  srv.send(msg(xs_type::watch_event, 0, nul("/w") + nul(token)));
  auto r = run([&] { return c.read("/x"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::read, f.req_id, "x"));
  REQUIRE(r.get().has_value());
  CHECK(c.stray_events() == 1);
  CHECK(c.health().has_value());
}

TEST_CASE("transact retries a commit that answers EAGAIN, a bounded number of times") {
  scripted_peer srv;
  auto c = srv.client();
  int calls = 0;
  auto serve_attempt = [&](const char* end_answer) {
    auto f = srv.recv();
    REQUIRE(f.type == static_cast<std::uint32_t>(xs_type::transaction_start));
    srv.send(msg(xs_type::transaction_start, f.req_id, nul("9")));
    f = srv.recv();
    CHECK(f.tx_id == 9);
    srv.send(msg(xs_type::read, f.req_id, "1", f.tx_id));
    f = srv.recv();
    REQUIRE(f.type == static_cast<std::uint32_t>(xs_type::transaction_end));
    CHECK(f.payload == nul("T"));
    if (std::string_view(end_answer) == "OK")
      srv.send(msg(xs_type::transaction_end, f.req_id, ok(), f.tx_id));
    else
      srv.send(msg(xs_type::error, f.req_id, nul(end_answer), f.tx_id));
  };
  auto body = [&](xenstore::tx tx) {
    ++calls;
    return c.read("/counter", tx);
  };
  SUBCASE("succeeds on the third attempt") {
    auto r = run([&] { return c.transact(body); });
    serve_attempt("EAGAIN");
    serve_attempt("EAGAIN");
    serve_attempt("OK");
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(*v == "1");
    CHECK(calls == 3);
  }
  SUBCASE("gives up with EAGAIN after max_attempts") {
    auto r = run([&] { return c.transact(body, 2); });
    serve_attempt("EAGAIN");
    serve_attempt("EAGAIN");
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error() == xenstore::errc::eagain);
    CHECK(calls == 2);
  }
  SUBCASE("other commit errors are returned at once") {
    auto r = run([&] { return c.transact(body); });
    serve_attempt("EACCES");
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error() == xenstore::errc::eacces);
    CHECK(calls == 1);
  }
}

TEST_CASE("closing the client fails waiters with closed and ends watches") {
  scripted_peer srv;
  auto c = srv.client();
  auto w = run([&] { return c.watch("/w"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::watch, f.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  auto r = run([&] { return c.read("/never-answered"); });
  srv.recv();
  c.close();
  auto v = r.get();
  REQUIRE(!v.has_value());
  CHECK(v.error() == xenstore::errc::closed);
  CHECK(watch->next(2000ms).error() == xenstore::errc::closed);
  CHECK(c.read("/a").error() == xenstore::errc::closed);
  CHECK(c.reconnect().error() == xenstore::errc::unsupported);  // sockets do not reconnect
}

TEST_CASE("the socket path follows libxenstore's environment variables") {
  ::setenv("XENSTORED_PATH", "/tmp/xs-a", 1);
  CHECK(xenbus::xenstore::default_socket_path() == "/tmp/xs-a");
  ::unsetenv("XENSTORED_PATH");
  ::setenv("XENSTORED_RUNDIR", "/tmp/xs-dir", 1);
  CHECK(xenbus::xenstore::default_socket_path() == "/tmp/xs-dir/socket");
  ::unsetenv("XENSTORED_RUNDIR");
  CHECK(xenbus::xenstore::default_socket_path() == "/var/run/xenstored/socket");
}

TEST_CASE("/dev/xen/xenbus is a transport like the socket (only present under Xen)") {
  auto c = xenbus::xenstore::client::open_device("/nonexistent/xenbus");
  REQUIRE(!c.has_value());
  CHECK(c.error().fault == xenstore::fault::io_error);
  CHECK(c.error().sys == ENOENT);
}

TEST_CASE("with a reply timeout, a server that stops answering latches broken instead of hanging") {
  scripted_peer srv;
  auto c = srv.client();
  c.set_reply_timeout(50ms);
  auto r = run([&] { return c.read("/a"); });
  srv.recv();  // taken, never answered
  auto v = r.get();
  REQUIRE(!v.has_value());
  CHECK(v.error() == xenstore::errc::broken);
  CHECK(v.error().fault == xenstore::fault::reply_timeout);
  CHECK(c.health().error().fault == xenstore::fault::reply_timeout);
}

TEST_CASE("a watch may outlive its client: it ends with closed and unregisters nothing") {
  scripted_peer srv;
  std::optional<xenbus::xenstore::watch> kept;
  {
    auto c = srv.client();
    auto w = run([&] { return c.watch("/w"); });
    auto f = srv.recv();
    srv.send(msg(xs_type::watch, f.req_id, ok()));
    auto watch = w.get();
    REQUIRE(watch.has_value());
    kept.emplace(std::move(*watch));
  }  // the client is gone here
  CHECK(xstest::readable(kept->fd()));
  CHECK(kept->next(0ms).error() == xenstore::errc::closed);
  kept.reset();  // no use-after-free (ASan), no request on a closed connection
}

// The names before 0.2.0 still compile (with a deprecation warning) and are the new types.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
#include <xenbus/posix/xenstore/ring_transport.hpp>
#include <xenbus/xenstore/client_error.hpp>
#include <type_traits>
static_assert(std::is_same_v<xenbus::xs_client, xenbus::xenstore::client>);
static_assert(std::is_same_v<xenbus::xs_watch, xenbus::xenstore::watch>);
static_assert(std::is_same_v<xenbus::xs_tx, xenbus::xenstore::tx>);
static_assert(std::is_same_v<xenbus::xs_errc, xenbus::xenstore::errc>);
static_assert(std::is_same_v<xenbus::xs_error, xenbus::xenstore::error>);
static_assert(std::is_same_v<xenbus::xs_fault, xenbus::xenstore::fault>);
static_assert(std::is_same_v<xenbus::xs_fd_transport, xenbus::xenstore::fd_transport>);
static_assert(std::is_same_v<xenbus::xs_ring_transport<xenbus::xs_eventfd_channel>,
                             xenbus::xenstore::ring_transport<xenbus::xenstore::eventfd_channel>>);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
