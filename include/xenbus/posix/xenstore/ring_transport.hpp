// [posix] The guest end of the xenstore ring page as a client transport, with the reconnection handshake.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>
#include <xenbus/posix/xenstore/transport.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <cerrno>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <utility>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// An event channel as the ring transport uses it (libxenevtchn has this shape):
/// notify() signals the peer; fd() polls readable while a signal from the peer is pending;
/// ack() consumes pending signals.
template <class E>
concept ring_event_channel = std::movable<E> && requires(E& e) {
  { e.notify() }
  noexcept;
  { e.fd() }
  noexcept->std::same_as<int>;
  { e.ack() }
  noexcept;
};

/// An event channel between two threads or processes of one machine: one eventfd per
/// direction (for tests, and for a server living in the same process).
class eventfd_channel {
 public:
  /// A connected pair: what one end notifies, the other end's fd() sees.
  static std::pair<xenstore::eventfd_channel, xenstore::eventfd_channel> make_pair() {
    const int a = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const int b = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return {xenstore::eventfd_channel{a, ::dup(b)}, xenstore::eventfd_channel{b, ::dup(a)}};
  }
  eventfd_channel(xenstore::eventfd_channel&& o) noexcept
      : in_{std::exchange(o.in_, -1)}, out_{std::exchange(o.out_, -1)} {}
  xenstore::eventfd_channel& operator=(xenstore::eventfd_channel&& o) noexcept {
    std::swap(in_, o.in_);
    std::swap(out_, o.out_);
    return *this;
  }
  eventfd_channel(const xenstore::eventfd_channel&) = delete;
  xenstore::eventfd_channel& operator=(const xenstore::eventfd_channel&) = delete;
  ~eventfd_channel() {
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
  eventfd_channel(int in, int out) noexcept : in_{in}, out_{out} {}
  int in_;
  int out_;
};
static_assert(xenstore::ring_event_channel<xenstore::eventfd_channel>);

/// The guest end of a xenstore ring page (xenstore_ring_guest) as an xenstore::transport: blocks
/// on the event channel when the ring is empty or full, waits out a reconnection the
/// server is serving, and turns the ring's latched errors (indices out of range, the
/// server's `error` field) into a broken connection. The page must outlive the transport.
template <xenstore::ring_event_channel E>
class ring_transport {
 public:
  /// Attaches to `page` (4 KiB, the xenstore_domain_interface) at the indices it holds.
  static result<ring_transport, xenstore::error> attach(std::span<std::byte> page, E evtchn) {
    auto g = xenstore_ring_guest::attach(page);
    if (!g) return unexpected{xenstore::error{xenstore::errc::bad_request}};
    // A reconnection already in progress at attach is the guest's to follow
    // (xenstore_ring_guest restarts from the reset indices by itself).
    ring_transport t{std::move(*g), std::move(evtchn)};
    return t;
  }
  ring_transport(ring_transport&&) noexcept = default;
  ring_transport& operator=(ring_transport&&) = delete;

  /// Copies all of `out` into the request ring, waiting for the server to make room.
  xenstore::status send(std::span<const char> out) {
    auto n = send_until(out, xenstore::transport_clock::time_point::max());
    if (!n) return unexpected{n.error()};
    return {};
  }

  /// As send(), waiting for room only until `deadline`; returns the bytes copied.
  xenstore::io_result send_until(std::span<const char> out, xenstore::transport_clock::time_point deadline) {
    auto& s = *s_;
    std::size_t done = 0;
    while (done < out.size()) {
      const auto seen = s.seq_now();
      bool again = false;
      auto n = [&]() -> result<std::size_t, ring_error> {
        std::lock_guard l{s.ring_mu};
        auto r = s.guest.write(std::as_bytes(out.subspan(done)));
        // A reconnection someone else asked for (or ours) finished: start over fresh.
        if (!r && r.error() == ring_error::reconnecting && s.guest.reconnected()) again = true;
        return r;
      }();
      if (again) continue;
      if (!n && n.error() != ring_error::reconnecting) return unexpected{fault_of(n.error())};
      if (n && *n > 0) {
        s.evtchn.notify();
        done += *n;
        continue;
      }
      const auto w = s.wait(seen, deadline);
      if (w == woken::interrupted) return unexpected{xenstore::error{xenstore::errc::closed}};
      if (w == woken::timed_out) break;
    }
    return done;
  }

  /// Copies available reply bytes out of the response ring, waiting for at least one.
  xenstore::io_result receive(std::span<char> in) {
    auto& s = *s_;
    for (;;) {
      const auto seen = s.seq_now();
      if (s.interrupted()) return std::size_t{0};
      bool again = false;
      auto n = [&]() -> result<std::size_t, ring_error> {
        std::lock_guard l{s.ring_mu};
        auto r = s.guest.read(std::as_writable_bytes(in));
        // A reconnection someone else asked for (or ours) finished: start over fresh.
        if (!r && r.error() == ring_error::reconnecting && s.guest.reconnected()) again = true;
        return r;
      }();
      if (again) continue;
      if (!n && n.error() != ring_error::reconnecting) return unexpected{fault_of(n.error())};
      if (n && *n > 0) {
        s.evtchn.notify();  // the server may be waiting for room to write
        return *n;
      }
      if (s.wait(seen) != woken::event) return std::size_t{0};
    }
  }

