// [freestanding] The PV console ring (struct xencons_interface): the guest's and the backend's ends.
#pragma once

#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

XENBUS_BEGIN_NAMESPACE

/// The console page as xen/io/console.h lays it out: `in` carries keystrokes to the guest,
/// `out` the guest's output to the backend (xenconsoled, QEMU).
struct xencons_interface_layout {
  char in[1024];
  char out[2048];
  ring_idx in_cons, in_prod;
  ring_idx out_cons, out_prod;
};

/// Which end of the console: the guest writes `out` and reads `in`; the backend reverses it.
enum class console_end : std::uint8_t { guest, backend };

/// One end of a console ring. Notify the event channel after any call that moved bytes.
class console_ring {
 public:
  /// Attaches at the indices the page holds now.
  static result<console_ring, ring_error> attach(console_end end,
                                                 std::span<std::byte> page) noexcept {
    if (page.size() < sizeof(xencons_interface_layout) ||
        reinterpret_cast<std::uintptr_t>(page.data()) % alignof(xencons_interface_layout) != 0)
      return unexpected{ring_error::bad_memory};
    auto* c = reinterpret_cast<xencons_interface_layout*>(page.data());
    const byte_ring_location in{reinterpret_cast<std::byte*>(c->in), sizeof c->in, &c->in_cons,
                                &c->in_prod};
    const byte_ring_location out{reinterpret_cast<std::byte*>(c->out), sizeof c->out,
                                 &c->out_cons, &c->out_prod};
    const byte_ring_location& mine = end == console_end::guest ? out : in;
    const byte_ring_location& theirs = end == console_end::guest ? in : out;
    // Relaxed: starting points, read once; later calls validate the peer's index.
    return console_ring(
        byte_ring_producer(mine, detail::load(*mine.prod, std::memory_order_relaxed)),
        byte_ring_consumer(theirs, detail::load(*theirs.cons, std::memory_order_relaxed)));
  }

  /// Writes what fits of `bytes` (guest: console output; backend: input); returns how much.
  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept {
    return tx_.write(bytes);
  }
  /// Reads what is there, up to out.size(); returns how much.
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept { return rx_.read(out); }
  result<ring_idx, ring_error> space() noexcept { return tx_.space(); }
  result<ring_idx, ring_error> available() noexcept { return rx_.available(); }

 private:
  console_ring(byte_ring_producer tx, byte_ring_consumer rx) noexcept : tx_(tx), rx_(rx) {}
  byte_ring_producer tx_;
  byte_ring_consumer rx_;
};

XENBUS_END_NAMESPACE
