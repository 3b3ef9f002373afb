// [xen] xenbus::event_channel over the real libxenevtchn (link -lxenevtchn; runs on a Xen host).
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cerrno>

#include <poll.h>

extern "C" {
#include <xenevtchn.h>
}

XENBUS_BEGIN_NAMESPACE
namespace xen {

/// A libxenevtchn handle. `open()` fails with `unavailable` where there is no
/// /dev/xen/evtchn (not a Xen domain, or no privilege).
class evtchn_handle {
 public:
  static result<evtchn_handle, evtchn_error> open() noexcept {
    errno = 0;
    xenevtchn_handle* h = ::xenevtchn_open(nullptr, 0);
    if (!h) return unexpected{evtchn_error{evtchn_errc::unavailable, errno}};
    return evtchn_handle{h};
  }
  evtchn_handle(evtchn_handle&& o) noexcept : h_{o.h_} { o.h_ = nullptr; }
  evtchn_handle& operator=(evtchn_handle&&) = delete;
  ~evtchn_handle() {
    if (h_) ::xenevtchn_close(h_);
  }

  int fd() const noexcept { return ::xenevtchn_fd(h_); }

  result<evtchn_port, evtchn_error> bind_unbound(domid_t remote) noexcept {
    return port_or_error(::xenevtchn_bind_unbound_port(h_, remote));
  }
  result<evtchn_port, evtchn_error> bind_interdomain(domid_t remote, evtchn_port remote_port) noexcept {
    return port_or_error(::xenevtchn_bind_interdomain(h_, remote, remote_port));
  }
  result<void, evtchn_error> unbind(evtchn_port p) noexcept { return ok_or_error(::xenevtchn_unbind(h_, p)); }
  result<void, evtchn_error> notify(evtchn_port p) noexcept { return ok_or_error(::xenevtchn_notify(h_, p)); }
  result<void, evtchn_error> unmask(evtchn_port p) noexcept { return ok_or_error(::xenevtchn_unmask(h_, p)); }

  /// Never blocks: libxenevtchn's own pending() may, even on a non-blocking fd (see
  /// xenevtchn.h), so poll first.
  result<evtchn_port, evtchn_error> pending() noexcept {
    pollfd p{fd(), POLLIN, 0};
    const int r = ::poll(&p, 1, 0);
    if (r < 0) return unexpected{evtchn_error{evtchn_errc::system, errno}};
    if (r == 0) return unexpected{evtchn_error{evtchn_errc::would_block}};
    return port_or_error(::xenevtchn_pending(h_));
  }

 private:
  explicit evtchn_handle(xenevtchn_handle* h) noexcept : h_{h} {}
  static result<evtchn_port, evtchn_error> port_or_error(xenevtchn_port_or_error_t p) noexcept {
    if (p < 0) return unexpected{evtchn_error{evtchn_errc::system, errno}};
    return static_cast<evtchn_port>(p);
  }
  static result<void, evtchn_error> ok_or_error(int rc) noexcept {
    if (rc < 0) return unexpected{evtchn_error{evtchn_errc::system, errno}};
    return {};
  }
  xenevtchn_handle* h_;
};

static_assert(::xenbus::event_channel<evtchn_handle>, "xen::evtchn_handle must model xenbus::event_channel");

}  // namespace xen
XENBUS_END_NAMESPACE
