// Tests include/xenbus/posix/xenstore/client.hpp against a scripted server that tries what a hostile
// (or just busy) peer can do: legal names the client must not mistake for bad paths, long
// directories in parts with the generation moving, a server that stops reading, floods.
#include "xsclient_peer.hpp"

#include <xenbus/posix/xenstore/client.hpp>

#include <doctest/doctest.h>

#include <algorithm>
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

namespace {

template <class F>
auto run(F f) {
  return std::async(std::launch::async, std::move(f));
}

// Registers a watch answered OK by the scripted server; returns it and its token.
std::pair<xenbus::xenstore::watch, std::string> watched(scripted_peer& srv, xenbus::xenstore::client& c,
                                                        const char* path, std::size_t capacity = 64) {
  auto w = run([&] { return c.watch(path, capacity); });
  auto f = srv.recv();
  const std::string token = f.payload.substr(f.payload.find('\0') + 1);
  srv.send(msg(xs_type::watch, f.req_id, ok()));
  auto watch = w.get();
  REQUIRE(watch.has_value());
  return {std::move(*watch), token.substr(0, token.size() - 1)};
}

// A read answered after everything sent before it: the reader has handled all of that.
void barrier(scripted_peer& srv, xenbus::xenstore::client& c) {
  auto r = run([&] { return c.read("/barrier"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::read, f.req_id, "b"));
  REQUIRE(r.get().has_value());
}

}  // namespace

// ---- Names are not paths ---------------------------------------------------

TEST_CASE("a DIRECTORY reply lists node names: '@' is legal anywhere in a name") {
  scripted_peer srv;
  auto c = srv.client();
  auto r = run([&] { return c.directory("/local/domain/5/data"); });
  auto f = srv.recv();
  srv.send(msg(xs_type::directory, f.req_id, nul("x@y") + nul("@x") + nul("a-b_C9") + nul("y@")));
  auto v = r.get();
  REQUIRE(v.has_value());
  CHECK(*v == std::vector<std::string>{"x@y", "@x", "a-b_C9", "y@"});
  CHECK(c.health().has_value());  // not latched broken
}

TEST_CASE("DIRECTORY names are still checked: what no node name may hold is refused") {
  for (const auto& bad : std::vector<std::string>{nul("a b"), nul("a/b"), nul("a.b"), std::string("a\0\0", 3),
                                                  nul(std::string(3073, 'n'))}) {
    CAPTURE(bad);
    scripted_peer srv;
    auto c = srv.client();
    auto r = run([&] { return c.directory("/a"); });
    auto f = srv.recv();
    srv.send(msg(xs_type::directory, f.req_id, bad.substr(0, 4096)));
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error().fault == xenstore::fault::malformed_payload);
  }
}

TEST_CASE("a relative watch's event path may be longer than a relative path a client sends") {
  // The server strips "/local/domain/<domid>/" from a node written by its absolute path
  // (up to 3072 bytes), so the relative event path can exceed XENSTORE_REL_PATH_MAX.
  scripted_peer srv;
  auto c = srv.client();
  auto watched_ = watched(srv, c, "data");
  auto& w = watched_.first;
  const std::string token = watched_.second;
  const std::string long_rel = "data/" + std::string(2100, 'n') + "/x@y";
  srv.send(msg(xs_type::watch_event, 0, nul(long_rel) + nul(token)));
  auto e = w.next(5000ms);
  REQUIRE(e.has_value());
  CHECK(e->path == long_rel);
  CHECK(c.health().has_value());
  SUBCASE("beyond an absolute path's length it is refused") {
    srv.send(msg(xs_type::watch_event, 0, nul(std::string(3073, 'n')) + nul(token)));
    CHECK(w.next(5000ms).error().fault == xenstore::fault::malformed_event);
  }
}

// ---- DIRECTORY_PART ----------------------------------------------------------

