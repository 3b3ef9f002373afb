// Test helper: the server end of a socketpair, scripted byte by byte by the test.
#pragma once

#include <xenbus/posix/xenstore/detail/client_codec.hpp>
#include <xenbus/posix/xenstore/client.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace xstest {

using xenbus::detail::xs_type;

/// One request as the client sent it.
struct xs_frame {
  std::uint32_t type{};
  std::uint32_t req_id{};
  std::uint32_t tx_id{};
  std::string payload;
};

/// Encodes a message as a server would send it: header then the raw payload.
inline std::string msg(xs_type type, std::uint32_t req_id, std::string_view payload, std::uint32_t tx_id = 0) {
  std::string out(16, '\0');
  xenbus::detail::xs_put_u32(out.data(), static_cast<std::uint32_t>(type));
  xenbus::detail::xs_put_u32(out.data() + 4, req_id);
  xenbus::detail::xs_put_u32(out.data() + 8, tx_id);
  xenbus::detail::xs_put_u32(out.data() + 12, static_cast<std::uint32_t>(payload.size()));
  out.append(payload);
  return out;
}
inline std::string ok() { return std::string("OK\0", 3); }
inline std::string nul(std::string_view s) { return std::string(s) + '\0'; }

/// A socketpair: one end becomes the client's transport, the test plays the server on the other.
class scripted_peer {
 public:
  scripted_peer() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    server_ = sv[0];
    client_fd_ = sv[1];
  }
  ~scripted_peer() {
    if (server_ >= 0) ::close(server_);
  }
  scripted_peer(const scripted_peer&) = delete;
  scripted_peer& operator=(const scripted_peer&) = delete;

  /// The client on the other end (call once).
  xenbus::xenstore::client client() {
    auto t = xenbus::xenstore::fd_transport::adopt(client_fd_, true);
    REQUIRE(t.has_value());
    return xenbus::xenstore::client{std::move(*t)};
  }

  /// Makes the client's socket buffer as small as Linux allows (about 4.5 KiB), so that a
  /// server that stops reading blocks the client's sending after a frame or two.
  void shrink_client_send_buffer() {
    const int size = 1;  // the kernel doubles it, then raises it to its minimum
    REQUIRE(::setsockopt(client_fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == 0);
  }

  /// Reads one request if one starts within `timeout` (then blocks for the rest of it).
  std::optional<xs_frame> recv_for(std::chrono::milliseconds timeout) {
    pollfd p{server_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    return recv();
  }

  /// Reads one request the client sent (blocks).
  xs_frame recv() {
    xs_frame f;
    char h[16];
    read_exact(h, 16);
    f.type = xenbus::detail::xs_get_u32(h);
    f.req_id = xenbus::detail::xs_get_u32(h + 4);
    f.tx_id = xenbus::detail::xs_get_u32(h + 8);
    const auto len = xenbus::detail::xs_get_u32(h + 12);
    REQUIRE(len <= 4096);
    f.payload.resize(len);
    read_exact(f.payload.data(), len);
    return f;
  }
  /// Sends raw bytes to the client.
  void send(std::string_view bytes) {
    REQUIRE(::send(server_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  /// Closes the server end (the client sees end of stream).
  void hang_up() {
    ::close(server_);
    server_ = -1;
  }

 private:
  void read_exact(char* p, std::size_t n) {
    while (n) {
      const ssize_t r = ::read(server_, p, n);
      REQUIRE(r > 0);
      p += r;
      n -= static_cast<std::size_t>(r);
    }
  }
  int server_ = -1;
  int client_fd_ = -1;
};

/// Whether fd polls readable right now.
inline bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

}  // namespace xstest
