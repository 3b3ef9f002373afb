// Transport floor for bench/xenstore_vs_oxenstored.py: answers every request on a unix
// socket without a store ("OK", or transaction id 1), one client at a time, blocking I/O.
// test-xenstore's "rm node", "rm dir", "ta empty" and "ta empty x" pass against it, so
// their times show what a round trip costs on this machine with no server work at all.
#include <xenbus/xenstore/wire.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace xs = xenbus::xenstore;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
    return 2;
  }
  const int l = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  ::unlink(argv[1]);
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 8) != 0) return 1;
  auto dec = std::make_unique<xs::decoder>();
  for (;;) {
    const int c = ::accept(l, nullptr, nullptr);
    if (c < 0) continue;
    dec->reset();
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      std::size_t used = 0;
      while (used < static_cast<std::size_t>(n)) {
        used += dec->feed(std::span<const char>{buf + used, static_cast<std::size_t>(n) - used});
        if (dec->broken()) break;
        if (!dec->ready()) continue;
        const auto h = dec->current().hdr;
        const bool start = h.kind() == xs::msg_type::transaction_start;
        char out[64];
        const auto len = xs::encode_message(h.kind(), h.req_id, h.tx_id,
                                            {start ? std::string_view{"1\0", 2} : std::string_view{"OK\0", 3}}, out);
        if (::write(c, out, len) < 0) break;
        dec->next();
      }
    }
    ::close(c);
  }
}