namespace {
// Answers one DIRECTORY_PART request after checking its offset.
void serve_part(scripted_peer& srv, const std::string& want_offset, const std::string& reply) {
  auto got = srv.recv_for(5000ms);
  REQUIRE(got.has_value());  // before the fallback: the client gave up with E2BIG, asks nothing
  auto& f = *got;
  REQUIRE(f.type == static_cast<std::uint32_t>(xs_type::directory_part));
  CHECK(f.payload == nul("/big") + nul(want_offset));
  srv.send(msg(xs_type::directory_part, f.req_id, reply));
}
void answer_e2big(scripted_peer& srv) {
  auto f = srv.recv();
  REQUIRE(f.type == static_cast<std::uint32_t>(xs_type::directory));
  srv.send(msg(xs_type::error, f.req_id, nul("E2BIG")));
}
}  // namespace

TEST_CASE("directory falls back to DIRECTORY_PART on E2BIG, and restarts when the generation moves") {
  scripted_peer srv;
  auto c = srv.client();
  auto r = run([&] { return c.directory("/big"); });
  answer_e2big(srv);
  SUBCASE("parts joined in order") {
    serve_part(srv, "0", nul("7") + nul("a") + nul("b@"));
    serve_part(srv, "5", nul("7") + nul("c") + '\0');  // the extra NUL ends the list
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(*v == std::vector<std::string>{"a", "b@", "c"});
  }
  SUBCASE("a changed generation mid-listing starts over from offset 0") {
    serve_part(srv, "0", nul("7") + nul("a") + nul("b"));
    serve_part(srv, "4", nul("8") + nul("x"));  // changed: this part is thrown away
    serve_part(srv, "0", nul("8") + nul("a"));
    serve_part(srv, "2", nul("8") + nul("x") + '\0');
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(*v == std::vector<std::string>{"a", "x"});
  }
  SUBCASE("an empty list in parts") {
    serve_part(srv, "0", nul("3") + '\0');
    auto v = r.get();
    REQUIRE(v.has_value());
    CHECK(v->empty());
  }
  SUBCASE("a server without DIRECTORY_PART: E2BIG, as libxenstore reports it") {
    auto f = srv.recv();
    srv.send(msg(xs_type::error, f.req_id, nul("ENOSYS")));
    CHECK(r.get().error() == xenstore::errc::e2big);
    CHECK(c.health().has_value());
  }
  SUBCASE("a generation that keeps moving: eagain after a bounded number of restarts") {
    serve_part(srv, "0", nul("1") + nul("a"));
    for (unsigned i = 0; i <= xenbus::xenstore::client::directory_max_restarts; ++i) {
      serve_part(srv, "2", nul(std::to_string(100 + i)) + nul("b"));
      if (i < xenbus::xenstore::client::directory_max_restarts)
        serve_part(srv, "0", nul(std::to_string(100 + i)) + nul("a"));
    }
    CHECK(r.get().error() == xenstore::errc::eagain);
    CHECK(c.health().has_value());
  }
  SUBCASE("a part with neither names nor the end latches broken (no endless asking)") {
    serve_part(srv, "0", nul("7") + nul("a"));
    serve_part(srv, "2", nul("7"));
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error().fault == xenstore::fault::malformed_payload);
    CHECK(c.health().error().fault == xenstore::fault::malformed_payload);
  }
  SUBCASE("a malformed part latches broken") {
    serve_part(srv, "0", nul("7x") + nul("a") + '\0');  // generation not a number
    CHECK(r.get().error().fault == xenstore::fault::malformed_payload);
  }
  SUBCASE("a bad name in a part latches broken") {
    serve_part(srv, "0", nul("7") + nul("a/b") + '\0');
    CHECK(r.get().error().fault == xenstore::fault::malformed_payload);
  }
}

