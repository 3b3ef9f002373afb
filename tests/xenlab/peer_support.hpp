// What both halves of xenbus-xenlab-peer share: result lines, waits on xenstore nodes, an event channel as a notify
// link.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/xen/evtchn.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <poll.h>
#include <time.h>

namespace xenlab {

// ---- Result lines -------------------------------------------------------------------------
// One line per check, read by the lab's scenario scripts (tests/xenlab/scenarios), which
// turn "PASS name detail", "FAIL name detail", "INFO text" and "FIGURE name value unit"
// into the lab's own results.

/// Checks that failed in this process so far.
/// (Both ends run as threads of one process in posix-rings; relaxed: a count, read after
/// the threads are joined.)
inline std::atomic<int>& failures() {
  static std::atomic<int> n{0};
  return n;
}

[[gnu::format(printf, 2, 3)]] inline void say(const char* kind, const char* fmt, ...) {
  std::va_list ap;
  va_start(ap, fmt);
  std::printf("%s ", kind);
  std::vprintf(fmt, ap);
  std::printf("\n");
  std::fflush(stdout);
  va_end(ap);
}
#define XENLAB_PASS(...) ::xenlab::say("PASS", __VA_ARGS__)
#define XENLAB_INFO(...) ::xenlab::say("INFO", __VA_ARGS__)
#define XENLAB_FAIL(...) \
  (::xenlab::failures().fetch_add(1, std::memory_order_relaxed), ::xenlab::say("FAIL", __VA_ARGS__))

/// Prints PASS or FAIL for `check` with `detail`; returns `ok`.
inline bool check(bool ok, const char* check, const std::string& detail) {
  if (ok)
    XENLAB_PASS("%s %s", check, detail.c_str());
  else
    XENLAB_FAIL("%s %s", check, detail.c_str());
  return ok;
}

inline void figure(const std::string& name, double value, const char* unit) {
  std::printf("FIGURE %s %.6g %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

/// Ends the program after a failure it cannot go on from (the peer stopped answering, a
/// system call failed): one FAIL line, exit status 1.
[[noreturn]] inline void give_up(const char* check, const std::string& why) {
  XENLAB_FAIL("%s %s", check, why.c_str());
  std::exit(1);
}

inline std::string errno_text(int e) { return std::to_string(e) + " (" + std::strerror(e) + ")"; }

inline std::string describe(const xenbus::store_error& e) { return std::string(e.name()); }
inline std::string describe(const xenbus::evtchn_error& e) {
  std::string s(xenbus::to_string(e.code));
  if (e.sys_errno != 0) s += ": errno " + errno_text(e.sys_errno);
  return s;
}
inline std::string describe(const xenbus::grant_error& e) {
  std::string s(xenbus::to_string(e.code));
  if (e.sys_errno != 0) s += ": errno " + errno_text(e.sys_errno);
  return s;
}

/// Opens /dev/xen/evtchn, or ends the program with one clear line: off Xen that device is
/// missing, and it is the first thing every Xen subcommand needs.
inline xenbus::xen::evtchn_handle open_xen_evtchn(const char* who) {
  auto ev = xenbus::xen::evtchn_handle::open();
  if (!ev && ev.error().code == xenbus::evtchn_errc::unavailable)
    give_up(who, "not running on Xen: cannot open /dev/xen/evtchn (" + describe(ev.error()) + ")");
  if (!ev) give_up(who, "xenevtchn_open: " + describe(ev.error()));
  return std::move(ev).value();
}

// ---- Xenstore ------------------------------------------------------------------------------

/// How long a step waits for the other domain (xenstore and event channels under TCG are
/// slow: milliseconds an operation), and for a peer that never started.
inline constexpr int step_timeout_ms = 60'000;

/// Waits until node `path` exists with a value that `accept` takes, watching it (one
/// event at registration, then one per change); returns the value, or `timeout` after
/// `timeout_ms`, or the store's error. Reads the node again after every event, so events
/// that several changes share, and spurious ones, lose nothing.
template <xenbus::device_store S, class Accept>
xenbus::result<std::string, xenbus::store_error> await_node(S& store, const std::string& path, Accept&& accept,
                                                            int timeout_ms = step_timeout_ms) {
  static std::atomic<unsigned> next_token{0};
  // Relaxed: the tokens only need to differ.
  const std::string token = "xenlab-await-" + std::to_string(next_token.fetch_add(1, std::memory_order_relaxed));
  if (auto w = store.watch(path, token); !w) return xenbus::unexpected{w.error()};
  struct unwatch_at_exit {
    S& s;
    const std::string& path;
    const std::string& token;
    ~unwatch_at_exit() { (void)s.unwatch(path, token); }  // a failure only leaves spurious wakeups
  } unwatch{store, path, token};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto v = store.read(xenbus::no_tx, path);
    if (v && accept(std::string_view(*v))) return v;
    if (!v && v.error().code != xenbus::store_errc::enoent) return v;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return xenbus::unexpected{xenbus::store_error{xenbus::store_errc::timeout}};
    auto ev = store.next_watch_event(static_cast<int>(left.count()));
    if (!ev && ev.error().code != xenbus::store_errc::timeout) return xenbus::unexpected{ev.error()};
  }
}

/// await_node for one exact value.
template <xenbus::device_store S>
xenbus::result<std::string, xenbus::store_error> await_value(S& store, const std::string& path, std::string_view value,
                                                             int timeout_ms = step_timeout_ms) {
  return await_node(
      store, path, [value](std::string_view v) { return v == value; }, timeout_ms);
}

// ---- An event channel as a notify link -----------------------------------------------------

/// One end of one event channel as xbench's notify_link: kick() notifies the peer, wait()
/// sleeps until the peer notified. Virtual, so that our loops and the C macros' loops (which
/// reach it through the XP_KICK/XP_WAIT hooks) pay for the same calls.
class link {
 public:
  virtual ~link() = default;
  virtual void kick() = 0;
  /// Sleeps until a notification comes; gives up on the program after `idle_limit`
  /// without one (the peer is gone: nothing else would end the wait).
  virtual void wait() = 0;
  /// Sleeps until a notification comes (true) or `ns` pass (false).
  virtual bool wait_for(long ns) = 0;
  /// Wakeups that found no notification for our port, since the start.
  std::uint64_t spurious_wakeups = 0;

  static constexpr long idle_limit_ns = 30'000'000'000L;
};

/// A link on port `port` of any event-channel handle (libxenevtchn's or the POSIX machine's).
/// A wait polls the handle's fd, takes the one pending port and unmasks it, as a C driver
/// using libxenevtchn does.
template <xenbus::event_channel E>
class evtchn_link final : public link {
 public:
  evtchn_link(E& handle, xenbus::evtchn_port port) : h_{handle}, port_{port} {}

  void kick() override {
    if (auto r = h_.notify(port_); !r) give_up("evtchn-notify", describe(r.error()));
  }
  void wait() override {
    if (!wait_for(idle_limit_ns))
      give_up("evtchn-wait", "no notification from the peer for 30 s on port " + std::to_string(port_));
  }
  bool wait_for(long ns) override {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const long long deadline = now.tv_sec * 1'000'000'000LL + now.tv_nsec + ns;
    for (;;) {
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      const long long left = deadline - (now.tv_sec * 1'000'000'000LL + now.tv_nsec);
      if (left <= 0) return false;
      const timespec t{static_cast<time_t>(left / 1'000'000'000LL), static_cast<long>(left % 1'000'000'000LL)};
      pollfd p{h_.fd(), POLLIN, 0};
      const int r = ::ppoll(&p, 1, &t, nullptr);
      if (r < 0 && errno != EINTR) give_up("evtchn-wait", "ppoll: errno " + errno_text(errno));
      if (r <= 0) continue;
      auto got = h_.pending();
      if (!got) {
        if (got.error().code != xenbus::evtchn_errc::would_block) give_up("evtchn-pending", describe(got.error()));
        ++spurious_wakeups;
        continue;
      }
      if (auto u = h_.unmask(*got); !u) give_up("evtchn-unmask", describe(u.error()));
      if (*got == port_) return true;
      ++spurious_wakeups;  // another port of this handle: not ours to report
    }
  }

 private:
  E& h_;
  xenbus::evtchn_port port_;
};

}  // namespace xenlab
