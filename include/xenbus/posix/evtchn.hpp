// [posix] Event channels between processes: port tables in a posix::machine, doorbells on unix sockets.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Waits until `fd` is readable or `timeout_ms` passes (-1: forever). Returns readiness.
inline bool wait_readable(int fd, int timeout_ms) noexcept {
  pollfd p{fd, POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

/// One event-channel handle of domain `self` on a machine, with libxenevtchn's semantics:
/// a raised port is delivered once, then masked until unmask(); closing one end of an
/// interdomain channel turns the other end back into an unbound port for the same domain
/// (as Xen's EVTCHNOP_close does). The doorbell is a datagram socket in the abstract
/// namespace, one per handle, so `fd()` can be polled with other descriptors.
class evtchn_handle {
 public:
  static result<evtchn_handle, evtchn_error> open(const machine& m, domid_t self) noexcept {
    if (self >= m.header().domains) return unexpected{evtchn_error{evtchn_errc::unavailable, EINVAL}};
    const std::uint32_t id = m.new_handle_id();
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return unexpected{evtchn_error{evtchn_errc::system, errno}};
    sockaddr_un a{};
    const socklen_t len = doorbell(m, id, a);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
      const int e = errno;
      ::close(fd);
      return unexpected{evtchn_error{evtchn_errc::system, e}};
    }
    return evtchn_handle{m, self, id, fd};
  }

  evtchn_handle(evtchn_handle&& o) noexcept : m_{o.m_}, self_{o.self_}, id_{o.id_}, fd_{o.fd_} { o.fd_ = -1; }
  evtchn_handle& operator=(evtchn_handle&&) = delete;
  ~evtchn_handle() {
    if (fd_ < 0) return;
    // Like closing /dev/xen/evtchn: every port bound through this handle is closed.
    for (evtchn_port p = 1; p < m_->header().ports_per_domain; ++p)
      if (owned(p)) (void)unbind(p);
    ::close(fd_);
  }

  domid_t domid() const noexcept { return self_; }
  int fd() const noexcept { return fd_; }

  result<evtchn_port, evtchn_error> bind_unbound(domid_t remote) noexcept {
    if (remote >= m_->header().domains) return unexpected{evtchn_error{evtchn_errc::bad_remote}};
    auto p = reserve();
    if (!p) return p;
    // Release: owner/pending/masked (written in reserve) are visible to whoever sees the port unbound.
    binding(*p).store(detail::pack_port(detail::port_unbound, remote, 0), std::memory_order_release);
    return *p;
  }

  result<evtchn_port, evtchn_error> bind_interdomain(domid_t remote, evtchn_port remote_port) noexcept {
    detail::port_entry* rp = m_->port(remote, remote_port);
    if (!rp) return unexpected{evtchn_error{evtchn_errc::bad_remote}};
    auto p = reserve();
    if (!p) return p;
    // The remote port must be offered to us; claiming it and naming our port is one CAS.
    // Acq_rel: acquire pairs with the remote's release in bind_unbound (its owner field);
    // release publishes our reserved port to its notify().
    std::uint64_t expect = detail::pack_port(detail::port_unbound, self_, 0);
    if (!std::atomic_ref<std::uint64_t>(rp->binding)
             .compare_exchange_strong(expect, detail::pack_port(detail::port_interdomain, self_, *p),
                                      std::memory_order_acq_rel)) {
      // Release: hand the reserved entry back; nothing was published through it.
      binding(*p).store(detail::port_free, std::memory_order_release);
      return unexpected{evtchn_error{evtchn_errc::bad_remote}};
    }
    // Release: pairs with the acquire load of our binding in the remote's notify().
    binding(*p).store(detail::pack_port(detail::port_interdomain, remote, remote_port), std::memory_order_release);
    return *p;
  }

  result<void, evtchn_error> unbind(evtchn_port p) noexcept {
    if (!owned(p)) return unexpected{evtchn_error{evtchn_errc::bad_port}};
    // Acquire: pairs with the release that made the binding.
    const std::uint64_t b = binding(p).exchange(detail::port_reserved, std::memory_order_acquire);
    if (detail::port_state(b) == detail::port_interdomain) {
      if (detail::port_entry* rp = m_->port(detail::port_remote_dom(b), detail::port_remote_port(b))) {
        // The remote end waits for a new partner from our domain, as after EVTCHNOP_close.
        std::uint64_t expect = detail::pack_port(detail::port_interdomain, self_, p);
        // Acq_rel: the remote's notify() sees either the old binding or the unbound one.
        std::atomic_ref<std::uint64_t>(rp->binding)
            .compare_exchange_strong(expect, detail::pack_port(detail::port_unbound, self_, 0),
                                     std::memory_order_acq_rel);
      }
    }
    // Relaxed owner reset: the release store of the binding below publishes it.
    std::atomic_ref<std::uint32_t>(m_->port(self_, p)->owner).store(0, std::memory_order_relaxed);
    // Release: our use of the entry happens before the next reserve() (its acquire CAS).
    binding(p).store(detail::port_free, std::memory_order_release);
    return {};
  }

  result<void, evtchn_error> notify(evtchn_port p) noexcept {
    if (!owned(p)) return unexpected{evtchn_error{evtchn_errc::bad_port}};
    // Acquire: pairs with the release in bind_interdomain/the remote's CAS naming our port.
    const std::uint64_t b = binding(p).load(std::memory_order_acquire);
    if (detail::port_state(b) != detail::port_interdomain) return {};  // Xen drops it silently
    detail::port_entry* rp = m_->port(detail::port_remote_dom(b), detail::port_remote_port(b));
    if (!rp) return {};
    std::atomic_ref<std::uint64_t> rb(rp->binding);
    // Acquire: the remote's owner field is published by its release store of the binding.
    if (rb.load(std::memory_order_acquire) != detail::pack_port(detail::port_interdomain, self_, p)) return {};
    // Seq_cst pair with pending()/unmask(): either we see the port unmasked and ring the
    // doorbell, or the receiver's unmask() sees our pending bit and rings it itself.
    if (std::atomic_ref<std::uint32_t>(rp->pending).exchange(1, std::memory_order_seq_cst) != 0) return {};
    if (std::atomic_ref<std::uint32_t>(rp->masked).load(std::memory_order_seq_cst) != 0) return {};
    // Relaxed: the owner id was published by the acquire above.
    ring(std::atomic_ref<std::uint32_t>(rp->owner).load(std::memory_order_relaxed), detail::port_remote_port(b));
    return {};
  }

  /// The next raised port, or `would_block`. The port stays masked until `unmask(port)`.
  result<evtchn_port, evtchn_error> pending() noexcept {
    for (;;) {
      evtchn_port p = 0;
      const ssize_t n = ::recv(fd_, &p, sizeof p, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return unexpected{evtchn_error{evtchn_errc::would_block}};
        return unexpected{evtchn_error{evtchn_errc::system, errno}};
      }
      // A doorbell names a port, but anyone on the machine can ring it: check it is ours.
      if (n != sizeof p || !owned(p)) continue;
      detail::port_entry* e = m_->port(self_, p);
      // Seq_cst: see notify(); mask before clearing so a new raise waits for unmask().
      std::atomic_ref<std::uint32_t>(e->masked).store(1, std::memory_order_seq_cst);
      std::atomic_ref<std::uint32_t>(e->pending).store(0, std::memory_order_seq_cst);
      return p;
    }
  }

  result<void, evtchn_error> unmask(evtchn_port p) noexcept {
    if (!owned(p)) return unexpected{evtchn_error{evtchn_errc::bad_port}};
    detail::port_entry* e = m_->port(self_, p);
    // Seq_cst: see notify(); a raise that found the port masked is redelivered here.
    std::atomic_ref<std::uint32_t>(e->masked).store(0, std::memory_order_seq_cst);
    if (std::atomic_ref<std::uint32_t>(e->pending).load(std::memory_order_seq_cst) != 0) ring(id_, p);
    return {};
  }

 private:
  evtchn_handle(const machine& m, domid_t self, std::uint32_t id, int fd) noexcept
      : m_{&m}, self_{self}, id_{id}, fd_{fd} {}

  static socklen_t doorbell(const machine& m, std::uint32_t handle, sockaddr_un& a) noexcept {
    a.sun_family = AF_UNIX;
    // Abstract namespace (leading NUL): nothing to clean up when a process dies.
    const int n = std::snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "xenbus-%016llx-%u",
                                static_cast<unsigned long long>(m.header().instance), handle);
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<std::size_t>(n));
  }
  void ring(std::uint32_t handle, evtchn_port p) const noexcept {
    sockaddr_un a{};
    const socklen_t len = doorbell(*m_, handle, a);
    // A full or vanished doorbell loses nothing: the pending bit stays set and is
    // redelivered by the receiver's next unmask(); a closed peer drops it, as Xen does.
    (void)::sendto(fd_, &p, sizeof p, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a), len);
  }
  std::atomic_ref<std::uint64_t> binding(evtchn_port p) const noexcept {
    return std::atomic_ref<std::uint64_t>(m_->port(self_, p)->binding);
  }
  bool owned(evtchn_port p) const noexcept {
    detail::port_entry* e = m_->port(self_, p);
    if (!e) return false;
    // Acquire: pairs with the release store that bound the port (owner written before it).
    const auto st = detail::port_state(std::atomic_ref<std::uint64_t>(e->binding).load(std::memory_order_acquire));
    // Relaxed: the owner was published by the binding's release store, observed above.
    return (st == detail::port_unbound || st == detail::port_interdomain) &&
           std::atomic_ref<std::uint32_t>(e->owner).load(std::memory_order_relaxed) == id_;
  }
  result<evtchn_port, evtchn_error> reserve() noexcept {
    for (evtchn_port p = 1; p < m_->header().ports_per_domain; ++p) {
      std::uint64_t expect = detail::port_free;
      // Acquire: the previous owner's release of the entry happens before our reuse.
      if (!binding(p).compare_exchange_strong(expect, detail::port_reserved, std::memory_order_acquire)) continue;
      detail::port_entry* e = m_->port(self_, p);
      // Relaxed: published by the caller's release store of the binding.
      std::atomic_ref<std::uint32_t>(e->owner).store(id_, std::memory_order_relaxed);
      std::atomic_ref<std::uint32_t>(e->pending).store(0, std::memory_order_relaxed);
      std::atomic_ref<std::uint32_t>(e->masked).store(0, std::memory_order_relaxed);
      return p;
    }
    return unexpected{evtchn_error{evtchn_errc::no_free_port}};
  }

  const machine* m_;
  domid_t self_;
  std::uint32_t id_;
  int fd_;
};

static_assert(::xenbus::event_channel<evtchn_handle>, "posix::evtchn_handle must model xenbus::event_channel");

}  // namespace posix
XENBUS_END_NAMESPACE
