// [posix] Device services on a posix::event_loop: watch descriptor, deadlines, event channels, shutdown, boot wait.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/version.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Keeps a device_service running on an event_loop: its process() runs when the store's
/// watch descriptor is readable (on every turn for a store without one, the embedded
/// store), when its next deadline comes, and again at once while events are left. A store
/// connection that failed is taken out of the loop (it would poll readable for ever).
/// Destroying the runner takes everything out of the loop; the service stays.
template <class Service>
class service_runner {
 public:
  service_runner(event_loop& loop, Service& svc) : loop_{&loop}, svc_{&svc}, seen_{svc.changes()} {
    if constexpr (requires { svc.store().watch_fd(); }) fd_ = svc.store().watch_fd();
    if (fd_ >= 0) {
      // Deadlines move, and the descriptor is parked or back, when the caller starts, shuts
      // down, suspends or resumes the service directly: looked at on every turn (cheap).
      watch_h_ = loop.add_poller([this] {
        if (svc_->changes() != seen_) rearm(false);
        return false;
      });
    } else {
      poll_h_ = loop.add_poller([this] { return step(); });
    }
    rearm(false);
  }
  service_runner(const service_runner&) = delete;
  service_runner& operator=(const service_runner&) = delete;
  ~service_runner() {
    loop_->remove(fd_h_);
    loop_->remove(poll_h_);
    loop_->remove(watch_h_);
    loop_->remove(timer_h_);
  }

  Service& service() noexcept { return *svc_; }
  event_loop& loop() noexcept { return *loop_; }

 private:
  bool step() {
    const std::uint64_t taken = svc_->stats().events;
    const bool more = svc_->process();
    rearm(more);
    return more || svc_->stats().events != taken;  // for a poller: did it do any work
  }
  void rearm(bool more) {
    seen_ = svc_->changes();
    // A suspended service leaves its events queued: a descriptor that stays readable would
    // spin the loop, so it leaves the loop until resume().
    const bool want_fd = fd_ >= 0 && !svc_->suspended() && !svc_->store_failed();
    if (want_fd && !fd_h_) fd_h_ = loop_->add_fd(fd_, [this] { (void)step(); });
    if (!want_fd && fd_h_) {
      loop_->remove(fd_h_);
      fd_h_ = 0;
    }
    loop_->remove(timer_h_);
    timer_h_ = 0;
    std::optional<event_loop::clock::time_point> at = svc_->next_deadline();
    // Events left over (a budget, or a descriptor that stopped polling readable early, as
    // xs_fileno may): run again on the next turn.
    if (more && fd_h_) at = event_loop::clock::now();
    if (at)
      timer_h_ = loop_->add_timer(*at, [this] {
        timer_h_ = 0;
        (void)step();
      });
  }

  event_loop* loop_;
  Service* svc_;
  std::uint64_t seen_;
  int fd_ = -1;  // the store's watch descriptor, if it has one
  event_loop::handle fd_h_ = 0, poll_h_ = 0, watch_h_ = 0, timer_h_ = 0;
};

/// Passes each port raised on `evtchn` to the first of `services` that owns it (its
/// driver's on_notify(queue) runs). Remove the returned handle before closing `evtchn`.
template <event_channel E, class... Services>
event_loop::handle attach_evtchn(event_loop& loop, E& evtchn, Services&... services) {
  return loop.add_evtchn(evtchn, [&services...](evtchn_port p) { (void)(services.notify(p) || ...); });
}

/// Shuts down every device of the runners' services at once and runs the loop until each
/// service is done: every driver Closed, or dropped when its service's close_timeout passed
/// (so 100 silent peers cost one timeout). True if every peer closed in time.
template <class... Runners>
bool shut_down(event_loop& loop, Runners&... runners) {
  const auto now = event_loop::clock::now();
  std::uint64_t timeouts_before = (0 + ... + runners.service().stats().close_timeouts);
  (runners.service().shutdown(now), ...);
  std::chrono::milliseconds limit{0};
  ((limit = std::max(limit, runners.service().config().close_timeout)), ...);
  // The services' own deadlines end it; the slack only guards against a stuck loop.
  (void)loop.run_until([&] { return (true && ... && runners.service().done()); }, limit + std::chrono::seconds{5});
  return (0 + ... + runners.service().stats().close_timeouts) == timeouts_before;
}

/// How long a guest waits for its frontends at boot, as Linux's wait_for_devices() in
/// drivers/xen/xenbus/xenbus_probe_frontend.c: wait_loop(start, 30, ...) while any device
/// is connecting, then wait_loop(start, 270, ...) while an essential one is (not device/vkbd
/// or device/vfb); both count seconds from the same start.
struct boot_wait {
  /// Every device, keyboards and framebuffers included: Linux waits 30 s.
  std::chrono::milliseconds all{30000};
  /// Then the essential ones: Linux waits until 270 s after the start.
  std::chrono::milliseconds essential{270000};
};

/// Linux's wait_for_devices: runs the loop until no device of the runners' services is
/// still connecting, at most `w.all`, then for the essential ones until `w.essential` has
/// passed since the start. Returns how many devices are still connecting (0: all ready).
template <class... Runners>
std::size_t wait_for_devices(event_loop& loop, boot_wait w, Runners&... runners) {
  const auto start = event_loop::clock::now();
  auto connecting = [&](bool essential) { return (std::size_t{0} + ... + runners.service().connecting(essential)); };
  (void)loop.run_until([&] { return connecting(false) == 0; }, w.all);
  const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(event_loop::clock::now() - start);
  if (spent < w.essential) (void)loop.run_until([&] { return connecting(true) == 0; }, w.essential - spent);
  return connecting(false);
}

}  // namespace posix
XENBUS_END_NAMESPACE
