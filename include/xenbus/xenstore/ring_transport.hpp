// The guest side of the xenstore ring page as a client transport, with ring reconnection (POSIX).
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/client_error.hpp>
#include <xenbus/xenstore/transport.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <utility>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<xen/io/xs_wire.h>)
#include <cstdint>
extern "C" {
#include <xen/io/xs_wire.h>
}
#define XENBUS_HAVE_XS_WIRE_H 1
#endif
#endif

XENBUS_BEGIN_NAMESPACE

/// The shared page of struct xenstore_domain_interface (xenstore-ring.txt).
struct xs_ring_page {
  static constexpr std::uint32_t ring_size = 1024;  // XENSTORE_RING_SIZE
  char req[ring_size];  ///< guest -> server bytes
  char rsp[ring_size];  ///< server -> guest bytes (replies and watch events)
  std::uint32_t req_cons;
  std::uint32_t req_prod;
  std::uint32_t rsp_cons;
  std::uint32_t rsp_prod;
  std::uint32_t server_features;  ///< bit 0: reconnection, bit 1: error field
  std::uint32_t connection;       ///< 0 connected, 1 reconnect in progress
  std::uint32_t error;            ///< non-zero: the server stopped the connection
};
inline constexpr std::uint32_t xs_ring_feature_reconnection = 1;  // XENSTORE_SERVER_FEATURE_RECONNECTION
inline constexpr std::uint32_t xs_ring_feature_error = 2;         // XENSTORE_SERVER_FEATURE_ERROR
inline constexpr std::uint32_t xs_ring_connected = 0;             // XENSTORE_CONNECTED
inline constexpr std::uint32_t xs_ring_reconnect = 1;             // XENSTORE_RECONNECT

#ifdef XENBUS_HAVE_XS_WIRE_H
static_assert(sizeof(xs_ring_page) == sizeof(xenstore_domain_interface));
static_assert(offsetof(xs_ring_page, rsp) == offsetof(xenstore_domain_interface, rsp));
static_assert(offsetof(xs_ring_page, req_cons) == offsetof(xenstore_domain_interface, req_cons));
static_assert(offsetof(xs_ring_page, rsp_prod) == offsetof(xenstore_domain_interface, rsp_prod));
static_assert(offsetof(xs_ring_page, server_features) ==
              offsetof(xenstore_domain_interface, server_features));
static_assert(offsetof(xs_ring_page, connection) == offsetof(xenstore_domain_interface, connection));
static_assert(offsetof(xs_ring_page, error) == offsetof(xenstore_domain_interface, error));
static_assert(xs_ring_page::ring_size == XENSTORE_RING_SIZE);
static_assert(xs_ring_feature_reconnection == XENSTORE_SERVER_FEATURE_RECONNECTION &&
              xs_ring_feature_error == XENSTORE_SERVER_FEATURE_ERROR &&
              xs_ring_reconnect == XENSTORE_RECONNECT && xs_ring_connected == XENSTORE_CONNECTED);
#endif

/// An event channel as the ring transport uses it (libxenevtchn has this shape):
/// notify() signals the peer; fd() polls readable while a signal from the peer is pending;
/// ack() consumes pending signals.
template <class E>
concept xs_event_channel = requires(E& e) {
  { e.notify() } noexcept;
  { e.fd() } noexcept -> std::same_as<int>;
  { e.ack() } noexcept;
};

/// An event channel between two threads or processes of one machine: one eventfd per
/// direction (for tests, and for a server living in the same process).
class xs_eventfd_channel {
 public:
  /// A connected pair: what one end notifies, the other end's fd() sees.
  static std::pair<xs_eventfd_channel, xs_eventfd_channel> make_pair() {
    const int a = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const int b = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return {xs_eventfd_channel{a, ::dup(b), true}, xs_eventfd_channel{b, ::dup(a), true}};
  }
  xs_eventfd_channel(xs_eventfd_channel&& o) noexcept
      : in_{std::exchange(o.in_, -1)}, out_{std::exchange(o.out_, -1)} {}
  xs_eventfd_channel& operator=(xs_eventfd_channel&&) = delete;
  ~xs_eventfd_channel() {
    if (in_ >= 0) ::close(in_);
    if (out_ >= 0) ::close(out_);
  }
  /// Signals the other end.
  void notify() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(out_, &one, sizeof one);
  }
  /// Readable while the other end's signal is pending.
  int fd() const noexcept { return in_; }
  /// Consumes pending signals.
  void ack() noexcept {
    std::uint64_t v;
    [[maybe_unused]] const auto n = ::read(in_, &v, sizeof v);
  }

 private:
  xs_eventfd_channel(int in, int out, bool) noexcept : in_{in}, out_{out} {}
  int in_;
  int out_;
};
static_assert(xs_event_channel<xs_eventfd_channel>);

