// The drivers over xenstore rings (include/xenbus/posix/xenstore/ring_transport.hpp via client_store):
// one store served to each party through its own ring page, and a real ring reconnection
// (xenstore-ring.txt) in the middle of the handshake, injected through testing::faulty_store.
#include "device_test_support.hpp"

#include <xenbus/testing/faults.hpp>
#include <xenbus/posix/xenstore/ring_transport.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <atomic>
#include <memory>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>

namespace {

using namespace devtest;
namespace xt = xenbus::testing;

struct alignas(4096) ring_page {
  std::byte bytes[4096]{};
};

/// One store, several guests, each on its own xenstore ring page and event channel, served
/// by one thread (as xenstored serves every domain's ring from one loop).
class rings_server {
 public:
  static constexpr int max_rings = 4;
  explicit rings_server(int n) : n_{n} {
    for (int i = 0; i < n_; ++i) {
      auto [guest, server] = xenstore::eventfd_channel::make_pair();
      guest_ch_[i].emplace(std::move(guest));
      r_[i].ch.emplace(std::move(server));
      auto end = xenstore_ring_server::attach(pages_[i].bytes, xenstore_feature_reconnection | xenstore_feature_error);
      REQUIRE(end.has_value());
      r_[i].end.emplace(std::move(*end));
      r_[i].conn = store_.connect(0, true);
      r_[i].dec = std::make_unique<xenstore::decoder>();
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  ~rings_server() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(stop_fd_);
  }
  /// The guest end of ring i, as a device_store (call once per ring).
  client_store guest(int i) {
    auto t = xenstore::ring_transport<xenstore::eventfd_channel>::attach(pages_[i].bytes, std::move(*guest_ch_[i]));
    REQUIRE(t.has_value());
    return client_store{xenstore::client{std::move(*t)}};
  }
  std::atomic<unsigned> reconnects{0};

 private:
  struct ring {
    std::optional<xenstore::eventfd_channel> ch;
    std::optional<xenstore_ring_server> end;
    xenstore::conn_id conn;
    std::unique_ptr<xenstore::decoder> dec;
    std::string in;
  };
  bool serve(ring& r) {
    bool moved = false;
    if (r.end->handle_reconnect()) {
      // xenstore-ring.txt: the server drops the connection's watches and transactions.
      store_.disconnect(r.conn);
      r.conn = store_.connect(0, true);
      r.dec->reset();
      r.in.clear();
      reconnects.fetch_add(1, std::memory_order_relaxed);  // a statistic, read after the fact
      moved = true;
    }
    char buf[1024];
    auto n = r.end->read(std::as_writable_bytes(std::span<char>{buf}));
    if (n && *n > 0) {
      r.in.append(buf, *n);
      moved = true;
    }
    std::size_t used = 0;
    while (used < r.in.size() && store_.accepting(r.conn)) {
      used += r.dec->feed(std::string_view{r.in}.substr(used));
      if (r.dec->broken()) break;
      if (r.dec->ready()) {
        store_.handle(r.conn, r.dec->current());
        r.dec->next();
      }
    }
    r.in.erase(0, used);
    return moved;
  }
  void loop() {
    for (;;) {
      for (bool moved = true; moved;) {
        moved = false;
        for (int i = 0; i < n_; ++i)
          if (serve(r_[i])) {
            r_[i].ch->notify();  // the guest may wait for room, or for the reconnection to end
            moved = true;
          }
        // Watch events fire on any connection: flush every ring's output each round.
        for (int i = 0; i < n_; ++i) {
          auto out = store_.output(r_[i].conn);
          if (out.empty()) continue;
          auto w = r_[i].end->write(std::as_bytes(std::span<const char>{out.data(), out.size()}));
          if (w && *w > 0) {
            store_.consume(r_[i].conn, *w);
            r_[i].ch->notify();
            moved = true;
          }
        }
      }
      pollfd p[max_rings + 1];
      for (int i = 0; i < n_; ++i) p[i] = {r_[i].ch->fd(), POLLIN, 0};
      p[n_] = {stop_fd_, POLLIN, 0};
      ::poll(p, static_cast<nfds_t>(n_ + 1), 5);
      if (p[n_].revents & POLLIN) return;
      for (int i = 0; i < n_; ++i) r_[i].ch->ack();
    }
  }

  int n_;
  xenstore::store store_;
  ring_page pages_[max_rings];
  std::optional<xenstore::eventfd_channel> guest_ch_[max_rings];
  ring r_[max_rings];
  int stop_fd_ = -1;
  std::thread thread_;
};

/// The rig over rings: the toolstack, the backend and up to two frontends, each a guest of
/// the ring server; every connection wrapped in a faulty_store that can reconnect it.
struct ring_env {
  using store_type = xt::faulty_store<client_store>;
  static constexpr bool live = true;
  rings_server server{4};
  std::deque<client_store> inner;
  std::deque<store_type> conns;
  int next = 0;
  bool ok() const { return true; }
  store_type& connect(domid_t) {
    REQUIRE(next < rings_server::max_rings);
    client_store& c = inner.emplace_back(server.guest(next++));
    return conns.emplace_back(c, xt::fault_plan{});
  }
  ~ring_env() {
    conns.clear();
    inner.clear();
  }
};

}  // namespace

TEST_CASE("the drivers run over xenstore rings, and a ring reconnection mid-handshake does not stall them") {
  rig<ring_env> r;
  REQUIRE(r.tk.create().has_value());
  r.start_frontend();
  // The frontend's connection reconnects (xenstore-ring.txt) before the backend even starts:
  // the server drops its watches; the client registers them again and they fire.
  auto& fe_conn = r.env.conns.back();
  REQUIRE(fe_conn.reconnect().has_value());
  CHECK(r.pump_until([&] { return r.env.server.reconnects.load() == 1; }));
  r.start_backend();
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.exchange(20));
  // Once more while connected, on the backend's ring: nothing the drivers rely on is lost.
  REQUIRE(r.env.conns.back().reconnect().has_value());
  r.fe().close();
  REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
  CHECK(r.env.server.reconnects.load() == 2);
}
