// Tests of the byte rings: include/xenbus/ring/byte_ring.hpp, xenstore_ring.hpp, console_ring.hpp.
// Layouts against the real headers; wraparound and partial transfers; hostile indices; the
// xenstore reconnection handshake; streams against a C peer in threads and processes.
#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/console.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include "ring_peer.h"

extern "C" {
#include <xen/io/pvcalls.h>
}
#include "ring_test_util.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

using xenbus::ring_error;
using xenbus::ring_idx;
using xenbus::test::shared_pages;

// ---- Layouts, checked against xs_wire.h, console.h, ring.h (9pfs) and pvcalls.h --------
namespace {
using xs = xenbus::xenstore_domain_interface_layout;
using xc = xenbus::xencons_interface_layout;
using fi = xenbus::flex_ring_intf;
}  // namespace
static_assert(sizeof(xs) == sizeof(xenstore_domain_interface));
static_assert(offsetof(xs, req) == offsetof(xenstore_domain_interface, req));
static_assert(offsetof(xs, rsp) == offsetof(xenstore_domain_interface, rsp));
static_assert(offsetof(xs, req_cons) == offsetof(xenstore_domain_interface, req_cons));
static_assert(offsetof(xs, req_prod) == offsetof(xenstore_domain_interface, req_prod));
static_assert(offsetof(xs, rsp_cons) == offsetof(xenstore_domain_interface, rsp_cons));
static_assert(offsetof(xs, rsp_prod) == offsetof(xenstore_domain_interface, rsp_prod));
static_assert(offsetof(xs, server_features) == offsetof(xenstore_domain_interface, server_features));
static_assert(offsetof(xs, connection) == offsetof(xenstore_domain_interface, connection));
static_assert(offsetof(xs, error) == offsetof(xenstore_domain_interface, error));
static_assert(offsetof(xs, error) == 2072);  // xenstore-ring.txt's table
static_assert(sizeof(xs{}.req) == XENSTORE_RING_SIZE);
static_assert(xenbus::xenstore_feature_reconnection == XENSTORE_SERVER_FEATURE_RECONNECTION);
static_assert(xenbus::xenstore_feature_error == XENSTORE_SERVER_FEATURE_ERROR);
static_assert(xenbus::xenstore_connected == XENSTORE_CONNECTED);
static_assert(xenbus::xenstore_reconnect == XENSTORE_RECONNECT);
static_assert(xenbus::xenstore_error_ringidx == XENSTORE_ERROR_RINGIDX);
static_assert(xenbus::xenstore_error_proto == XENSTORE_ERROR_PROTO);

static_assert(sizeof(xc) == sizeof(xencons_interface));
static_assert(offsetof(xc, in) == offsetof(xencons_interface, in));
static_assert(offsetof(xc, out) == offsetof(xencons_interface, out));
static_assert(offsetof(xc, in_cons) == offsetof(xencons_interface, in_cons));
static_assert(offsetof(xc, in_prod) == offsetof(xencons_interface, in_prod));
static_assert(offsetof(xc, out_cons) == offsetof(xencons_interface, out_cons));
static_assert(offsetof(xc, out_prod) == offsetof(xencons_interface, out_prod));
static_assert(sizeof(xc{}.in) == 1024 && sizeof(xc{}.out) == 2048);
// The console and flex rings are one two-way byte ring over two layouts.
static_assert(std::is_same_v<xenbus::console_ring, xenbus::byte_ring_pair<xenbus::console_layout>>);
static_assert(std::is_same_v<xenbus::flex_ring, xenbus::byte_ring_pair<xenbus::flex_layout>>);

