// Test-side helpers: a minimal blocking wire client over a unix socket, for server tests.
#pragma once

#include "xenstore_test_support.hpp"

#include <xenbus/xenstore/wire.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace xstest {

/// A unique socket path in /tmp for one test.
inline std::string temp_socket(std::string_view tag) {
  static int seq = 0;
  return "/tmp/xenbus-xs-" + std::string{tag} + "-" + std::to_string(::getpid()) + "-" + std::to_string(++seq) +
         ".sock";
}

/// A blocking socket client that speaks raw wire messages; not a client library.
class sock {
 public:
  explicit sock(const std::string& path) : dec_{std::make_unique<xs::decoder>()} {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~sock() { close(); }
  sock(const sock&) = delete;
  sock& operator=(const sock&) = delete;

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send_raw(std::string_view bytes) {
    std::size_t at = 0;
    while (at < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<std::size_t>(n);
    }
    return true;
  }
  static std::string frame(xs::msg_type t, std::string_view payload, std::uint32_t req, std::uint32_t tx = 0) {
    std::string out(xs::header_size + payload.size(), '\0');
    const std::size_t n = xs::encode_message(t, req, tx, {payload}, std::span<char>{out.data(), out.size()});
    if (n == 0) {  // over the payload limit: hand-made header, for hostile tests
      const xs::header h{static_cast<std::uint32_t>(t), req, tx, static_cast<std::uint32_t>(payload.size())};
      xs::encode_header(h, std::span<char, xs::header_size>{out.data(), xs::header_size});
      std::memcpy(out.data() + xs::header_size, payload.data(), payload.size());
    }
    return out;
  }
  bool send(xs::msg_type t, std::string_view payload, std::uint32_t tx = 0) {
    return send_raw(frame(t, payload, ++req_, tx));
  }

  /// Next reply (not a watch event); nullopt on EOF or after `timeout_ms` of silence.
  std::optional<answer> reply(int timeout_ms = 5000) {
    for (;;) {
      if (!replies_.empty()) {
        auto a = replies_.front();
        replies_.erase(replies_.begin());
        return a;
      }
      if (!pump(timeout_ms)) return std::nullopt;
    }
  }
  answer call(xs::msg_type t, std::string_view payload, std::uint32_t tx = 0) {
    REQUIRE(send(t, payload, tx));
    auto a = reply();
    REQUIRE(a.has_value());
    return *a;
  }
  answer read(std::string_view p, std::uint32_t tx = 0) { return call(xs::msg_type::read, caller::arg(p), tx); }
  answer write(std::string_view p, std::string_view v, std::uint32_t tx = 0) {
    return call(xs::msg_type::write, std::string{p} + '\0' + std::string{v}, tx);
  }
  std::uint32_t start() {
    auto a = call(xs::msg_type::transaction_start, std::string_view{"\0", 1});
    REQUIRE(a.ok());
    return static_cast<std::uint32_t>(std::stoul(a.payload));
  }
  answer end(std::uint32_t tx, bool commit) {
    return call(xs::msg_type::transaction_end, commit ? std::string_view{"T\0", 2} : std::string_view{"F\0", 2}, tx);
  }
  /// Waits until `n` watch events arrived (or the timeout passes); returns them all.
  std::vector<event> events(std::size_t n, int timeout_ms = 5000) {
    while (events_.size() < n && pump(timeout_ms)) {
    }
    return std::exchange(events_, {});
  }
  /// True when the server closed the connection (EOF) within the timeout.
  bool closed_by_peer(int timeout_ms = 5000) {
    while (pump(timeout_ms)) {
    }
    return eof_;
  }

 private:
  bool pump(int timeout_ms) {
    if (fd_ < 0 || eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[8192];
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    std::size_t used = 0;
    while (used < static_cast<std::size_t>(n)) {
      used += dec_->feed(std::span<const char>{buf + used, static_cast<std::size_t>(n) - used});
      REQUIRE_FALSE(dec_->broken());
      if (dec_->ready()) {
        auto m = dec_->current();
        auto r = xs::parse_reply(m);
        REQUIRE(r.has_value());
        if (m.hdr.kind() == xs::msg_type::watch_event)
          events_.push_back(event{std::string{r->path}, std::string{r->token}});
        else
          replies_.push_back(answer{m.hdr.kind(), std::string{m.payload}, m.hdr.tx_id});
        dec_->next();
      }
    }
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
  std::uint32_t req_ = 0;
  std::unique_ptr<xs::decoder> dec_;
  std::vector<answer> replies_;
  std::vector<event> events_;
};

}  // namespace xstest
