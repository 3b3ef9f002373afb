// Tests include/xenbus/posix/xenstore/ring_transport.hpp: the client over a xenstore ring page, served
// by a thread running our store behind xenstore_ring_server, including ring reconnection.
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/posix/xenstore/ring_transport.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

using namespace std::chrono_literals;
namespace xenstore = xenbus::xenstore;

namespace {

struct alignas(4096) ring_page {
  std::byte bytes[4096]{};
  xenbus::xenstore_domain_interface_layout* layout() {
    return reinterpret_cast<xenbus::xenstore_domain_interface_layout*>(bytes);
  }
};

/// The server side of one guest's ring: our store behind xenstore_ring_server, on a thread.
/// While `hold` is set it takes request bytes off the ring but does not answer them, until
/// the next reconnection.
class ring_store_server {
 public:
  explicit ring_store_server(ring_page& page, xenstore::eventfd_channel ch,
                             std::uint32_t features = xenbus::xenstore_feature_reconnection |
                                                      xenbus::xenstore_feature_error)
      : page_{page}, ch_{std::move(ch)} {
    auto end = xenbus::xenstore_ring_server::attach(page_.bytes, features);
    REQUIRE(end.has_value());
    end_ = std::make_unique<xenbus::xenstore_ring_server>(std::move(*end));
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  ~ring_store_server() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(stop_fd_);
  }
  std::atomic<bool> hold{false};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> bytes_in{0};

 private:
  void loop() {
    xenbus::xenstore::store store;
    auto conn = store.connect(0, true);
    auto dec = std::make_unique<xenbus::xenstore::decoder>();
    std::string in;
    for (;;) {
      for (bool moved = true; moved;) {
        moved = false;
        if (end_->handle_reconnect()) {
          // xenstore-ring.txt: drop partial packets, requests, watches and transactions.
          store.disconnect(conn);
          conn = store.connect(0, true);
          dec->reset();
          in.clear();
          reconnects.fetch_add(1, std::memory_order_relaxed);  // a counter read after join or polling
          hold.store(false, std::memory_order_relaxed);        // a stall lasts until the next reset
          moved = true;
        }
        char buf[1024];
        auto n = end_->read(std::as_writable_bytes(std::span<char>{buf}));
        if (n && *n > 0) {
          in.append(buf, *n);
          bytes_in.fetch_add(*n, std::memory_order_relaxed);  // progress counter only
          moved = true;
        }
        std::size_t used = 0;
        while (!hold.load(std::memory_order_relaxed) && used < in.size() && store.accepting(conn)) {
          used += dec->feed(std::string_view{in}.substr(used));
          if (dec->broken()) break;
          if (dec->ready()) {
            store.handle(conn, dec->current());
            dec->next();
          }
        }
        in.erase(0, used);
        auto out = store.output(conn);
        if (!out.empty()) {
          auto w = end_->write(std::as_bytes(std::span<const char>{out.data(), out.size()}));
          if (w && *w > 0) {
            store.consume(conn, *w);
            moved = true;
          }
        }
        if (moved) ch_.notify();
      }
      pollfd p[2] = {{ch_.fd(), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      ::poll(p, 2, hold.load(std::memory_order_relaxed) ? 10 : -1);
      if (p[1].revents & POLLIN) return;
      ch_.ack();
    }
  }

  ring_page& page_;
  xenstore::eventfd_channel ch_;
  std::unique_ptr<xenbus::xenstore_ring_server> end_;
  int stop_fd_ = -1;
  std::thread thread_;
};

struct ring_fixture {
  ring_page page;
  std::unique_ptr<ring_store_server> server;
  xenstore::client client() {
    auto [guest, srv] = xenstore::eventfd_channel::make_pair();
    if (!server) server = std::make_unique<ring_store_server>(page, std::move(srv));
    auto t = xenstore::ring_transport<xenstore::eventfd_channel>::attach(page.bytes, std::move(guest));
    REQUIRE(t.has_value());
    return xenstore::client{std::move(*t)};
  }
};

}  // namespace

TEST_CASE("the client works over a xenstore ring served by our store") {
  ring_fixture f;
  auto c = f.client();
  REQUIRE(c.write("/local/domain/1/name", "guest").has_value());
  CHECK(c.read("/local/domain/1/name").value() == "guest");
  CHECK(c.directory("/local/domain/1").value() == std::vector<std::string>{"name"});
  auto missing = c.read("/nope");
  REQUIRE(!missing.has_value());
  CHECK(missing.error() == xenstore::errc::enoent);

  SUBCASE("messages larger than the 1 KiB ring pass in pieces, across index wrap") {
    const std::string big(3000, 'x');
    for (int i = 0; i < 20; ++i) {
      REQUIRE(c.write("/big", big).has_value());
      CHECK(c.read("/big").value() == big);
    }
  }
  SUBCASE("transactions and watches") {
    auto w = c.watch("/local/domain/1");
    REQUIRE(w.has_value());
    CHECK(w->next(5000ms).value().path == "/local/domain/1");  // fires once on registration
    auto r = c.transact([&](xenstore::tx tx) { return c.write("/local/domain/1/state", "4", tx); });
    REQUIRE(r.has_value());
    CHECK(w->next(5000ms).value().path == "/local/domain/1/state");
  }
}

TEST_CASE("ring reconnection: requests in flight fail with reset, watches come back") {
  ring_fixture f;
  auto c = f.client();
  REQUIRE(c.write("/keep", "1").has_value());
  auto w = c.watch("/keep");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "/keep");
  auto tx = c.transaction_start();
  REQUIRE(tx.has_value());