static_assert(offsetof(fi, in_cons) == offsetof(xen_9pfs_data_intf, in_cons));
static_assert(offsetof(fi, in_prod) == offsetof(xen_9pfs_data_intf, in_prod));
static_assert(offsetof(fi, out_cons) == offsetof(xen_9pfs_data_intf, out_cons));
static_assert(offsetof(fi, out_prod) == offsetof(xen_9pfs_data_intf, out_prod));
static_assert(offsetof(fi, ring_order) == offsetof(xen_9pfs_data_intf, ring_order));
static_assert(sizeof(fi) == offsetof(xen_9pfs_data_intf, ref));
static_assert(offsetof(fi, in_cons) == offsetof(pvcalls_data_intf, in_cons));
static_assert(offsetof(fi, in_prod) == offsetof(pvcalls_data_intf, in_prod));
static_assert(offsetof(fi, out_cons) == offsetof(pvcalls_data_intf, out_cons));
static_assert(offsetof(fi, out_prod) == offsetof(pvcalls_data_intf, out_prod));
static_assert(offsetof(fi, ring_order) == offsetof(pvcalls_data_intf, ring_order));
static_assert(xenbus::flex_ring_size(0) == XEN_FLEX_RING_SIZE(0));
static_assert(xenbus::flex_ring_size(4) == XEN_FLEX_RING_SIZE(4));
static_assert(xenbus::flex_ring_size(9) == XEN_FLEX_RING_SIZE(9));
// 2^max_order grant refs must fit in the indexes page after the header.
static_assert(sizeof(fi) + sizeof(grant_ref_t) * (1u << xenbus::flex_ring_max_order) <= 4096);
static_assert(sizeof(fi) + sizeof(grant_ref_t) * (2u << xenbus::flex_ring_max_order) > 4096);

namespace {

std::span<const std::byte> bytes_of(const char* s) { return {reinterpret_cast<const std::byte*>(s), std::strlen(s)}; }

xs* xs_page(shared_pages& p) { return reinterpret_cast<xs*>(p.data()); }

// Our end of a two-way stream test, the mirror of xbt_c_byte_stream: writes n stream bytes
// in chunks of varying size and checks the n bytes coming back, polling.
template <class Ring>
int our_byte_stream(Ring& r, std::uint64_t n, std::uint32_t max_chunk, int hang_ms) {
  std::vector<std::byte> chunk(max_chunk);
  std::uint64_t sent = 0, got = 0, step = 0;
  auto last = std::chrono::steady_clock::now();
  while (sent < n || got < n) {
    bool progress = false;
    ++step;
    if (sent < n) {
      auto want = static_cast<std::uint32_t>(1 + (step * 31337u) % max_chunk);
      if (want > n - sent) want = static_cast<std::uint32_t>(n - sent);
      for (std::uint32_t i = 0; i < want; ++i) chunk[i] = std::byte{xbt_stream_byte(sent + i)};
      auto w = r.write(std::span<const std::byte>(chunk.data(), want));
      if (!w) return -EIO;
      sent += *w;
      progress = progress || *w > 0;
    }
    if (got < n) {
      auto want = static_cast<std::uint32_t>(1 + (step * 7727u) % max_chunk);
      if (want > n - got) want = static_cast<std::uint32_t>(n - got);
      auto rd = r.read(std::span<std::byte>(chunk.data(), want));
      if (!rd) return -EIO;
      for (std::size_t i = 0; i < *rd; ++i)
        if (chunk[i] != std::byte{xbt_stream_byte(got + i)}) return -EPROTO;
      got += *rd;
      progress = progress || *rd > 0;
    }
    if (progress) {
      last = std::chrono::steady_clock::now();
    } else {
      if (std::chrono::steady_clock::now() - last > std::chrono::milliseconds(hang_ms)) return -ETIMEDOUT;
      std::this_thread::yield();
    }
  }
  return 0;
}

constexpr int hang_ms = 10000;  // no progress for this long means a stuck stream

// Puts every index of a byte ring page at `start`, as a ring that has carried traffic.
void set_xs_indices(shared_pages& p, ring_idx start) {
  auto* x = xs_page(p);
  x->req_cons = x->req_prod = x->rsp_cons = x->rsp_prod = start;
}

}  // namespace

