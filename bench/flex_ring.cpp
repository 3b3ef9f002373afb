// The flex-ring side of the byte-ring measure: DEFINE_XEN_FLEX_RING functions, in C.
#include "harness.hpp"
#include "xen_peer.h"

#include <string>

namespace xbench {
namespace {

// Bytes of the struct each ring lives in (xenstore_domain_interface, xencons_interface),
// rounded to a page: the whole interface page is shared.
constexpr std::size_t interface_page = 4096;

void bytes(benchmark::State& state, xp_byte_ring r, std::size_t chunk) {
  shared_pages page(interface_page);
  std::uint64_t read = 0, errors = 0;
  peer_thread reader([&](const int* stop) { read = xp_flex_read(r, page.data(), stop, &errors); });
  std::uint64_t pos = 0;
  iteration_clock clock(state);
  for (auto _ : state) {
    clock.start();
    xp_flex_write(r, page.data(), pos, byte_ring_bytes_per_iteration, chunk);
    clock.stop();
    pos += byte_ring_bytes_per_iteration;
  }
  reader.stop();
  rates(state, "bytes", byte_ring_bytes_per_iteration, clock);
  if (errors != 0 || read != pos) state.SkipWithError("the flex-ring reader saw wrong bytes");
}

}  // namespace

void register_flex_ring(measure m) {
  if (m != measure::bytes) return;
  for (auto [r, name] : {std::pair{XP_XENSTORE, "xenstore"}, std::pair{XP_CONSOLE, "console"}})
    for (std::size_t chunk : byte_chunks)
      threaded(benchmark::RegisterBenchmark(
          ("bytes/flex_ring/" + std::string(name) + "/chunk:" + std::to_string(chunk)).c_str(), bytes, r, chunk));
}

}  // namespace xbench
