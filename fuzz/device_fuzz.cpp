// The input plays a hostile frontend: it writes the keys and state text a backend reads,
// then scribbles over the shared ring page. The backend must end Connected, Closing or
// Closed with a reason, never crash, hang or touch memory it did not map (ASan + UBSan).
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace xenbus;

struct msg {
  std::uint64_t id;
  std::uint32_t op, len;
};
struct proto {
  using request = msg;
  using response = msg;
  static constexpr std::string_view type = "vfuzz";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = 2;
  static constexpr unsigned max_queues = 2;
};

constexpr domid_t back = 0, front = 1;

/// What outlives one input: the machine, the frontend's granted pages (references 0..3 are
/// real, so inputs naming them get as far as a mapped ring) and an offered event channel.
struct world {
  posix::machine m = make();
  std::optional<posix::evtchn_handle> fe_ev, be_ev;
  posix::grant_table fe_g{m, front}, be_g{m, back};
  std::array<grant_ref, 4> refs{};
  std::optional<posix::grant_table::shared_pages> pages;
  static posix::machine make() {
    auto r = posix::machine::create({.frames = 64, .domains = 2, .grants_per_domain = 64, .ports_per_domain = 8});
    if (!r) std::abort();
    return std::move(*r);
  }
  world() {
    auto fe = posix::evtchn_handle::open(m, front);
    auto be = posix::evtchn_handle::open(m, back);
    auto p = fe_g.share(back, refs, true);
    if (!fe || !be || !p) std::abort();
    fe_ev.emplace(std::move(*fe));
    be_ev.emplace(std::move(*be));
    pages.emplace(std::move(*p));
    (void)fe_ev->bind_unbound(back);  // port 1, offered to the backend
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static world w;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The part after the first NUL (if any) is written over the first ring page later.
  std::string_view ring_bytes;
  if (auto nul = in.find('\0'); nul != std::string_view::npos) {
    ring_bytes = in.substr(nul + 1);
    in = in.substr(0, nul);
  }
  xenstore::store st;
  embedded_store ts{st, 0}, bs{st, back};
  const device_address addr{front, back, "vfuzz", 0};
  toolstack<embedded_store> tk{ts, addr};
  if (!tk.create()) return 0;
  // Lines "key=value": the frontend's directory as the attacker writes it.
  while (!in.empty()) {
    const auto eol = in.find('\n');
    const std::string_view line = in.substr(0, eol);
    in = eol == std::string_view::npos ? std::string_view{} : in.substr(eol + 1);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    (void)ts.write(no_tx, addr.frontend_dir() + "/" + std::string(line.substr(0, eq)), line.substr(eq + 1));
  }
  {
    backend<proto, embedded_store, posix::evtchn_handle, posix::grant_table> be{
        bs, *w.be_ev, w.be_g, back, front, 0, {.max_ring_page_order = 2, .max_queues = 2}};
    if (!be.start()) return 0;
    for (int i = 0; i < 8 && deliver_watch_events(bs, 0, be) > 0; ++i) {
    }
    if (be.connected() && !ring_bytes.empty()) {
      std::memcpy(w.pages->data(), ring_bytes.data(), std::min(ring_bytes.size(), w.pages->size()));
      for (int i = 0; i < 64; ++i) {
        auto req = be.take_request(0);
        if (!req || !*req) break;
        (void)be.queue_at(0).ring->produce(msg{(*req)->id, 0, 0});
      }
      (void)be.push(0);
      deliver_watch_events(bs, 0, be);
    }
    // Whatever the input, the backend is in a state the table allows and knows why it left.
    const state s = be.own();
    if (s != state::connected && s != state::init_wait && s != state::closing && s != state::closed &&
        s != state::initialising)
      std::abort();
    if ((s == state::closing || s == state::closed) && be.reason() == close_reason::none) std::abort();
  }
  std::memset(w.pages->data(), 0, w.pages->size());
  return 0;
}