  /// Wakes blocked calls; they return at once (receive: 0, send: closed) until rearm().
  void interrupt() noexcept { s_->interrupt(); }
  /// Clears interrupt().
  void rearm() noexcept { s_->rearm(); }

  /// Whether the server offers the reconnection feature.
  bool reconnect_supported() noexcept {
    std::lock_guard l{s_->ring_mu};
    return (s_->guest.server_features() & xenstore_feature_reconnection) != 0;
  }

  /// The reconnection of xenstore-ring.txt: set connection=1, signal, and wait until the
  /// server has emptied the rings and set it back to 0. Needs the server's feature bit.
  xenstore::status reconnect() {
    auto& s = *s_;
    {
      std::lock_guard l{s.ring_mu};
      if (auto r = s.guest.begin_reconnect(); !r) return unexpected{xenstore::error{xenstore::errc::unsupported}};
    }
    s.evtchn.notify();
    for (;;) {
      const auto seen = s.seq_now();
      {
        std::lock_guard l{s.ring_mu};
        if (s.guest.reconnected()) return {};
      }
      if (s.wait(seen) != woken::event) return unexpected{xenstore::error{xenstore::errc::closed}};
    }
  }

 private:
  enum class woken : std::uint8_t { event, interrupted, timed_out };

  // Waiting without lost wake-ups when the reader and a writer both wait: one thread at a
  // time polls the event channel and acks it, then bumps `seq` under the mutex; a thread
  // that read `seq` before looking at the ring sleeps only until seq moves past it.
  struct shared {
    shared(xenstore_ring_guest g, E e) : guest{std::move(g)}, evtchn{std::move(e)} {}
    ~shared() {
      if (stop_fd >= 0) ::close(stop_fd);
    }
    std::mutex ring_mu;  // the guest end's two directions share latched state
    xenstore_ring_guest guest;
    E evtchn;
    std::mutex m;
    std::condition_variable cv;
    std::uint64_t seq{0};
    bool polling{false};
    bool stop{false};
    int stop_fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};

    std::uint64_t seq_now() {
      std::lock_guard l{m};
      return seq;
    }
    bool interrupted() {
      std::lock_guard l{m};
      return stop;
    }
    // Returns once an event arrived after `seen` was read, on interrupt, or at `deadline`
    // (max(): none; a deadline already past returns timed_out unless an event is there).
    woken wait(std::uint64_t seen,
               xenstore::transport_clock::time_point deadline = xenstore::transport_clock::time_point::max()) {
      const bool bounded = deadline != xenstore::transport_clock::time_point::max();
      std::unique_lock l{m};
      for (;;) {
        if (stop) return woken::interrupted;
        if (seq != seen) return woken::event;
        if (bounded && xenstore::transport_clock::now() >= deadline) return woken::timed_out;
        if (!polling) break;
        if (bounded)
          cv.wait_until(l, deadline);
        else
          cv.wait(l);
      }
      polling = true;
      l.unlock();
      int ms = -1;
      if (bounded) {
        const auto now = xenstore::transport_clock::now();  // compared first: min() - now overflows
        const auto c = deadline <= now ? 0 : std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
        ms = c > 60000 ? 60000 : static_cast<int>(c);
      }
      pollfd p[2] = {{evtchn.fd(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
      int r;
      while ((r = ::poll(p, 2, ms)) < 0 && errno == EINTR) {
      }
      const bool got = r > 0 && (p[0].revents & POLLIN);
      if (got) evtchn.ack();
      l.lock();
      polling = false;
      if (r != 0) ++seq;  // a timed-out poll saw nothing: no news for the others
      cv.notify_all();    // either way someone else may have to take over polling
      if (stop) return woken::interrupted;
      if (r != 0) return woken::event;
      return bounded && xenstore::transport_clock::now() >= deadline ? woken::timed_out : woken::event;
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

  ring_transport(xenstore_ring_guest g, E e) : s_{std::make_unique<shared>(std::move(g), std::move(e))} {}

  static xenstore::error fault_of(ring_error e) noexcept {
    switch (e) {
      case ring_error::peer_error:
        return xenstore::error{xenstore::errc::broken, xenstore::fault::ring_error};
      case ring_error::not_supported:
        return xenstore::error{xenstore::errc::unsupported};
      default:
        return xenstore::error{xenstore::errc::broken, xenstore::fault::ring_index};
    }
  }

  std::unique_ptr<shared> s_;  // stable address: the reader and writers share it
};
static_assert(xenstore::deadline_transport<xenstore::ring_transport<xenstore::eventfd_channel>>);

}  // namespace xenstore

// The names before 0.2.0.
using xs_eventfd_channel [[deprecated("use xenbus::xenstore::eventfd_channel")]] = xenstore::eventfd_channel;
template <class E>
using xs_ring_transport [[deprecated("use xenbus::xenstore::ring_transport")]] = xenstore::ring_transport<E>;

XENBUS_END_NAMESPACE
