// Fuzzes include/xenbus/hosted/xenstore/ring_connection.hpp: a hostile guest owns every byte of its xenstore page
// (ring contents, the four indices, the connection and error fields) and interleaves its scribbles with the server's
// pumps, while an honest guest beside it must always get right answers. The server must never write the guest's
// request area, never hold more output than the store's bound, and keep the store consistent.
#include <xenbus/hosted/xenstore/ring_connection.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/ring/xenstore_page.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace xs = xenbus::xenstore;
using layout = xenbus::xenstore_domain_interface_layout;

namespace {

struct alignas(4096) page {
  std::byte bytes[4096]{};
  layout* x() { return reinterpret_cast<layout*>(bytes); }
};

std::uint32_t load(std::uint32_t& f) { return std::atomic_ref(f).load(std::memory_order_acquire); }
void store(std::uint32_t& f, std::uint32_t v) { std::atomic_ref(f).store(v, std::memory_order_release); }

/// Reads 1..4 bytes of the input as a number (little end first).
struct input {
  const std::uint8_t* p;
  std::size_t n;
  bool empty() const { return n == 0; }
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{byte()} << (8 * i);
    return v;
  }
  std::string_view bytes(std::size_t k) {
    if (k > n) k = n;
    std::string_view s{reinterpret_cast<const char*>(p), k};
    p += k;
    n -= k;
    return s;
  }
};

/// The honest guest: one GET_DOMAIN_PATH at a time, answered correctly or the test fails.
struct honest {
  page pg;
  std::unique_ptr<xs::ring_connection> conn;
  std::unique_ptr<xenbus::xenstore_ring_guest> end;

  void round_trip(std::uint32_t domid) {
    char m[32];
    const std::string arg = std::to_string(domid);
    const std::size_t len =
        xs::encode_message(xs::msg_type::get_domain_path, 9, 0, {arg, std::string_view{"\0", 1}}, std::span<char>{m});
    std::size_t sent = 0;
    std::string got;
    const std::string want = "/local/domain/" + arg + std::string(1, '\0');
    for (int round = 0; round < 16 && got.size() < xs::header_size + want.size(); ++round) {
      if (sent < len) {
        auto n = end->write(std::as_bytes(std::span<const char>{m + sent, len - sent}));
        if (!n) std::abort();
        sent += *n;
      }
      conn->pump();
      char buf[256];
      auto n = end->read(std::as_writable_bytes(std::span<char>{buf}));
      if (!n) std::abort();
      got.append(buf, *n);
    }
    if (got.size() != xs::header_size + want.size() || got.substr(xs::header_size) != want) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xs::limits l;
  l.outstanding = 4;
  l.queued_events = 16;
  l.queued_event_bytes = 2048;
  l.privileged_outstanding_bytes = 16 * 1024;
  xs::store s{l};
  page bad;
  auto c = xs::ring_connection::attach(s, bad.bytes, 5, false, true);
  if (!c) std::abort();
  auto& conn = *c;
  honest good;
  auto gc = xs::ring_connection::attach(s, good.pg.bytes, 6, false, true);
  auto ge = xenbus::xenstore_ring_guest::attach(good.pg.bytes);
  if (!gc || !ge) std::abort();
  good.conn = std::move(*gc);
  good.end = std::make_unique<xenbus::xenstore_ring_guest>(*ge);
  const auto dom0 = s.connect(0, true);
  // A home for the hostile guest, and one of its watches' paths, so that requests succeed too.
  (void)s.mkdir(dom0, 0, "/local/domain/5");
  (void)s.set_perms(dom0, 0, "/local/domain/5", {xs::perm{xs::access::none, 5}});

  input in{data, size};
  layout* x = bad.x();
  for (int step = 0; step < 512 && !in.empty(); ++step) {
    switch (in.byte() % 8) {
      case 0: {  // the guest writes bytes at its producer index and publishes them
        const std::string_view b = in.bytes(in.byte());
        const std::uint32_t prod = load(x->req_prod);
        for (std::size_t i = 0; i < b.size(); ++i) x->req[(prod + i) & 1023] = b[i];
        store(x->req_prod, prod + static_cast<std::uint32_t>(b.size()));
        break;
      }
      case 1: {  // any field of the control area, any value
        std::uint32_t* fields[] = {&x->req_cons,        &x->req_prod,   &x->rsp_cons, &x->rsp_prod,
                                   &x->server_features, &x->connection, &x->error};
        const std::uint8_t which = in.byte() % 7;
        store(*fields[which], in.u32());
        break;
      }
      case 2:
      case 3: {  // the server pumps; it must not touch the request area
        char before[1024];
        std::memcpy(before, x->req, sizeof before);
        (void)conn->pump(in.byte() * 64u + 1);
        if (std::memcmp(before, x->req, sizeof before) != 0) std::abort();
        break;
      }
      case 4: {  // the guest consumes responses honestly (whatever its index says)
        const std::uint32_t k = in.byte();
        const std::uint32_t cons = load(x->rsp_cons), prod = load(x->rsp_prod);
        const std::uint32_t avail = prod - cons;
        if (avail <= 1024) store(x->rsp_cons, cons + (k < avail ? k : avail));
        break;
      }
      case 5:  // the honest guest is answered, whatever the other one does
        good.round_trip(6);
        break;
      case 6:  // dom0 changes the hostile guest's home: watch events for it, if it watches
        (void)s.write(dom0, 0, "/local/domain/5/k", in.bytes(in.byte() % 8));
        break;
      case 7:  // the toolstack introduces it again
        if (in.byte() % 4 == 0) conn->reset();
        break;
    }
    if (!conn->stopped() && s.held_bytes(conn->id()) > xs::store::output_bound(l)) std::abort();
  }
  good.round_trip(6);
  if (!s.consistent()) std::abort();
  return 0;
}