/// The guest end of a xenstore ring page as an xs_transport. The page is not owned and
/// must outlive the transport. Indices from the server are checked on every use; a ring
/// more than full, or the server's error field, fails the transport.
template <xs_event_channel E>
class xs_ring_transport {
 public:
  xs_ring_transport(xs_ring_page* page, E evtchn)
      : page_{page}, evtchn_{std::move(evtchn)}, sync_{std::make_unique<sync>()} {}
  xs_ring_transport(xs_ring_transport&&) noexcept = default;
  xs_ring_transport& operator=(xs_ring_transport&&) = delete;

  /// Copies all of `out` into the request ring, waiting for the server to make room.
  xs_status send(std::span<const char> out) {
    if (auto s = attach(); !s) return s;
    while (!out.empty()) {
      const auto seen = sync_->seq_now();
      if (auto s = check_server(); !s) return s;
      // Acquire: the server has finished reading the bytes below req_cons before it
      // published req_cons (pairs with its release store), so we may overwrite them.
      const std::uint32_t cons = std::atomic_ref(page_->req_cons).load(std::memory_order_acquire);
      const std::uint32_t used = req_prod_ - cons;
      if (used > xs_ring_page::ring_size) return fail(xs_fault::ring_index);
      const std::uint32_t off = req_prod_ & (xs_ring_page::ring_size - 1);
      const std::size_t n = std::min<std::size_t>(
          {out.size(), xs_ring_page::ring_size - used, xs_ring_page::ring_size - off});
      if (n == 0) {
        if (!sync_->wait(evtchn_, seen)) return unexpected{xs_error{xs_errc::closed}};
        continue;
      }
      std::memcpy(page_->req + off, out.data(), n);
      req_prod_ += static_cast<std::uint32_t>(n);
      // Release: publishes the bytes just copied; pairs with the server's acquire load
      // of req_prod before it reads them.
      std::atomic_ref(page_->req_prod).store(req_prod_, std::memory_order_release);
      evtchn_.notify();
      out = out.subspan(n);
    }
    return {};
  }

  /// Copies available reply bytes out of the response ring, waiting for at least one.
  xs_io receive(std::span<char> in) {
    if (auto s = attach(); !s) return unexpected{s.error()};
    for (;;) {
      const auto seen = sync_->seq_now();
      if (sync_->interrupted()) return std::size_t{0};
      if (auto s = check_server(); !s) return unexpected{s.error()};
      // Acquire: the bytes below rsp_prod were written before the server published it
      // (pairs with its release store of rsp_prod).
      const std::uint32_t prod = std::atomic_ref(page_->rsp_prod).load(std::memory_order_acquire);
      const std::uint32_t avail = prod - rsp_cons_;
      if (avail > xs_ring_page::ring_size) return unexpected{fail(xs_fault::ring_index).error()};
      if (avail != 0) {
        const std::uint32_t off = rsp_cons_ & (xs_ring_page::ring_size - 1);
        const std::size_t n =
            std::min<std::size_t>({in.size(), avail, xs_ring_page::ring_size - off});
        std::memcpy(in.data(), page_->rsp + off, n);  // copied once; the client validates the copy
        rsp_cons_ += static_cast<std::uint32_t>(n);
        // Release: our reads of those bytes happen before the server may overwrite them
        // (pairs with its acquire load of rsp_cons).
        std::atomic_ref(page_->rsp_cons).store(rsp_cons_, std::memory_order_release);
        evtchn_.notify();
        return n;
      }
      if (!sync_->wait(evtchn_, seen)) return std::size_t{0};
    }
  }

  /// Wakes blocked calls; they return at once (receive: 0, send: closed) until rearm().
  void interrupt() noexcept { sync_->interrupt(); }
  /// Clears interrupt().
  void rearm() noexcept { sync_->rearm(); }

  /// The reconnection of xenstore-ring.txt: set connection=1, signal, wait for the server
  /// to empty the rings and set it back to 0. Needs the server's reconnection feature.
  xs_status reconnect() {
    // Acquire: feature bits are set before the server touches the rings (pairs with its
    // release store of server_features).
    const std::uint32_t f =
        std::atomic_ref(page_->server_features).load(std::memory_order_acquire);
    if (!(f & xs_ring_feature_reconnection)) return unexpected{xs_error{xs_errc::unsupported}};
    // Release: nothing of ours after this point is read by the server before it resets;
    // pairs with the server's acquire load of connection.
    std::atomic_ref(page_->connection).store(xs_ring_reconnect, std::memory_order_release);
    evtchn_.notify();
    {
      std::lock_guard l{sync_->attach_mu};
      sync_->attached = false;
    }
    return attach();
  }

