// Fuzzes the consumers of peer state text: parse_state and the machines' observe_* calls.
#include <xenbus/protocol/state_machine.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

// Invariants a driver relies on, whatever the peer writes; a violation aborts the run.
void require(bool ok) {
  if (!ok) __builtin_trap();
}

template <class Machine>
void drive(Machine& m, Machine& successor, bool& handed, const std::uint8_t* p, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t op = p[i++];
    // The low bits pick the call; the next byte, or a chunk of text, is its argument.
    switch (op & 3u) {
      case 0: {  // the peer's node holds some text (up to 15 bytes, any values)
        const std::size_t len = (op >> 2) & 15u;
        const std::size_t take = len < n - i ? len : n - i;
        const std::string_view text(reinterpret_cast<const char*>(p + i), take);
        i += take;
        const xenbus::state before = m.peer();
        const auto o = m.observe_peer(text);
        const auto parsed = xenbus::parse_state(text);
        if (!parsed) {
          require(handed ? o.kind == xenbus::change_kind::ignored : o.kind == xenbus::change_kind::garbage);
          require(m.peer() == before);  // garbage never moves the machine
        }
        if (handed) require(o.kind == xenbus::change_kind::ignored);
        (void)successor.observe_peer(text);
        break;
      }
      case 1: {  // this end asks to move
        if (i == n) return;
        const auto to = static_cast<xenbus::state>(p[i++] % xenbus::state_count);
        const xenbus::state own = m.own();
        const bool allowed = m.may(to);
        const auto r = m.request(to);
        require(r.has_value() == allowed);
        require(r.has_value() ? m.own() == to : m.own() == own);
        if (handed) require(!r.has_value());
        break;
      }
      case 2: {  // the toolstack writes this end's node
        if (i == n) return;
        const auto now = static_cast<xenbus::state>(p[i++] % xenbus::state_count);
        const auto o = m.observe_toolstack(now);
        if (o.kind == xenbus::change_kind::illegal) require(m.own() != now || now == o.from);
        break;
      }
      default:  // a kexec: the old end hands over once
        if (!handed) {
          successor = m.hand_over();
          handed = true;
          require(m.handed_over() && !successor.handed_over());
        }
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool handed = false;
  if (data[0] & 1u) {
    xenbus::frontend_machine m, next;
    drive(m, next, handed, data + 1, size - 1);
  } else {
    xenbus::backend_machine m, next;
    drive(m, next, handed, data + 1, size - 1);
  }
  return 0;
}
