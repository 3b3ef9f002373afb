// Fuzzes include/xenbus/xenstore/wire.hpp: arbitrary byte streams in arbitrary chunks
// through the incremental decoder, then request and reply validation.
#include <xenbus/xenstore/wire.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

namespace xs = xenbus::xenstore;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  auto dec = std::make_unique<xs::decoder>();
  // The first byte picks the chunk size pattern, like a ring delivering odd pieces.
  const std::size_t step = 1 + data[0] % 37;
  std::size_t at = 1;
  while (at < size && !dec->broken()) {
    const std::size_t n = std::min(step, size - at);
    // Exact-size heap copy: ASan flags any read past what the decoder was given.
    std::vector<char> piece(data + at, data + at + n);
    std::size_t used = 0;
    while (used < piece.size()) {
      const std::size_t took = dec->feed(std::span<const char>{piece}.subspan(used));
      if (took > piece.size() - used) std::abort();
      used += took;
      if (dec->broken()) {
        if (dec->current_header().len <= xs::payload_max) std::abort();
        break;
      }
      if (dec->ready()) {
        const auto m = dec->current();
        if (m.payload.size() != m.hdr.len || m.hdr.len > xs::payload_max) std::abort();
        if (auto r = xs::parse_request(m)) {
          // An accepted request names a well-formed path when it names one.
          if (!r->path.empty() && !xs::check_path(r->path, true)) std::abort();
        }
        (void)xs::parse_reply(m);
        dec->next();
      } else if (took == 0) {
        std::abort();  // neither progress nor a message: the decoder would spin
      }
    }
    at += n;
  }
  return 0;
}