  /// Our view of the indices (for tests): next request byte, next reply byte.
  std::pair<std::uint32_t, std::uint32_t> indices() const noexcept { return {req_prod_, rsp_cons_}; }

 private:
  // Waiting without lost wake-ups when the reader and a writer both wait: one thread at a
  // time polls the event channel and acks it, then bumps `seq` under the mutex; a thread
  // that read `seq` before checking the ring sleeps only until seq moves past that value.
  struct sync {
    std::mutex m;
    std::condition_variable cv;
    std::uint64_t seq{0};
    bool polling{false};
    bool stop{false};
    std::mutex attach_mu;  // guards attached, and the index copies while attaching
    bool attached{false};
    int stop_fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    ~sync() {
      if (stop_fd >= 0) ::close(stop_fd);
    }
    std::uint64_t seq_now() {
      std::lock_guard l{m};
      return seq;
    }
    bool interrupted() {
      std::lock_guard l{m};
      return stop;
    }
    // false when interrupted.
    bool wait(E& ev, std::uint64_t seen) {
      std::unique_lock l{m};
      for (;;) {
        if (stop) return false;
        if (seq != seen) return true;
        if (!polling) break;
        cv.wait(l);
      }
      polling = true;
      l.unlock();
      pollfd p[2] = {{ev.fd(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
      while (::poll(p, 2, -1) < 0 && errno == EINTR) {
      }
      ev.ack();
      l.lock();
      polling = false;
      ++seq;
      cv.notify_all();
      return !stop;
    }
    void interrupt() noexcept {
      {
        std::lock_guard l{m};
        stop = true;
      }
      const std::uint64_t one = 1;
      [[maybe_unused]] const auto n = ::write(stop_fd, &one, sizeof one);
      cv.notify_all();
    }
    void rearm() noexcept {
      std::lock_guard l{m};
      stop = false;
      std::uint64_t v;
      [[maybe_unused]] const auto n = ::read(stop_fd, &v, sizeof v);
    }
  };

  xs_status fail(xs_fault f) { return unexpected{xs_error{xs_errc::broken, f}}; }

  xs_status check_server() {
    // Acquire pairs with the server's release stores of these words; relaxed would do for
    // a hint, but an error seen here must come with the state the server left.
    const std::uint32_t f =
        std::atomic_ref(page_->server_features).load(std::memory_order_acquire);
    if ((f & xs_ring_feature_error) &&
        std::atomic_ref(page_->error).load(std::memory_order_acquire) != 0)
      return fail(xs_fault::ring_error);
    return {};
  }

  // Before first use and after a reconnection request: wait while the connection is being
  // reset (xenstore-ring.txt: ignore everything else meanwhile), then adopt the indices.
  xs_status attach() {
    std::lock_guard al{sync_->attach_mu};  // the reader and a writer may both arrive first
    if (sync_->attached) return {};
    for (;;) {
      const auto seen = sync_->seq_now();
      const std::uint32_t f =
          std::atomic_ref(page_->server_features).load(std::memory_order_acquire);
      // Acquire: the server empties the rings before it stores 0 (pairs with its release).
      const std::uint32_t c = std::atomic_ref(page_->connection).load(std::memory_order_acquire);
      if (!(f & xs_ring_feature_reconnection) || c == xs_ring_connected) break;
      if (!sync_->wait(evtchn_, seen)) return unexpected{xs_error{xs_errc::closed}};
    }
    // Guests must not assume the indices start at zero; a ring that is not empty at attach
    // time belongs to someone else's half-finished conversation.
    const std::uint32_t rc = std::atomic_ref(page_->req_cons).load(std::memory_order_acquire);
    const std::uint32_t rp = std::atomic_ref(page_->req_prod).load(std::memory_order_relaxed);
    const std::uint32_t sc = std::atomic_ref(page_->rsp_cons).load(std::memory_order_relaxed);
    const std::uint32_t sp = std::atomic_ref(page_->rsp_prod).load(std::memory_order_acquire);
    if (rc != rp || sc != sp) return fail(xs_fault::ring_reconnect);
    req_prod_ = rp;
    rsp_cons_ = sc;
    sync_->attached = true;
    return {};
  }

  xs_ring_page* page_;
  E evtchn_;
  std::unique_ptr<sync> sync_;  // stable address; the transport itself moves into the client
  std::uint32_t req_prod_{0};   // private copies: only we write these two indices
  std::uint32_t rsp_cons_{0};
};

XENBUS_END_NAMESPACE
