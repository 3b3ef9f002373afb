// [posix] event_loop: descriptors, timers and event channels on one thread, or inside a loop the caller already has.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/version.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include <sys/epoll.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// One thread's loop over descriptors (level-triggered), one-shot timers and pollers (work
/// without a descriptor, such as an in-process store, run on every turn). Run it yourself
/// (run(), run_until()), or put it inside a loop you already have: poll fd() for reading,
/// sleep at most timeout_ms(), then call process(). Callbacks may add and remove
/// registrations, their own included. Not thread-safe: every call on the thread that runs it.
class event_loop {
 public:
  using clock = std::chrono::steady_clock;
  /// Names a registration; 0 is none (a failed add).
  using handle = std::uint64_t;

  event_loop() : ep_{::epoll_create1(EPOLL_CLOEXEC)}, error_{ep_ < 0 ? errno : 0} {}
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;
  ~event_loop() {
    if (ep_ >= 0) ::close(ep_);
  }

  /// False if the kernel refused the epoll descriptor (error() says why).
  bool ok() const noexcept { return ep_ >= 0; }
  int error() const noexcept { return error_; }

  /// Calls `on_readable` on every turn while `fd` polls readable. The descriptor stays the
  /// caller's: remove() it before closing it. 0 (and errno in error()) on failure.
  handle add_fd(int fd, std::function<void()> on_readable) {
    const handle h = ++next_;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = h;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      error_ = errno;
      return 0;
    }
    fds_.emplace(h, fd_entry{fd, std::move(on_readable), false});
    return h;
  }

  /// Calls `fn` once, on the first turn at or after `when`.
  handle add_timer(clock::time_point when, std::function<void()> fn) {
    const handle h = ++next_;
    timers_.emplace(h, timer_entry{due_.emplace(when, h), std::move(fn), false});
    return h;
  }

  /// Calls `poll` on every turn. It returns true if it did any work: then every poller runs
  /// again (work one did may have given another some, as two in-process store connections
  /// do), until a round in which none did; after 16 rounds the loop does not sleep. Work that
  /// arises outside the loop's callbacks is seen at the next process() (run_until() and
  /// run() start with one).
  handle add_poller(std::function<bool()> poll) {
    const handle h = ++next_;
    pollers_.emplace(h, poller_entry{std::move(poll), false});
    return h;
  }

  /// The event channels of handle `e`: each raised port is taken, unmasked, then passed to
  /// `on_port` (at most 256 a turn; the descriptor stays readable for the rest). Unmasking
  /// before the callback loses nothing: a raise during the callback is delivered again.
  template <event_channel E>
  handle add_evtchn(E& e, std::function<void(evtchn_port)> on_port) {
    return add_fd(e.fd(), [&e, on_port = std::move(on_port)] {
      for (int n = 0; n < 256; ++n) {
        auto p = e.pending();
        if (!p) return;
        (void)e.unmask(*p);
        on_port(*p);
      }
    });
  }

  /// Removes a registration (a no-op for 0 or one already gone). Safe inside a callback;
  /// a descriptor is taken out of the epoll set at once, so it may be closed right after.
  void remove(handle h) {
    if (auto it = fds_.find(h); it != fds_.end()) {
      (void)::epoll_ctl(ep_, EPOLL_CTL_DEL, it->second.fd, nullptr);
      it->second.dead = true;
    } else if (auto t = timers_.find(h); t != timers_.end()) {
      if (t->second.dead) return;
      due_.erase(t->second.pos);  // a re-armed timer leaves nothing behind
      t->second.dead = true;
    } else if (auto p = pollers_.find(h); p != pollers_.end()) {
      p->second.dead = true;
    } else {
      return;
    }
    graveyard_.push_back(h);
    if (depth_ == 0) sweep();
  }

  // ---- Embedding in another loop --------------------------------------------------------

  /// One descriptor that polls readable while a registered descriptor is readable.
  int fd() const noexcept { return ep_; }
  /// How long the caller may sleep before calling process(): 0 if work is pending now, the
  /// time to the next timer, or -1 (until fd() is readable).
  int timeout_ms(clock::time_point now = clock::now()) const {
    if (more_) return 0;
    if (!due_.empty()) {
      const auto when = due_.begin()->first;  // only live timers are in due_
      if (when <= now) return 0;
      // Rounded up: waking a millisecond early would only spin once more.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
      return ms > 1000000 ? 1000000 : static_cast<int>(ms);
    }
    return -1;
  }
  /// Runs everything ready now: readable descriptors, due timers, then the pollers until a
  /// round in which none did any work (at most 16 rounds). Never blocks.
  void process(clock::time_point now = clock::now()) {
    ++depth_;
    epoll_event evs[64];
    const int n = ::epoll_wait(ep_, evs, 64, 0);
    for (int i = 0; i < n; ++i) {
      const handle h = evs[i].data.u64;  // a copy: epoll_event is packed on x86-64, its u64 misaligned
      auto it = fds_.find(h);
      if (it != fds_.end() && !it->second.dead) it->second.fn();  // entries die only in sweep()
    }
    // One pass over the timers due now; one a callback adds for `now` waits for the next turn.
    std::vector<handle> fire;
    for (auto it = due_.begin(); it != due_.end() && it->first <= now; ++it) fire.push_back(it->second);
    for (handle h : fire) {
      auto t = timers_.find(h);
      if (t == timers_.end() || t->second.dead) continue;  // removed by an earlier callback
      due_.erase(t->second.pos);
      t->second.dead = true;  // one-shot
      graveyard_.push_back(h);
      t->second.fn();
    }
    more_ = false;
    for (int round = 0; round < 16; ++round) {
      bool any = false;
      for (auto& [h, p] : pollers_)
        if (!p.dead && p.fn()) any = true;
      more_ = any;
      if (!any) break;
    }
    --depth_;
    if (depth_ == 0) sweep();
  }

  // ---- Running it ------------------------------------------------------------------------

  /// Waits until work is ready or `max_wait` (-1: no bound) passes, then process().
  void run_once(std::chrono::milliseconds max_wait = std::chrono::milliseconds{-1}) {
    int t = timeout_ms();
    if (max_wait.count() >= 0 && (t < 0 || t > max_wait.count())) t = static_cast<int>(max_wait.count());
    if (t != 0) {
      epoll_event ev;
      int r;
      do r = ::epoll_wait(ep_, &ev, 1, t);
      while (r < 0 && errno == EINTR);
    }
    process();
  }
  /// Runs until `done()` holds (checked after each turn) or `limit` has passed; true if done.
  /// Starts with a process(): pollers may have work that arose outside the loop.
  template <class Done>
  bool run_until(Done&& done, std::chrono::milliseconds limit) {
    const auto end = clock::now() + limit;
    stopped_ = false;
    process();
    while (!done()) {
      const auto now = clock::now();
      if (now >= end || stopped_) return done();
      run_once(std::chrono::ceil<std::chrono::milliseconds>(end - now));
    }
    return true;
  }
  /// Runs until stop(). Starts with a process(), as run_until() does.
  void run() {
    stopped_ = false;
    process();
    while (!stopped_) run_once();
  }
  /// Makes run() (and run_until()) return after the current turn.
  void stop() noexcept { stopped_ = true; }

 private:
  struct fd_entry {
    int fd;
    std::function<void()> fn;
    bool dead;
  };
  struct timer_entry {
    std::multimap<clock::time_point, handle>::iterator pos;  // its place in due_
    std::function<void()> fn;
    bool dead;
  };
  struct poller_entry {
    std::function<bool()> fn;
    bool dead;
  };

  /// Erases removed registrations, outside every callback (a callback may remove itself).
  void sweep() {
    for (handle h : graveyard_) {
      fds_.erase(h);
      timers_.erase(h);
      pollers_.erase(h);
    }
    graveyard_.clear();
  }

  int ep_;
  int error_;
  handle next_ = 0;
  std::map<handle, fd_entry> fds_;
  std::map<handle, timer_entry> timers_;
  std::multimap<clock::time_point, handle> due_;
  std::map<handle, poller_entry> pollers_;
  std::vector<handle> graveyard_;
  int depth_ = 0;
  bool more_ = false;
  bool stopped_ = false;
};

}  // namespace posix
XENBUS_END_NAMESPACE