TEST_CASE("xenstore ring: partial writes and reads with wraparound, both ends") {
  for (ring_idx start : {0u, 1000u, 0xffffffffu - 700}) {
    CAPTURE(start);
    shared_pages page(1);
    set_xs_indices(page, start);
    auto server = xenbus::xenstore_ring_server::attach(page.span());
    auto guest = xenbus::xenstore_ring_guest::attach(page.span());
    REQUIRE(server);
    REQUIRE(guest);
    CHECK(guest->server_features() == (xenbus::xenstore_feature_reconnection | xenbus::xenstore_feature_error));

    // A 1500-byte request does not fit: the first write is partial.
    std::vector<std::byte> msg(1500);
    for (std::size_t i = 0; i < msg.size(); ++i) msg[i] = std::byte{xbt_stream_byte(i)};
    auto w = guest->write(msg);
    REQUIRE(w);
    CHECK(*w == 1024);
    auto again = guest->write(std::span(msg).subspan(*w));
    REQUIRE(again);
    CHECK(*again == 0);  // full: not an error

    std::vector<std::byte> got(2000);
    auto r1 = server->read(std::span(got).first(300));
    REQUIRE(r1);
    CHECK(*r1 == 300);
    auto w2 = guest->write(std::span(msg).subspan(1024));  // 300 bytes of room, wrapping
    REQUIRE(w2);
    CHECK(*w2 == 300);
    auto r2 = server->read(std::span(got).subspan(300));
    REQUIRE(r2);
    CHECK(*r2 == 1024);
    CHECK(std::memcmp(got.data(), msg.data(), 1324) == 0);
    CHECK(xs_page(page)->req_prod == start + 1324);

    // Reply direction.
    auto rw = server->write(bytes_of("hello, guest"));
    REQUIRE(rw);
    CHECK(*rw == 12);
    char reply[32] = {};
    auto rr = guest->read(std::as_writable_bytes(std::span(reply)));
    REQUIRE(rr);
    CHECK(*rr == 12);
    CHECK(std::string_view(reply) == "hello, guest");
  }
}

TEST_CASE("xenstore ring: impossible indices are an error, latched, never an assertion") {
  shared_pages page(1);
  auto server = xenbus::xenstore_ring_server::attach(page.span());
  auto guest = xenbus::xenstore_ring_guest::attach(page.span());
  REQUIRE(server);
  REQUIRE(guest);
  std::byte buf[64];

  SUBCASE("guest: rsp_prod more than the ring size ahead") {
    xs_page(page)->rsp_prod = 1025;
    CHECK(guest->read(buf).error() == ring_error::prod_overflow);
    xs_page(page)->rsp_prod = 0;  // repaired: still broken until a reconnect
    CHECK(guest->read(buf).error() == ring_error::prod_overflow);
    CHECK(guest->write(bytes_of("x")).error() == ring_error::prod_overflow);
  }
  SUBCASE("guest: req_cons ahead of what we produced") {
    xs_page(page)->req_cons = 5;
    CHECK(guest->write(bytes_of("x")).error() == ring_error::cons_overflow);
  }
  SUBCASE("server: req_prod behind req_cons, and it tells the guest through `error`") {
    xs_page(page)->req_prod = 0xfffffff0u;
    CHECK(server->read(buf).error() == ring_error::prod_overflow);
    CHECK(xs_page(page)->error == XENSTORE_ERROR_RINGIDX);
    CHECK(guest->server_error() == XENSTORE_ERROR_RINGIDX);
    CHECK(guest->write(bytes_of("x")).error() == ring_error::peer_error);
    CHECK(server->write(bytes_of("x")).error() == ring_error::prod_overflow);
  }
  SUBCASE("server: a protocol error found above the ring stops the connection") {
    server->stop(xenbus::xenstore_error_proto);
    CHECK(guest->read(buf).error() == ring_error::peer_error);
    CHECK(server->read(buf).error() == ring_error::peer_error);
  }
}

