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

/// The console page: `in` and `out` with their indices.
struct console_layout {
  using end_type = console_end;
  static constexpr console_end writes_out = console_end::guest;

  static result<byte_ring_directions, ring_error> locate(std::span<std::byte> page) noexcept {
    if (page.size() < sizeof(xencons_interface_layout) ||
        reinterpret_cast<std::uintptr_t>(page.data()) % alignof(xencons_interface_layout) != 0)
      return unexpected{ring_error::bad_memory};
    auto* c = reinterpret_cast<xencons_interface_layout*>(page.data());
    return byte_ring_directions{{reinterpret_cast<std::byte*>(c->in), sizeof c->in, &c->in_cons, &c->in_prod},
                                {reinterpret_cast<std::byte*>(c->out), sizeof c->out, &c->out_cons, &c->out_prod}};
  }
};

/// One end of a console ring: console_ring::attach(end, page). The guest writes its
/// output and reads keystrokes; the backend the reverse.
using console_ring = byte_ring_pair<console_layout>;

XENBUS_END_NAMESPACE
