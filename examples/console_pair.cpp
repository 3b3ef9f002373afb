// A minimal console to copy: a guest frontend and a backend sharing the PV console page
// (struct xencons_interface, a byte ring each way) instead of a request/response ring.
// One process, our embedded xenstore, a POSIX machine for grants and event channels.
#include <xenbus/ring/console.hpp>
#include <xenbus/hosted/device.hpp>
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>

#include <cctype>
#include <cstdio>
#include <string>

using namespace xenbus;

/// A protocol with its own ring: each end attaches the console page from its side.
struct console {
  static constexpr std::string_view type = "console";
  static constexpr std::string_view abi = "";                    // the console publishes no protocol
  static constexpr std::string_view event_channel_key = "port";  // console.h's name for it
  static constexpr unsigned max_ring_page_order = 0;
  static constexpr unsigned max_queues = 1;
  using front_ring_type = console_ring;
  using back_ring_type = console_ring;
  static result<console_ring, ring_error> make_front(std::span<std::byte> page) {
    return console_ring::attach(console_end::guest, page);
  }
  static result<console_ring, ring_error> make_back(std::span<std::byte> page) {
    return console_ring::attach(console_end::backend, page);
  }
};

constexpr domid_t dom0 = 0, guest = 1;

using store_t = embedded_store;
using front_t = frontend<console, store_t, posix::evtchn_handle, posix::grant_table>;
using back_t = backend<console, store_t, posix::evtchn_handle, posix::grant_table>;

template <class Done>
bool pump(store_t& fs, front_t& fe, store_t& bs, back_t& be, Done done) {
  while (!done()) {
    const unsigned events = deliver_watch_events(fs, 0, fe) + deliver_watch_events(bs, 0, be);
    if (events == 0) return done();
  }
  return true;
}

/// Reads what the ring holds after the peer rang our event channel.
std::string drain(console_ring& ring, posix::evtchn_handle& ev) {
  std::string got;
  while (posix::wait_readable(ev.fd(), 100)) {
    if (auto p = ev.pending()) (void)ev.unmask(*p);
    std::byte buf[256];
    for (;;) {
      auto n = ring.read(buf);
      if (!n || *n == 0) break;
      got.append(reinterpret_cast<char*>(buf), *n);
    }
    if (!got.empty() && got.back() == '\n') break;
  }
  return got;
}

bool send(console_ring& ring, std::string_view text) {
  auto n = ring.write(std::as_bytes(std::span(text.data(), text.size())));
  return n && *n == text.size();  // short writes: a real console keeps the rest for later
}

int main() {
  xenstore::store store;
  store_t ts{store, dom0}, fs{store, guest}, bs{store, dom0};
  auto m = posix::machine::create();
  if (!m) return 1;
  auto fev = posix::evtchn_handle::open(*m, guest);
  auto bev = posix::evtchn_handle::open(*m, dom0);
  if (!fev || !bev) return 1;
  posix::grant_table fgrants{*m, guest}, bgrants{*m, dom0};

  toolstack<store_t> tk{ts, device_address{guest, dom0, "console", 0}};
  if (!tk.create()) return 1;
  back_t be{bs, *bev, bgrants, dom0, guest, 0};
  front_t fe{fs, *fev, fgrants, guest, 0};
  auto log = [](const char* who) {
    return [who](std::string_view l) { std::printf("%-8s %.*s\n", who, int(l.size()), l.data()); };
  };
  be.set_logger(log("backend"));
  fe.set_logger(log("guest"));
  if (!be.start() || !fe.start()) return 1;
  if (!pump(fs, fe, bs, be, [&] { return fe.connected() && be.connected(); })) return 1;

  // The guest prints a line; the backend (xenconsoled's part) reads it and types an answer.
  console_ring& g = *fe.queue_at(0).ring;
  console_ring& b = *be.queue_at(0).ring;
  bool ok = send(g, "hello from the guest console\n") && fe.notify(0);
  const std::string line = drain(b, *bev);
  std::printf("%-8s received: %s", "backend", line.c_str());
  std::string answer = line;
  for (char& c : answer) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ok = ok && send(b, answer) && be.notify(0);
  const std::string typed = drain(g, *fev);
  std::printf("%-8s received: %s", "guest", typed.c_str());
  ok = ok && line == "hello from the guest console\n" && typed == "HELLO FROM THE GUEST CONSOLE\n";

  be.close();
  ok = pump(fs, fe, bs, be, [&] { return fe.own() == state::closed && be.own() == state::closed; }) && ok;
  ok = tk.remove().has_value() && ok;
  std::printf("%-8s %s\n", "example", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
