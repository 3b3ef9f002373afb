// [posix] Byte transports for the xenstore client: the concept, a unix socket and /dev/xen/xenbus.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>

#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// Bytes moved, or the error that ended the transport.
using io_result = result<std::size_t, xenstore::error>;

/// A byte stream to a xenstore server, used by one reader thread and (serialised) writers.
/// - send(bytes): writes all bytes, blocking as needed, or fails.
/// - receive(buf): blocks until at least one byte arrived and returns how many; returns 0
///   when interrupted; fails on end of stream (fault peer_closed) or error.
/// - interrupt(): callable from another thread; the current and every later receive and
///   send return at once (receive: 0) until rearm().
/// - rearm(): undoes interrupt() (called when no receive or send is running).
/// Optional (xenstore::reconnectable_transport): reconnect(), the xenstore ring's reconnection.
/// Optional (xenstore::deadline_transport): send_until(), which bounds the client's sending by its
/// reply timeout and lets a watch's destructor send without blocking. A transport without
/// it blocks in send() for as long as the server does not make room.
template <class T>
concept transport = requires(T& t, std::span<const char> out, std::span<char> in) {
  { t.send(out) } -> std::same_as<xenstore::status>;
  { t.receive(in) } -> std::same_as<xenstore::io_result>;
  { t.interrupt() }
  noexcept;
  { t.rearm() }
  noexcept;
};

/// The clock of the client's deadlines.
using transport_clock = std::chrono::steady_clock;

/// A transport that can stop waiting for room at a deadline:
/// - send_until(bytes, deadline): writes bytes, waiting for room until `deadline`, and
///   returns how many it wrote: all, or fewer once the deadline passed (a deadline already
///   past writes what fits at once, without waiting). Fails on error or interrupt().
template <class T>
concept deadline_transport = xenstore::transport<T> &&
    requires(T& t, std::span<const char> out, xenstore::transport_clock::time_point d) {
  { t.send_until(out, d) } -> std::same_as<xenstore::io_result>;
};

/// A transport that can re-establish its connection (the xenstore ring can, when the
/// server offers it): reconnect_supported() says whether reconnect() may work right now.
template <class T>
concept reconnectable_transport = xenstore::transport<T> && requires(T& t) {
  { t.reconnect() } -> std::same_as<xenstore::status>;
  { t.reconnect_supported() } -> std::same_as<bool>;
};

/// The socket libxenstore connects to: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket,
/// else /var/run/xenstored/socket.
inline std::string default_socket_path() {
  if (const char* p = std::getenv("XENSTORED_PATH"); p && *p) return p;
  std::string dir = "/var/run/xenstored";
  if (const char* d = std::getenv("XENSTORED_RUNDIR"); d && *d) dir = d;
  return dir + "/socket";
}

/// The character device a Linux guest (or dom0 without a socket) reaches xenstore through.
inline constexpr const char* xenbus_device = "/dev/xen/xenbus";