  // A request the server takes off the ring but never answers.
  f.server->hold = true;
  const auto before = f.server->bytes_in.load();
  auto stuck = std::async(std::launch::async, [&] { return c.read("/keep"); });
  while (f.server->bytes_in.load() < before + 16 + 6) std::this_thread::sleep_for(1ms);

  REQUIRE(c.reconnect().has_value());
  auto r = stuck.get();
  REQUIRE(!r.has_value());
  CHECK(r.error() == xenstore::errc::reset);
  CHECK(f.server->reconnects.load() == 1);

  // The connection works again; the store kept its data (only the connection reset).
  CHECK(c.read("/keep").value() == "1");
  // The server dropped the transaction with the connection.
  auto end = c.transaction_end(*tx, true);
  REQUIRE(!end.has_value());
  CHECK(end.error() != xenstore::errc::broken);
  // The client registered the watch again: it fires once more, then on changes.
  CHECK(w->next(5000ms).value().path == "/keep");
  REQUIRE(c.write("/keep", "2").has_value());
  CHECK(w->next(5000ms).value().path == "/keep");
  CHECK(c.health().has_value());
}

TEST_CASE("a guest that finds a reconnection in progress waits for the server to finish it") {
  ring_page page;
  // Someone else (e.g. a bootloader) asked for a reconnection before we attached.
  page.layout()->server_features = xenbus::xenstore_feature_reconnection;
  page.layout()->connection = xenbus::xenstore_reconnect;
  page.layout()->req_prod = 77;  // garbage left behind: the reset clears it
  auto [guest, srv] = xenstore::eventfd_channel::make_pair();
  auto t = xenstore::ring_transport<xenstore::eventfd_channel>::attach(page.bytes, std::move(guest));
  REQUIRE(t.has_value());
  xenstore::client c{std::move(*t)};
  ring_store_server server{page, std::move(srv), xenbus::xenstore_feature_reconnection};
  auto w = c.write("/a", "b");
  if (!w) FAIL(w.error().name(), " ", w.error().reason());
  CHECK(c.read("/a").value() == "b");
  CHECK(server.reconnects.load() == 1);
}

TEST_CASE("a hostile ring server latches the connection broken") {
  ring_page page;
  page.layout()->server_features = xenbus::xenstore_feature_error;
  auto [guest, srv] = xenstore::eventfd_channel::make_pair();
  auto t = xenstore::ring_transport<xenstore::eventfd_channel>::attach(page.bytes, std::move(guest));
  REQUIRE(t.has_value());
  xenstore::client c{std::move(*t)};
  auto r = std::async(std::launch::async, [&] { return c.read("/a"); });
  auto* x = page.layout();
  // Wait until the request sits in the ring (nobody serves it).
  while (std::atomic_ref(x->req_prod).load(std::memory_order_acquire) < 16 + 3) std::this_thread::sleep_for(1ms);

  SUBCASE("a response producer more than a ring ahead") {
    std::atomic_ref(x->rsp_prod).store(x->rsp_cons + 5000, std::memory_order_release);
    srv.notify();
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error() == xenstore::errc::broken);
    CHECK(v.error().fault == xenstore::fault::ring_index);
  }
  SUBCASE("the server's error field") {
    std::atomic_ref(x->error).store(xenbus::xenstore_error_proto, std::memory_order_release);
    srv.notify();
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error().fault == xenstore::fault::ring_error);
  }
  SUBCASE("a reply that is not a reply") {
    // An XS_WATCH_EVENT with one string, written into the response ring by hand.
    std::string m(16, '\0');
    xenbus::detail::xs_put_u32(m.data(), 15);
    xenbus::detail::xs_put_u32(m.data() + 12, 3);
    m += std::string("/a\0", 3);
    std::memcpy(x->rsp, m.data(), m.size());
    std::atomic_ref(x->rsp_prod).store(static_cast<std::uint32_t>(m.size()), std::memory_order_release);
    srv.notify();
    auto v = r.get();
    REQUIRE(!v.has_value());
    CHECK(v.error().fault == xenstore::fault::malformed_event);
  }
  CHECK(!c.health().has_value());
  CHECK(c.reconnect().error() == xenstore::errc::unsupported);  // no reconnection feature offered
}

TEST_CASE("with a reply timeout, a ring server that takes no bytes fails the sender instead of hanging") {
  ring_page page;
  auto [guest, srv] = xenstore::eventfd_channel::make_pair();
  auto t = xenstore::ring_transport<xenstore::eventfd_channel>::attach(page.bytes, std::move(guest));
  REQUIRE(t.has_value());
  xenstore::client c{std::move(*t)};
  c.set_reply_timeout(200ms);
  // A frame larger than the 1024-byte request ring, which nobody empties.
  auto r = std::async(std::launch::async, [&] { return c.write("/a", std::string(2000, 'x')); });
  const bool bounded = r.wait_for(10s) == std::future_status::ready;
  CHECK(bounded);           // before: waited for room forever
  if (!bounded) c.close();  // interrupts the transport, so that the test can end
  auto v = r.get();
  REQUIRE(!v.has_value());
  if (bounded) {
    CHECK(v.error() == xenstore::errc::broken);
    CHECK(v.error().fault == xenstore::fault::send_timeout);
  }
  CHECK(std::atomic_ref(page.layout()->req_prod).load(std::memory_order_acquire) == 1024);
}
