// Freestanding check: the xenstore wire codec links with no heap, exceptions or RTTI.
#include <xenbus/xenstore/wire.hpp>

namespace xs = xenbus::xenstore;

// A static decoder: 4 KiB of payload buffer needs no heap, and none on the stack.
static xs::decoder dec;

int main() {
  char buf[64] = {};
  const auto n =
      xs::encode_message(xs::msg_type::read, 7, 0, {"/local/domain/0/x", {"\0", 1}}, std::span<char>{buf, sizeof buf});
  if (n == 0) return 1;
  // Byte by byte, as from a ring that yields one byte at a time.
  for (std::size_t i = 0; i < n; ++i)
    if (dec.feed(std::span<const char>{buf + i, 1}) != 1) return 2;
  if (!dec.ready()) return 3;
  auto req = xs::parse_request(dec.current());
  if (!req || req->path != "/local/domain/0/x" || req->req_id != 7) return 4;
  dec.next();
  auto bad = xs::check_path("/a//b", false);
  if (bad) return 5;
  auto e = xs::parse_errc("EAGAIN");
  if (!e || *e != xs::errc::eagain) return 6;
  return 0;
}