/// A transport over a file descriptor: a connected unix socket or the xenbus device.
/// Waits with poll() on the fd and a private eventfd that interrupt() signals.
class fd_transport {
 public:
  /// Takes ownership of `fd` (made non-blocking). `is_socket` selects send(MSG_NOSIGNAL).
  static result<xenstore::fd_transport, xenstore::error> adopt(int fd, bool is_socket) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      const int e = errno;
      ::close(fd);
      return unexpected{sys_error(e)};
    }
    const int stop = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop < 0) {
      const int e = errno;
      ::close(fd);
      return unexpected{sys_error(e)};
    }
    return xenstore::fd_transport{fd, stop, is_socket};
  }

  /// Connects to a xenstored unix socket (default: xenstore::default_socket_path()).
  static result<xenstore::fd_transport, xenstore::error> connect_unix(std::string_view path = {}) {
    const std::string p = path.empty() ? xenstore::default_socket_path() : std::string(path);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (p.size() >= sizeof(addr.sun_path)) return unexpected{xenstore::error{xenstore::errc::bad_request}};
    std::memcpy(addr.sun_path, p.data(), p.size());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return unexpected{sys_error(errno)};
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
      const int e = errno;
      ::close(fd);
      return unexpected{sys_error(e)};
    }
    return adopt(fd, true);
  }

  /// Opens the xenbus character device (only exists in a Xen domain).
  static result<xenstore::fd_transport, xenstore::error> open_device(const char* path = xenstore::xenbus_device) {
    const int fd = ::open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return unexpected{sys_error(errno)};
    return adopt(fd, false);
  }

  fd_transport(xenstore::fd_transport&& o) noexcept
      : fd_{std::exchange(o.fd_, -1)}, stop_{std::exchange(o.stop_, -1)}, socket_{o.socket_} {}
  xenstore::fd_transport& operator=(xenstore::fd_transport&&) = delete;
  fd_transport(const xenstore::fd_transport&) = delete;
  ~fd_transport() {
    if (fd_ >= 0) ::close(fd_);
    if (stop_ >= 0) ::close(stop_);
  }

  /// Writes all of `out`, waiting for room; fails if interrupted or on error.
  xenstore::status send(std::span<const char> out) {
    auto n = send_until(out, xenstore::transport_clock::time_point::max());
    if (!n) return unexpected{n.error()};
    return {};
  }

  /// Writes `out` (the fd is non-blocking), polling for room until `deadline`; returns the
  /// bytes written, fewer than out.size() once the deadline passed.
  xenstore::io_result send_until(std::span<const char> out, xenstore::transport_clock::time_point deadline) {
    std::size_t done = 0;
    while (done < out.size()) {
      const auto rest = out.subspan(done);
      const ssize_t n =
          socket_ ? ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL) : ::write(fd_, rest.data(), rest.size());
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return unexpected{sys_error(errno)};
      auto w = wait(POLLOUT, deadline);
      if (!w) return unexpected{w.error()};
      if (*w == ready::interrupted) return unexpected{xenstore::error{xenstore::errc::closed}};
      if (*w == ready::timed_out) break;
    }
    return done;
  }

  /// Reads what is available (at least one byte), 0 if interrupted.
  xenstore::io_result receive(std::span<char> in) {
    for (;;) {
      const ssize_t n = ::read(fd_, in.data(), in.size());
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) return unexpected{xenstore::error{xenstore::errc::broken, xenstore::fault::peer_closed}};
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return unexpected{sys_error(errno)};
      auto w = wait(POLLIN, xenstore::transport_clock::time_point::max());
      if (!w) return unexpected{w.error()};
      if (*w == ready::interrupted) return std::size_t{0};
    }
  }

  /// Wakes a blocked receive/send; they keep returning at once until rearm().
  void interrupt() noexcept {
    const std::uint64_t one = 1;
    // A failed write leaves the counter non-zero already (EAGAIN at its maximum).
    [[maybe_unused]] const auto n = ::write(stop_, &one, sizeof one);
  }
  /// Clears a previous interrupt().
  void rearm() noexcept {
    std::uint64_t v;
    [[maybe_unused]] const auto n = ::read(stop_, &v, sizeof v);
  }

  /// The connected descriptor (for tests and diagnostics; do not read from it).
  int native_handle() const noexcept { return fd_; }

 private:
  fd_transport(int fd, int stop, bool is_socket) noexcept : fd_{fd}, stop_{stop}, socket_{is_socket} {}

  static xenstore::error sys_error(int e) noexcept {
    return xenstore::error{xenstore::errc::broken, xenstore::fault::io_error, e};
  }

  enum class ready : std::uint8_t { yes, interrupted, timed_out };

  // Waits for `events` on the fd until `deadline` (max(): no bound; past: do not wait).
  result<ready, xenstore::error> wait(short events, xenstore::transport_clock::time_point deadline) {
    pollfd p[2] = {{fd_, events, 0}, {stop_, POLLIN, 0}};
    for (;;) {
      int ms = -1;
      if (deadline != xenstore::transport_clock::time_point::max()) {
        const auto now = xenstore::transport_clock::now();
        if (deadline <= now) return ready::timed_out;  // compared first: min() - now overflows
        const auto left = deadline - now;
        // Rounded up, so that a wake-up before the deadline is not taken for it.
        const auto c = std::chrono::ceil<std::chrono::milliseconds>(left).count();
        ms = c > 60000 ? 60000 : static_cast<int>(c);  // re-armed each minute for longer ones
      }
      const int r = ::poll(p, 2, ms);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return unexpected{sys_error(errno)};
      if (p[1].revents & POLLIN) return ready::interrupted;
      if (r == 0) continue;  // the loop head decides whether the deadline passed
      return ready::yes;     // ready, or POLLHUP/POLLERR which the next read/write reports
    }
  }

  int fd_;
  int stop_;
  bool socket_;
};
static_assert(xenstore::deadline_transport<xenstore::fd_transport>);

}  // namespace xenstore

// The names before 0.2.0.
using xs_fd_transport [[deprecated("use xenbus::xenstore::fd_transport")]] = xenstore::fd_transport;
[[deprecated("use xenbus::xenstore::default_socket_path")]] inline std::string xs_default_socket_path() {
  return xenstore::default_socket_path();
}

XENBUS_END_NAMESPACE