TEST_CASE("a listing in parts is bounded: beyond directory_max_bytes it fails with e2big") {
  scripted_peer srv;
  auto c = srv.client();
  auto r = run([&] { return c.directory("/big"); });
  answer_e2big(srv);
  // Parts of 3001 bytes of names each (one name of 3000 characters, a name's most is 3072).
  const std::string name(3000, 'n');
  std::size_t offset = 0;
  while (offset + 3001 <= xenbus::xenstore::client::directory_max_bytes) {
    serve_part(srv, std::to_string(offset), nul("1") + nul(name));
    offset += 3001;
  }
  serve_part(srv, std::to_string(offset), nul("1") + nul(name));  // this one would pass the bound
  CHECK(r.get().error() == xenstore::errc::e2big);
  CHECK(c.health().has_value());
}

// ---- Sending is bounded; destroying a watch never blocks -------------------

TEST_CASE("with a reply timeout, a server that stops reading fails the sender instead of hanging") {
  scripted_peer srv;
  srv.shrink_client_send_buffer();
  auto c = srv.client();
  // Requests without a timeout fill the socket: the server reads nothing from here on.
  std::vector<std::future<xenbus::xenstore::status>> fillers;
  for (int i = 0; i < 4; ++i) fillers.push_back(run([&c] { return c.write("/fill", std::string(4000, 'f')); }));
  std::this_thread::sleep_for(100ms);  // let them fill it (more than fits in any case)
  c.set_reply_timeout(300ms);
  auto r = run([&c] { return c.write("/late", std::string(4000, 'l')); });
  const bool bounded = r.wait_for(10s) == std::future_status::ready;
  CHECK(bounded);  // before: blocked forever, on the wire lock or in send()
  srv.hang_up();   // unblocks whatever still waits (EPIPE), so that the test can end
  auto v = r.get();
  REQUIRE(!v.has_value());
  if (bounded) {
    CHECK(v.error() == xenstore::errc::broken);
    CHECK(v.error().fault == xenstore::fault::send_timeout);
    CHECK(!v.error().reason().empty());
    CHECK(c.health().error().fault == xenstore::fault::send_timeout);
  }
  for (auto& f : fillers) CHECK(!f.get().has_value());
}

TEST_CASE(
    "destroying a watch returns at once while the server does not read, and its "
    "XS_UNWATCH goes out when it reads again") {
  scripted_peer srv;
  srv.shrink_client_send_buffer();
  auto c = srv.client();
  auto watched_ = watched(srv, c, "/w");
  auto& w = watched_.first;
  const std::string token = watched_.second;
  std::vector<std::future<xenbus::xenstore::status>> fillers;
  for (int i = 0; i < 4; ++i) fillers.push_back(run([&c] { return c.write("/fill", std::string(4000, 'f')); }));
  std::this_thread::sleep_for(100ms);
  auto gone = run([w = std::move(w)]() mutable { auto dying = std::move(w); });
  const bool prompt = gone.wait_for(5s) == std::future_status::ready;
  CHECK(prompt);  // before: blocked behind the stuck sender, or in send() itself
  if (!prompt) srv.hang_up();
  gone.get();
  if (!prompt) {
    for (auto& f : fillers) (void)f.get();
    return;
  }
  // The server reads again: the fillers' writes, and the UNWATCH, all arrive.
  bool unwatched = false;
  int writes = 0;
  while (auto f = srv.recv_for(5000ms)) {
    if (f->type == static_cast<std::uint32_t>(xs_type::unwatch)) {
      CHECK(f->payload == nul("/w") + nul(token));
      srv.send(msg(xs_type::unwatch, f->req_id, ok()));
      unwatched = true;
    } else {
      REQUIRE(f->type == static_cast<std::uint32_t>(xs_type::write));
      srv.send(msg(xs_type::write, f->req_id, ok()));
      ++writes;
    }
    if (unwatched && writes == 4) break;
  }
  CHECK(unwatched);
  CHECK(writes == 4);
  for (auto& f : fillers) CHECK(f.get().has_value());
  CHECK(c.health().has_value());  // nothing was latched on the way
  CHECK(c.dropped_unwatches() == 0);
}