TEST_CASE("xenstore ring: the reconnection handshake of xenstore-ring.txt") {
  shared_pages page(1);
  set_xs_indices(page, 77);
  auto server = xenbus::xenstore_ring_server::attach(page.span());
  auto guest = xenbus::xenstore_ring_guest::attach(page.span());
  REQUIRE(server);
  REQUIRE(guest);
  REQUIRE(guest->write(bytes_of("half a pack")));
  std::byte buf[64];

  // Break the ring from the server's side, so the reconnect must also clear an error.
  xs_page(page)->rsp_prod = 77 + 5000;
  CHECK(guest->read(buf).error() == ring_error::prod_overflow);

  REQUIRE(guest->begin_reconnect());
  CHECK(xs_page(page)->connection == XENSTORE_RECONNECT);
  CHECK_FALSE(guest->reconnected());
  CHECK(server->read(buf).error() == ring_error::reconnecting);

  CHECK(server->handle_reconnect());
  CHECK(xs_page(page)->connection == XENSTORE_CONNECTED);
  CHECK(xs_page(page)->req_prod == 0);
  CHECK(xs_page(page)->rsp_prod == 0);
  CHECK_FALSE(server->handle_reconnect());  // once per request
  CHECK(guest->reconnected());
  CHECK_FALSE(guest->broken());

  // The queues are empty: the half packet is gone, new traffic flows from index 0.
  CHECK(*server->read(buf) == 0);
  REQUIRE(*guest->write(bytes_of("fresh")) == 5);
  CHECK(*server->read(buf) == 5);
  CHECK(std::memcmp(buf, "fresh", 5) == 0);

  SUBCASE("a guest that finds connection = 1 at start waits for 0") {
    xs_page(page)->connection = XENSTORE_RECONNECT;
    auto late = xenbus::xenstore_ring_guest::attach(page.span());
    REQUIRE(late);
    CHECK(late->write(bytes_of("x")).error() == ring_error::reconnecting);
    CHECK(server->handle_reconnect());
    CHECK(late->reconnected());
    CHECK(*late->write(bytes_of("x")) == 1);
  }

  SUBCASE("a guest that saw a reconnect in progress restarts from the reset indices by itself") {
    // Another owner of the page (an earlier kernel) asked for the reset before we attached;
    // our guest sees only `reconnecting`, then connection = 0, and never calls reconnected().
    REQUIRE(*guest->write(bytes_of("old")) == 3);
    xs_page(page)->connection = XENSTORE_RECONNECT;
    auto late = xenbus::xenstore_ring_guest::attach(page.span());  // at req_prod 8
    REQUIRE(late);
    CHECK(late->write(bytes_of("x")).error() == ring_error::reconnecting);
    CHECK(server->handle_reconnect());  // indices back to 0
    REQUIRE(*late->write(bytes_of("new")) == 3);
    CHECK(xs_page(page)->req_prod == 3);  // written from 0, not from the stale 8
    CHECK(*server->read(buf) == 3);
    CHECK(std::memcmp(buf, "new", 3) == 0);
  }

  SUBCASE("a guest attached during a reconnect restarts even if the server is done first") {
    REQUIRE(*guest->write(bytes_of("old")) == 3);
    xs_page(page)->connection = XENSTORE_RECONNECT;
    auto late = xenbus::xenstore_ring_guest::attach(page.span());  // at req_prod 8
    REQUIRE(late);
    CHECK(server->handle_reconnect());  // reset before the guest ever looks again
    REQUIRE(*late->write(bytes_of("new")) == 3);
    CHECK(xs_page(page)->req_prod == 3);  // written from 0, not from the stale 8
    CHECK(*server->read(buf) == 3);
    CHECK(std::memcmp(buf, "new", 3) == 0);
  }
}

TEST_CASE("xenstore ring: reconnection needs the server's feature bit") {
  shared_pages page(1);
  auto server = xenbus::xenstore_ring_server::attach(page.span(), 0);
  auto guest = xenbus::xenstore_ring_guest::attach(page.span());
  REQUIRE(server);
  REQUIRE(guest);
  CHECK(guest->begin_reconnect().error() == ring_error::not_supported);
  // Without the feature, `connection` and `error` hold no valid data: they are ignored.
  xs_page(page)->connection = 1;
  xs_page(page)->error = 2;
  CHECK(*guest->write(bytes_of("ok")) == 2);
  CHECK_FALSE(server->handle_reconnect());
  CHECK_FALSE(guest->server_error());
}

TEST_CASE("console ring: guest output and backend input wrap and stay in order") {
  shared_pages page(1);
  auto* c = reinterpret_cast<xc*>(page.data());
  c->out_cons = c->out_prod = 0xfffff000u;
  c->in_cons = c->in_prod = 0xffffffffu;
  auto guest = xenbus::console_ring::attach(xenbus::console_end::guest, page.span());
  auto backend = xenbus::console_ring::attach(xenbus::console_end::backend, page.span());
  REQUIRE(guest);
  REQUIRE(backend);
  CHECK(*guest->space() == 2048);
  CHECK(*backend->space() == 1024);
  CHECK(guest->size() == 2048);  // the direction each end writes
  CHECK(backend->size() == 1024);

  std::vector<std::byte> out(5000), seen;
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::byte{xbt_stream_byte(i)};
  std::size_t written = 0;
  std::byte buf[700];
  while (seen.size() < out.size()) {
    auto w = guest->write(std::span(out).subspan(written));
    REQUIRE(w);
    written += *w;
    auto r = backend->read(buf);
    REQUIRE(r);
    seen.insert(seen.end(), buf, buf + *r);
  }
  CHECK(std::memcmp(seen.data(), out.data(), out.size()) == 0);
  CHECK(c->out_prod == 0xfffff000u + 5000);

  REQUIRE(*backend->write(bytes_of("ls\n")) == 3);
  char typed[8] = {};
  CHECK(*guest->read(std::as_writable_bytes(std::span(typed))) == 3);
  CHECK(std::string_view(typed) == "ls\n");

  SUBCASE("in_prod - in_cons > 1024 is an error for the guest") {
    c->in_prod = c->in_cons + 1025;
    CHECK(guest->read(std::as_writable_bytes(std::span(typed))).error() == ring_error::prod_overflow);
    CHECK(guest->available().error() == ring_error::prod_overflow);
  }
}