TEST_CASE(
    "a watch destroyed while the socket is full (and the wire free) is unwatched before "
    "the next request") {
  scripted_peer srv;
  srv.shrink_client_send_buffer();
  auto c = srv.client();
  auto watched_ = watched(srv, c, "/w");
  auto& w = watched_.first;
  const std::string token = watched_.second;
  auto first = run([&c] { return c.write("/a", std::string(2000, 'a')); });
  auto f1 = srv.recv();  // the server reads this one, and then nothing for a while:
  CHECK(f1.type == static_cast<std::uint32_t>(xs_type::write));
  // this one fills the socket buffer, and then waits for its reply (the wire is free).
  auto second = run([&c] { return c.write("/b", std::string(4000, 'b')); });
  std::this_thread::sleep_for(100ms);
  auto gone = run([w = std::move(w)]() mutable { auto dying = std::move(w); });
  const bool prompt = gone.wait_for(5s) == std::future_status::ready;
  CHECK(prompt);  // before: blocked in send() on the full socket
  if (!prompt) {
    srv.hang_up();
    gone.get();
    (void)first.get();
    (void)second.get();
    return;
  }
  gone.get();
  auto third = run([&c] { return c.write("/c", "c"); });
  srv.send(msg(xs_type::write, f1.req_id, ok()));
  CHECK(first.get().has_value());
  std::vector<std::string> order;
  while (order.size() < 3) {
    auto f = srv.recv_for(5000ms);
    REQUIRE(f.has_value());
    order.push_back(f->type == static_cast<std::uint32_t>(xs_type::unwatch) ? "unwatch" : f->payload.substr(0, 2));
    srv.send(msg(static_cast<xs_type>(f->type), f->req_id, ok()));
  }
  // A frame is never split, and the queued UNWATCH goes before the next request's own.
  CHECK(order == std::vector<std::string>{std::string("/b"), "unwatch", std::string("/c")});
  CHECK(second.get().has_value());
  CHECK(third.get().has_value());
  CHECK(c.health().has_value());
}

// ---- The watch queue's duplicate check ------------------------------------

TEST_CASE("a watch queue forgets a path once taken: the same path queues again afterwards") {
  scripted_peer srv;
  auto c = srv.client();
  auto watched_ = watched(srv, c, "/w", 4);
  auto& w = watched_.first;
  const std::string token = watched_.second;
  auto ev = [&](const std::string& p) { return msg(xs_type::watch_event, 0, nul(p) + nul(token)); };
  srv.send(ev("/w/a") + ev("/w/b") + ev("/w/a"));
  barrier(srv, c);
  CHECK(w.stats().coalesced == 1);
  CHECK(w.try_next()->path == "/w/a");
  srv.send(ev("/w/a") + ev("/w/b"));  // /w/a queues again, /w/b is still queued
  barrier(srv, c);
  CHECK(w.stats().coalesced == 2);
  CHECK(w.try_next()->path == "/w/b");
  CHECK(w.try_next()->path == "/w/a");
  CHECK(w.try_next().error() == xenstore::errc::timeout);
}

TEST_CASE("a watch queue of capacity 100000 takes a flood of 100000 distinct events") {
  scripted_peer srv;
  auto c = srv.client();
  constexpr std::size_t n = 100000;
  auto watched_ = watched(srv, c, "/w", n);
  auto& w = watched_.first;
  const std::string token = watched_.second;
  std::string flood;
  for (std::size_t i = 0; i < n; ++i)
    flood += msg(xs_type::watch_event, 0, nul("/w/" + std::to_string(i)) + nul(token));
  const auto t0 = std::chrono::steady_clock::now();
  srv.send(flood);
  barrier(srv, c);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("100000 distinct events queued in " << ms.count() << " ms");  // reported, not asserted
  auto st = w.stats();
  CHECK(st.dropped == 0);
  CHECK(st.coalesced == 0);
  for (std::size_t i = 0; i < n; ++i) {
    auto e = w.try_next();
    REQUIRE(e.has_value());
    if (e->path != "/w/" + std::to_string(i)) {
      CHECK(e->path == "/w/" + std::to_string(i));
      break;
    }
  }
  CHECK(w.try_next().error() == xenstore::errc::timeout);
}