TEST_CASE("flex ring: order checked, both ends, wraparound") {
  for (unsigned order : {0u, 2u}) {
    CAPTURE(order);
    shared_pages intf(1), data(std::size_t{1} << order);
    auto* f = reinterpret_cast<fi*>(intf.data());
    f->ring_order = order;
    f->in_cons = f->in_prod = f->out_cons = f->out_prod = 0xffffff00u;
    auto front = xenbus::flex_ring::attach(xenbus::flex_end::frontend, intf.span(), data.span(), order);
    auto back = xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), f->ring_order);
    REQUIRE(front);
    REQUIRE(back);
    CHECK(front->size() == XEN_FLEX_RING_SIZE(order));

    std::vector<std::byte> msg(3 * front->size() + 17), got;
    for (std::size_t i = 0; i < msg.size(); ++i) msg[i] = std::byte{xbt_stream_byte(i * 3)};
    std::size_t written = 0;
    std::vector<std::byte> buf(1000);
    while (got.size() < msg.size()) {
      written += *front->write(std::span(msg).subspan(written));
      auto r = back->read(buf);
      REQUIRE(r);
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
    CHECK(got == msg);
    CHECK(f->out_prod == static_cast<ring_idx>(0xffffff00u + msg.size()));  // wrapped
    REQUIRE(*back->write(bytes_of("reply")) == 5);
    CHECK(*front->available() == 5);
  }
  SUBCASE("an order larger than advertised or than the data is refused") {
    shared_pages intf(1), data(2);
    CHECK(xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), 2, 1).error() ==
          ring_error::bad_memory);
    CHECK(xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), 2).error() ==
          ring_error::bad_memory);
    CHECK(xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), 0xffffffffu).error() ==
          ring_error::bad_memory);
    CHECK(xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), -1).error() ==
          ring_error::bad_memory);  // compared by value, not converted to unsigned
    CHECK(xenbus::flex_ring::attach(xenbus::flex_end::backend, intf.span(), data.span(), 1));
  }
}

// ---- Against the C peer -----------------------------------------------------------------

namespace {

struct byte_case {
  const char* name;
  xbt_byte_ring c_end;
  unsigned order;
  ring_idx start;
};

constexpr byte_case byte_cases[] = {
    {"xenstore: C guest, our server", XBT_XS_GUEST, 0, 0xffffffffu - 3000},
    {"xenstore: our guest, C server", XBT_XS_SERVER, 0, 12345},
    {"console: C guest, our backend", XBT_CONS_GUEST, 0, 0xfffffe00u},
    {"console: our guest, C backend", XBT_CONS_BACK, 0, 0},
    {"flex order 0: C frontend (xen_9pfs_*), our backend", XBT_FLEX_FRONT, 0, 0xffffffffu - 5000},
    {"flex order 3: our frontend, C backend (xen_9pfs_*)", XBT_FLEX_BACK, 3, 0xfffff000u},
};

void prepare(const byte_case& c, shared_pages& page) {
  if (c.c_end == XBT_XS_GUEST || c.c_end == XBT_XS_SERVER) {
    set_xs_indices(page, c.start);
  } else if (c.c_end == XBT_CONS_GUEST || c.c_end == XBT_CONS_BACK) {
    auto* x = reinterpret_cast<xc*>(page.data());
    x->in_cons = x->in_prod = x->out_cons = x->out_prod = c.start;
  } else {
    auto* f = reinterpret_cast<fi*>(page.data());
    f->in_cons = f->in_prod = f->out_cons = f->out_prod = c.start;
    f->ring_order = c.order;
  }
}

// Runs our end of the case's ring (the side opposite the C peer) to completion.
int run_ours(const byte_case& c, shared_pages& page, shared_pages& data, std::uint64_t n) {
  switch (c.c_end) {
    case XBT_XS_GUEST: {
      auto s = xenbus::xenstore_ring_server::attach(page.span());
      return s ? our_byte_stream(*s, n, 1500, hang_ms) : -EINVAL;
    }
    case XBT_XS_SERVER: {
      auto g = xenbus::xenstore_ring_guest::attach(page.span());
      return g ? our_byte_stream(*g, n, 1500, hang_ms) : -EINVAL;
    }
    case XBT_CONS_GUEST:
    case XBT_CONS_BACK: {
      auto r = xenbus::console_ring::attach(
          c.c_end == XBT_CONS_GUEST ? xenbus::console_end::backend : xenbus::console_end::guest, page.span());
      return r ? our_byte_stream(*r, n, 3000, hang_ms) : -EINVAL;
    }
    default: {
      auto r =
          xenbus::flex_ring::attach(c.c_end == XBT_FLEX_FRONT ? xenbus::flex_end::backend : xenbus::flex_end::frontend,
                                    page.span(), data.span(), c.order);
      return r ? our_byte_stream(*r, n, 5000, hang_ms) : -EINVAL;
    }
  }
}

constexpr std::uint64_t stream_bytes = 300000;  // crosses every start's 2^32 wrap

}  // namespace

TEST_CASE("byte rings against the C peer, threads: both directions at once") {
  for (const auto& c : byte_cases) {
    INFO(std::string_view(c.name));
    shared_pages page(1), data(std::size_t{1} << c.order);
    prepare(c, page);
    // Attach ours first: a server advertises its features before the guest uses the ring.
    int theirs = -1;
    std::thread peer(
        [&] { theirs = xbt_c_byte_stream(c.c_end, page.data(), data.data(), c.order, stream_bytes, 1500, hang_ms); });
    const int ours = run_ours(c, page, data, stream_bytes);
    peer.join();
    CHECK(ours == 0);
    CHECK(theirs == 0);
  }
}

TEST_CASE("byte rings against the C peer, processes sharing a memfd mapping") {
  for (const auto& c : byte_cases) {
    INFO(std::string_view(c.name));
    shared_pages page(1, true), data(std::size_t{1} << c.order, true);
    prepare(c, page);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int rc = xbt_c_byte_stream(c.c_end, page.data(), data.data(), c.order, stream_bytes, 1500, hang_ms);
      _exit(rc == 0 ? 0 : 1);
    }
    const int ours = run_ours(c, page, data, stream_bytes);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(ours == 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}

TEST_CASE("byte ring producer: the cached reader index never lets a write overrun, and a bad one is caught") {
  alignas(8) std::byte data[16]{};
  ring_idx cons = 0, prod = 0;
  const xenbus::byte_ring_location at{data, 16, &cons, &prod};
  xenbus::byte_ring_producer w(at, 0);
  const std::byte chunk[12]{};

  SUBCASE("writes stop at the reader's index, however stale our copy of it") {
    CHECK(*w.write(chunk) == 12);
    CHECK(*w.write(chunk) == 4);  // room: 16 - 12, read afresh
    CHECK(*w.write(chunk) == 0);  // full
    cons = 5;                     // the reader frees 5 bytes
    CHECK(*w.write(chunk) == 5);  // exactly those, never more
    CHECK(prod == 21);
    CHECK(*w.write(chunk) == 0);
  }
  SUBCASE("a reader index ahead of what we wrote latches the ring broken") {
    CHECK(*w.write(std::span<const std::byte>(chunk, 4)) == 4);
    cons = 9;  // the reader claims bytes we never wrote
    // The cached room (12) covers a 12-byte write without looking at the index: a stale
    // index only understates the room, so those bytes land in space that is free.
    CHECK(*w.write(chunk) == 12);
    // The next write needs more room than cached: it reads the index, validates it
    // against what we wrote (16), and fails.
    cons = 20;
    CHECK(w.write(chunk).error() == ring_error::cons_overflow);
    CHECK(w.broken() == ring_error::cons_overflow);
    cons = 16;  // repaired: still broken
    CHECK(w.write(std::span<const std::byte>(chunk, 1)).error() == ring_error::cons_overflow);
  }
  SUBCASE("space() always reads and validates the reader's index now") {
    cons = 0xffffffe0u;  // 32 bytes behind a fresh ring: more than the ring holds
    CHECK(w.space().error() == ring_error::cons_overflow);
  }
}
