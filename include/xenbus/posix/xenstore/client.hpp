// [posix] A synchronous xenstore client over any byte transport, with bounded, pollable watches.
#pragma once

#include <xenbus/posix/xenstore/detail/client_codec.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>
#include <xenbus/posix/xenstore/transport.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE

namespace xenstore {

/// A transaction id; the default {} means "not in a transaction".
struct tx {
  std::uint32_t id{0};
  friend constexpr bool operator==(xenstore::tx, xenstore::tx) = default;
};

/// One watch event. `lost` > 0 says that many later events were dropped because the queue
/// was full: rescan everything under the watched path.
struct watch_event {
  std::string path;
  std::uint64_t lost{0};
};

/// Counters of one watch's queue.
struct watch_stats {
  std::uint64_t delivered{0};  ///< events handed to the consumer
  std::uint64_t coalesced{0};  ///< events merged into a queued event for the same path
  std::uint64_t dropped{0};    ///< events dropped because the queue was full
};

class client;
class watch;

}  // namespace xenstore

namespace detail {

/// The transport behind a client, type-erased so that xenstore::client is one concrete class.
struct xs_transport_iface {
  virtual ~xs_transport_iface() = default;
  /// xenstore::deadline_transport's send_until; without it, send() (the deadline is ignored).
  virtual xenstore::io_result send_until(std::span<const char>, xenstore::transport_clock::time_point) = 0;
  virtual bool bounded_send() const noexcept = 0;
  virtual xenstore::io_result receive(std::span<char>) = 0;
  virtual void interrupt() noexcept = 0;
  virtual void rearm() noexcept = 0;
  virtual bool can_reconnect() noexcept = 0;
  virtual xenstore::status reconnect() = 0;
};

template <xenstore::transport T>
class xs_transport_box final : public xs_transport_iface {
 public:
  explicit xs_transport_box(T&& t) : t_{std::move(t)} {}
  xenstore::io_result send_until(std::span<const char> b, xenstore::transport_clock::time_point d) override {
    if constexpr (xenstore::deadline_transport<T>) {
      return t_.send_until(b, d);
    } else {
      if (auto r = t_.send(b); !r) return unexpected{r.error()};
      return b.size();
    }
  }
  bool bounded_send() const noexcept override { return xenstore::deadline_transport<T>; }
  xenstore::io_result receive(std::span<char> b) override { return t_.receive(b); }
  void interrupt() noexcept override { t_.interrupt(); }
  void rearm() noexcept override { t_.rearm(); }
  bool can_reconnect() noexcept override {
    if constexpr (xenstore::reconnectable_transport<T>)
      return t_.reconnect_supported();
    else
      return false;
  }
  xenstore::status reconnect() override {
    if constexpr (xenstore::reconnectable_transport<T>)
      return t_.reconnect();
    else
      return unexpected{xenstore::error{xenstore::errc::unsupported}};
  }

 private:
  T t_;
};

/// A hash of event paths keyed per watch queue, so that a server choosing node names cannot
/// aim at collisions it computed beforehand (std::hash has a fixed seed): FNV-1a started
/// from a random key, then the splitmix64 finaliser. Not cryptographic; it spreads names a
/// peer picks without knowing the key.
struct xs_keyed_hash {
  std::uint64_t key{0};
  std::size_t operator()(std::string_view s) const noexcept {
    std::uint64_t h = key ^ 0xcbf29ce484222325u;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3u;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    h ^= h >> 31;
    return static_cast<std::size_t>(h);
  }
};

/// A fresh key for xs_keyed_hash.
inline std::uint64_t xs_hash_key() {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

/// The queue of one watch. Invariant (under mu): the eventfd is readable exactly when
/// the queue holds an event or the watch has ended; `queued` holds exactly one view of
/// each path in `queue` (views into the deque's strings, which stay in place: a deque
/// moves no element on push_back/pop_front, and a path leaves `queued` before it is
/// moved out of the queue). Memory: at most `capacity` paths of at most 3072 bytes.
struct xs_watch_state {
  std::string path;
  std::string token;
  std::size_t capacity;
  int efd{-1};

  std::mutex mu;
  std::deque<std::string> queue;
  std::unordered_set<std::string_view, xs_keyed_hash> queued{0, xs_keyed_hash{xs_hash_key()}};
  std::uint64_t lost_pending{0};
  xenstore::watch_stats stats;
  bool ended{false};
  xenstore::error end_error{};

  xs_watch_state(std::string p, std::string t, std::size_t cap)
      : path{std::move(p)},
        token{std::move(t)},
        capacity{cap < 1 ? 1 : cap},
        efd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)} {}
  xs_watch_state(const xs_watch_state&) = delete;
  xs_watch_state& operator=(const xs_watch_state&) = delete;
  ~xs_watch_state() {
    if (efd >= 0) ::close(efd);
  }

  void signal_locked() noexcept {
    const std::uint64_t one = 1;
    // The counter only saturates after 2^64-2 writes; readability is what matters.
    [[maybe_unused]] const auto n = ::write(efd, &one, sizeof one);
  }
  void settle_locked() noexcept {
    if (queue.empty() && !ended) {
      std::uint64_t v;
      [[maybe_unused]] const auto n = ::read(efd, &v, sizeof v);
    }
  }

  /// Called by the reader with an event for this watch's token.
  void push(std::string_view event_path) {
    std::lock_guard l{mu};
    if (ended) return;
    if (queued.contains(event_path)) {
      ++stats.coalesced;  // the consumer reads current state when it handles the queued one
      return;
    }
    if (queue.size() >= capacity) {
      ++stats.dropped;
      ++lost_pending;
    } else {
      queue.emplace_back(event_path);
      queued.insert(std::string_view(queue.back()));
    }
    signal_locked();
  }

  /// Takes the oldest queued path (caller holds mu; the queue is not empty).
  std::string pop_locked() {
    queued.erase(std::string_view(queue.front()));  // before the string is moved out
    std::string p = std::move(queue.front());
    queue.pop_front();
    return p;
  }

  void end(xenstore::error why) {
    std::lock_guard l{mu};
    if (ended) return;
    ended = true;
    end_error = why;
    signal_locked();
  }
};

/// A lock with a timed wait (TimedLockable, for std::unique_lock), built on a mutex and a
/// condition variable rather than std::timed_mutex: the holder's unlock happens-before the
/// next lock through `m` (thread sanitizers follow that; libstdc++'s timed_mutex uses
/// pthread_mutex_clocklock, which some of them do not intercept).
class xs_wire_lock {
 public:
  void lock() {
    std::unique_lock l{m_};
    cv_.wait(l, [&] { return !held_; });
    held_ = true;
  }
  bool try_lock() {
    std::lock_guard l{m_};
    if (held_) return false;
    held_ = true;
    return true;
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
    std::unique_lock l{m_};
    if (!cv_.wait_until(l, t, [&] { return !held_; })) return false;
    held_ = true;
    return true;
  }
  void unlock() {
    {
      std::lock_guard l{m_};
      held_ = false;
    }
    // All: a timed waiter woken at its deadline may return without taking the lock, and
    // must not swallow the wake-up another waiter needs.
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool held_{false};
};

/// One outstanding request, owned by the waiting caller's stack frame.
struct xs_pending {
  xs_type type{};
  std::uint32_t tx_id{0};  // servers echo it in the reply header
  bool done{false};
  bool failed{false};
  xenstore::error err{};
  std::string payload;
};

/// The shared state of one connection: pending requests, watches, the reader thread.
class xs_conn {
 public:
  explicit xs_conn(std::unique_ptr<xs_transport_iface> t) : t_{std::move(t)} {}
  xs_conn(const xs_conn&) = delete;
  xs_conn& operator=(const xs_conn&) = delete;
  ~xs_conn() { shutdown(); }

  /// Starts the reader thread (not done by the fuzz harness, which feeds bytes itself).
  void start() {
    reader_ = std::thread([this] { read_loop(); });
  }

  /// Sends one request and waits for its reply payload (already checked for its type).
  /// With a reply timeout, the whole request (waiting to send, sending, waiting for the
  /// reply) ends by one deadline; past it the connection is latched broken.
  result<std::string, xenstore::error> request(xs_type type, xenstore::tx tx,
                                               std::initializer_list<std::string_view> parts, bool raw_last = false) {
    auto frame = xs_encode(type, 0, tx.id, parts, raw_last);
    if (!frame) return unexpected{frame.error()};
    xs_pending p;
    p.type = type;
    p.tx_id = tx.id;
    const auto deadline = request_deadline();
    {
      std::unique_lock wl{write_mu_, std::defer_lock};
      if (deadline == xenstore::transport_clock::time_point::max()) {
        wl.lock();
      } else if (!wl.try_lock_until(deadline)) {
        // Another sender has held the wire for a whole timeout: the server is not reading.
        latch(xenstore::error{xenstore::errc::broken, xenstore::fault::send_timeout});
        return unexpected{health().error()};
      }
      if (auto s = send_locked(*frame, p, deadline); !s) return unexpected{s.error()};
    }
    kick_deferred(false);  // a watch destructor may have queued an XS_UNWATCH meanwhile
    return wait(p, deadline);
  }

  /// Registers `p` under a fresh req_id and returns it (caller holds write_mu_ if sending).
  result<std::uint32_t, xenstore::error> register_pending(xs_pending& p) {
    std::lock_guard l{mu_};
    if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
    if (broken_) return unexpected{fault_};
    const auto id = next_id_locked();
    pending_.emplace(id, &p);
    return id;
  }

  /// Feeds bytes from the server. Returns false once the connection is latched broken.
  bool feed(std::string_view bytes) {
    std::span<const char> in{bytes.data(), bytes.size()};
    while (!in.empty()) {
      in = in.subspan(dec_->feed(in));
      if (dec_->broken()) return latch(xenstore::error{xenstore::errc::broken, xenstore::fault::oversized_len});
      if (!dec_->ready()) continue;
      const auto fault = dispatch(dec_->current());
      dec_->next();
      if (fault != xenstore::fault::none) return latch(xenstore::error{xenstore::errc::broken, fault});
    }
    return true;
  }

  /// Latches the connection failed with `e`: outstanding requests fail, watches end.
  bool latch(xenstore::error e) {
    std::vector<std::shared_ptr<xs_watch_state>> ws;
    xenstore::error why;
    {
      std::lock_guard l{mu_};
      if (!broken_) {
        broken_ = true;
        fault_ = e;
      }
      why = fault_;  // the first failure is the one everybody reports
      for (auto& [id, p] : pending_) {
        p->done = true;
        p->failed = true;
        p->err = fault_;
      }
      pending_.clear();
      detached_.clear();
      for (auto& [tok, w] : watches_) ws.push_back(w);
    }
    cv_.notify_all();
    for (auto& w : ws) w->end(why);
    return false;
  }

  /// Creates a watch queue with a fresh token and routes events for it (no request sent).
  result<std::shared_ptr<xs_watch_state>, xenstore::error> new_watch(std::string_view path, std::size_t capacity) {
    std::lock_guard l{mu_};
    if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
    if (broken_) return unexpected{fault_};
    // Tokens are ours alone, so an event's token names exactly one queue.
    auto w = std::make_shared<xs_watch_state>(std::string(path), "xb" + std::to_string(++next_token_), capacity);
    if (w->efd < 0) return unexpected{xenstore::error{xenstore::errc::enomem, xenstore::fault::io_error, errno}};
    watches_.emplace(w->token, w);
    return w;
  }

  result<std::shared_ptr<xs_watch_state>, xenstore::error> add_watch(std::string_view path, std::size_t capacity) {
    // Routed before XS_WATCH is sent: the first event may overtake our wait for the reply.
    auto made = new_watch(path, capacity);
    if (!made) return unexpected{made.error()};
    auto w = std::move(*made);
    auto r = request(xs_type::watch, {}, {w->path, w->token});
    if (!r) {
      forget_watch(w->token);
      return unexpected{r.error()};
    }
    return w;
  }

  /// The most XS_UNWATCH frames watch destructors may leave queued for a server that does
  /// not read (each at most 16 + 4096 bytes, so at most about 1 MiB). Beyond it a
  /// destructor drops its XS_UNWATCH (counted in dropped_unwatches()); the server then
  /// keeps that watch and its events count as stray.
  static constexpr std::size_t deferred_max = 256;

  /// Sends XS_UNWATCH and ends the watch's queue. With `wait` the reply is awaited and
  /// returned. Without (destructors) it never blocks: the frame is queued, sent at once if
  /// the wire is free and the transport takes it without waiting, else by the next request
  /// (before its own); the connection keeps the request and checks its reply later.
  xenstore::status remove_watch(xs_watch_state& w, bool wait_reply) {
    forget_watch(w.token);
    w.end(xenstore::error{xenstore::errc::closed});
    if (wait_reply) {
      auto r = request(xs_type::unwatch, {}, {w.path, w.token});
      if (!r) return unexpected{r.error()};
      return {};
    }
    auto frame = xs_encode(xs_type::unwatch, 0, 0, {w.path, w.token});
    if (!frame) return unexpected{frame.error()};
    auto owned = std::make_unique<xs_pending>();
    owned->type = xs_type::unwatch;
    {
      std::lock_guard l{mu_};
      if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
      if (broken_) return unexpected{fault_};
      if (deferred_.size() >= deferred_max) {
        ++dropped_unwatches_;
        return {};
      }
      const auto id = next_id_locked();
      pending_.emplace(id, owned.get());
      detached_.emplace(id, std::move(owned));
      xs_put_u32(frame->data() + 4, id);
      deferred_.push_back(std::move(*frame));
    }
    kick_deferred(true);
    return {};
  }

  /// The ring reconnection: fails outstanding requests with reset, resets the transport,
  /// restarts the reader, and registers every watch again that has not ended (a watch
  /// ended by an earlier broken connection stays ended).
  xenstore::status reconnect() {
    if (!t_->can_reconnect()) return unexpected{xenstore::error{xenstore::errc::unsupported}};
    std::unique_lock wl{write_mu_};
    {
      std::lock_guard l{mu_};
      if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
    }
    stop_reader();
    std::vector<std::shared_ptr<xs_watch_state>> ws;
    {
      std::lock_guard l{mu_};
      // close() may have run while we waited for the reader; it has failed everything.
      if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
      for (auto& [id, p] : pending_) {
        p->done = true;
        p->failed = true;
        p->err = xenstore::error{xenstore::errc::reset};
      }
      pending_.clear();
      detached_.clear();
      deferred_.clear();  // UNWATCHes for the old connection, whose watches the server drops
      deferred_sent_ = 0;
      for (auto& [tok, w] : watches_) ws.push_back(w);
    }
    cv_.notify_all();
    if (auto s = t_->reconnect(); !s) {
      latch(s.error());
      return s;
    }
    dec_->reset();
    {
      std::lock_guard l{mu_};
      broken_ = false;
      fault_ = {};
    }
    start();
    // The server dropped our watches; register them again (each fires once, as always).
    for (auto& w : ws) {
      {
        std::lock_guard l{w->mu};
        if (w->ended) continue;
      }
      auto frame = xs_encode(xs_type::watch, 0, 0, {w->path, w->token});
      if (!frame) continue;  // was encodable once, cannot fail now
      xs_pending p;
      p.type = xs_type::watch;
      const auto deadline = request_deadline();
      if (auto s = send_locked(*frame, p, deadline); !s) return s;
      if (auto r = wait(p, deadline); !r) return unexpected{r.error()};
    }
    return {};
  }

  /// Stops the reader, fails what is outstanding with `closed`. Idempotent.
  void shutdown() {
    {
      std::lock_guard l{mu_};
      if (closed_) return;
      closed_ = true;
    }
    // A sender blocked on a full transport holds write_mu_: interrupt it first.
    t_->interrupt();
    std::lock_guard wl{write_mu_};
    stop_reader();
    latch(xenstore::error{xenstore::errc::closed});
  }

  /// Ok while the connection works, else the error that latched it.
  xenstore::status health() const {
    std::lock_guard l{mu_};
    if (closed_) return unexpected{xenstore::error{xenstore::errc::closed}};
    if (broken_) return unexpected{fault_};
    return {};
  }

  std::uint64_t stray_events() const {
    std::lock_guard l{mu_};
    return stray_events_;
  }

  void set_reply_timeout(std::chrono::milliseconds t) {
    std::lock_guard l{mu_};
    reply_timeout_ = t;
  }

  std::uint64_t dropped_unwatches() const {
    std::lock_guard l{mu_};
    return dropped_unwatches_;
  }

 private:
  xenstore::transport_clock::time_point request_deadline() const {
    std::lock_guard l{mu_};
    if (reply_timeout_.count() <= 0) return xenstore::transport_clock::time_point::max();
    return xenstore::transport_clock::now() + reply_timeout_;
  }

  // Caller holds mu_.
  std::uint32_t next_id_locked() {
    std::uint32_t id = next_req_id_++;
    while (pending_.count(id)) id = next_req_id_++;  // skip ids still outstanding after wrap
    return id;
  }

  // Caller holds write_mu_, so reconnect() sees either none or all of this request. Queued
  // XS_UNWATCH frames go first: one of them may be half on the wire already.
  xenstore::status send_locked(std::string& frame, xs_pending& p, xenstore::transport_clock::time_point deadline) {
    if (!flush_deferred_locked(deadline)) {
      latch(xenstore::error{xenstore::errc::broken, xenstore::fault::send_timeout});
      return unexpected{health().error()};
    }
    auto id = register_pending(p);
    if (!id) return unexpected{id.error()};
    xs_put_u32(frame.data() + 4, *id);
    // Failures fail p too, through pending_, and wait() reports them.
    auto n = t_->send_until(frame, deadline);
    if (!n)
      latch(n.error());
    else if (*n < frame.size())
      latch(xenstore::error{xenstore::errc::broken, xenstore::fault::send_timeout});
    return {};
  }

  // Caller holds write_mu_. Sends the queued XS_UNWATCH frames until `deadline` (a past one:
  // only what the transport takes at once). True when none is left; false when the deadline
  // passed first (the rest of a frame begun stays first in the queue) or the transport
  // failed (latched). Only a write_mu_ holder removes from deferred_, so the front frame
  // stays in place while it is sent without mu_ (a deque's push_back moves no element).
  bool flush_deferred_locked(xenstore::transport_clock::time_point deadline) {
    for (;;) {
      std::string_view rest;
      {
        std::lock_guard l{mu_};
        if (closed_ || broken_) {
          deferred_.clear();  // never to be sent; request() reports the state
          deferred_sent_ = 0;
          return true;
        }
        if (deferred_.empty()) return true;
        rest = std::string_view(deferred_.front()).substr(deferred_sent_);
      }
      auto n = t_->send_until(rest, deadline);
      if (!n) {
        latch(n.error());
        return false;
      }
      std::lock_guard l{mu_};
      deferred_sent_ += *n;
      if (*n < rest.size()) return false;
      deferred_.pop_front();
      deferred_sent_ = 0;
    }
  }

  // Sends queued XS_UNWATCH frames if nobody holds the wire, without waiting for room:
  // never blocks on an xenstore::deadline_transport. A holder of write_mu_ runs this after
  // releasing it, so a frame queued while it sent is not left behind. A destructor leaves
  // the frames of a transport without send_until (whose send may block) to the next request.
  void kick_deferred(bool from_destructor) {
    if (from_destructor && !t_->bounded_send()) return;
    {
      std::lock_guard l{mu_};
      if (deferred_.empty()) return;
    }
    std::unique_lock wl{write_mu_, std::try_to_lock};
    if (!wl.owns_lock()) return;  // the holder kicks after its own frame
    (void)flush_deferred_locked(xenstore::transport_clock::time_point::min());
  }

  result<std::string, xenstore::error> wait(xs_pending& p, xenstore::transport_clock::time_point deadline) {
    std::unique_lock l{mu_};
    if (deadline != xenstore::transport_clock::time_point::max()) {
      if (!cv_.wait_until(l, deadline, [&] { return p.done; })) {
        // A server that does not answer is treated like one that answers garbage: the
        // reply could still arrive later, so the connection cannot be trusted any more.
        l.unlock();
        latch(xenstore::error{xenstore::errc::broken, xenstore::fault::reply_timeout});
        l.lock();
      }
    } else {
      cv_.wait(l, [&] { return p.done; });
    }
    if (p.failed) return unexpected{p.err};
    return std::move(p.payload);
  }

  void forget_watch(const std::string& token) {
    std::lock_guard l{mu_};
    watches_.erase(token);
  }

  void stop_reader() {
    if (!reader_.joinable()) return;
    // Relaxed: nothing is published through stop_. receive() keeps returning 0 while
    // interrupted, so the reader re-checks stop_ until it sees this store.
    stop_.store(true, std::memory_order_relaxed);
    t_->interrupt();
    reader_.join();
    stop_.store(false, std::memory_order_relaxed);
    t_->rearm();
  }

  void read_loop() {
    char buf[4096];
    for (;;) {
      // A server that never stops sending must not keep us from stopping.
      if (stop_.load(std::memory_order_relaxed)) return;  // relaxed: see stop_reader()
      auto n = t_->receive(buf);
      if (!n) {
        latch(n.error());
        return;
      }
      if (*n == 0) {
        if (stop_.load(std::memory_order_relaxed)) return;  // relaxed: see stop_reader()
        continue;
      }
      if (!feed(std::string_view(buf, *n))) return;
      // The server reads again (it answered): XS_UNWATCH frames left waiting for room
      // may fit now. Never blocks: try_lock, and no waiting for room.
      kick_deferred(true);
    }
  }

  // Checks one message and hands it to its waiter or watch queue; returns the fault if any.
  xenstore::fault dispatch(const xenstore::message& m) {
    const auto type = m.hdr.kind();
    if (type == xs_type::watch_event) {
      // The client's own event check (xs_parse_event), not wire.hpp's parse_reply: a
      // relative event path may be longer than a relative path a client may send.
      std::string_view path, token;
      if (!xs_parse_event(m.payload, path, token)) return xenstore::fault::malformed_event;
      return deliver_event(path, token);
    }
    if (!xenstore::is_known(type)) return xenstore::fault::bad_type;
    std::unique_lock l{mu_};
    auto it = pending_.find(m.hdr.req_id);
    if (it == pending_.end()) return xenstore::fault::unsolicited_reply;
    xs_pending& p = *it->second;
    if (m.hdr.tx_id != p.tx_id) return xenstore::fault::reply_tx_mismatch;
    if (type == xs_type::error) {
      auto code = xs_parse_error_reply(m.payload);
      if (!code) return code.error();
      p.failed = true;
      p.err = xenstore::error{*code};
    } else if (type != p.type) {
      return xenstore::fault::reply_type_mismatch;
    } else if (auto shape = xenstore::parse_reply(m); !shape) {
      return xs_fault_of(shape.error());
    } else if (!xs_reply_payload_ok(p.type, m.payload)) {
      return xenstore::fault::malformed_payload;
    } else {
      p.payload.assign(m.payload);  // the decoder's buffer is reused for the next message
    }
    p.done = true;
    pending_.erase(it);
    detached_.erase(m.hdr.req_id);  // a destructor's XS_UNWATCH: nobody waits for it
    l.unlock();
    cv_.notify_all();
    return xenstore::fault::none;
  }

  xenstore::fault deliver_event(std::string_view path, std::string_view token) {
    std::shared_ptr<xs_watch_state> w;
    {
      std::lock_guard l{mu_};
      auto it = watches_.find(token);
      // Unknown tokens happen legitimately: an event already sent when we unwatched.
      if (it == watches_.end()) {
        ++stray_events_;
        return xenstore::fault::none;
      }
      w = it->second;
    }
    w->push(path);
    return xenstore::fault::none;
  }

  std::unique_ptr<xs_transport_iface> t_;
  // One request on the wire at a time; reconnect() excludes senders. Timed, so that a
  // request with a deadline stops waiting for a sender stuck on a full transport.
  xs_wire_lock write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint32_t, xs_pending*> pending_;
  std::map<std::uint32_t, std::unique_ptr<xs_pending>> detached_;  // owned fire-and-forget requests
  // XS_UNWATCH frames of destroyed watches not yet on the wire (at most deferred_max), and
  // how much of the first one is; appended under mu_, removed only by write_mu_ holders.
  std::deque<std::string> deferred_;
  std::size_t deferred_sent_{0};
  std::uint64_t dropped_unwatches_{0};
  std::map<std::string, std::shared_ptr<xs_watch_state>, std::less<>> watches_;
  std::uint32_t next_req_id_{1};
  std::uint64_t next_token_{0};
  std::uint64_t stray_events_{0};
  std::chrono::milliseconds reply_timeout_{0};  // 0: wait as long as the server takes
  bool broken_{false};
  bool closed_{false};
  xenstore::error fault_{};
  std::atomic<bool> stop_{false};
  // Reader thread only (or the fuzz harness); 4 KiB buffer, so kept off the stack.
  std::unique_ptr<xenstore::decoder> dec_ = std::make_unique<xenstore::decoder>();
  std::thread reader_;
};

/// Parses a checked XS_GET_PERMS payload.
inline std::vector<xenstore::perm> xs_parse_perms(std::string_view payload) {
  std::vector<xenstore::perm> out;
  for (auto s : xenstore::string_list{payload})
    if (auto p = xenstore::parse_perm(s)) out.push_back(*p);
  return out;
}

template <class R>
struct xs_is_result : std::false_type {};
template <class T>
struct xs_is_result<result<T, xenstore::error>> : std::true_type {};

}  // namespace detail

namespace xenstore {

/// A registered watch: its events arrive in a bounded queue whose fd() polls readable
/// while events are queued. Destroying it unregisters the watch (XS_UNWATCH).
class watch {
 public:
  watch(xenstore::watch&&) noexcept = default;
  xenstore::watch& operator=(xenstore::watch&& o) noexcept {
    if (this != &o) {
      reset();
      conn_ = std::move(o.conn_);
      state_ = std::move(o.state_);
    }
    return *this;
  }
  watch(const xenstore::watch&) = delete;
  xenstore::watch& operator=(const xenstore::watch&) = delete;
  ~watch() { reset(); }

  /// A descriptor that polls readable (POLLIN) while next() would not block.
  int fd() const noexcept { return state_ ? state_->efd : -1; }
  /// The watched path, as registered.
  const std::string& path() const noexcept { return state_->path; }
  /// The token this client chose for the watch.
  const std::string& token() const noexcept { return state_->token; }

  /// The next event, waiting up to `timeout` (negative: forever). Fails with timeout, or
  /// with the connection's error once the watch ended and its queue is empty.
  result<xenstore::watch_event, xenstore::error> next(std::chrono::milliseconds timeout = std::chrono::milliseconds{
                                                          -1}) {
    if (!state_) return unexpected{xenstore::error{xenstore::errc::closed}};
    auto& s = *state_;
    for (;;) {
      {
        std::lock_guard l{s.mu};
        // Events are dropped only while the queue is full, so a loss always has a queued
        // event to ride on: the first one taken after it.
        if (!s.queue.empty()) {
          xenstore::watch_event ev;
          ev.path = s.pop_locked();
          ev.lost = std::exchange(s.lost_pending, 0);
          ++s.stats.delivered;
          s.settle_locked();
          return ev;
        }
        if (s.ended) return unexpected{s.end_error};
      }
      pollfd p{s.efd, POLLIN, 0};
      const int t = timeout.count() < 0 ? -1 : static_cast<int>(timeout.count());
      const int r = ::poll(&p, 1, t);
      if (r == 0) return unexpected{xenstore::error{xenstore::errc::timeout}};
    }
  }
  /// The next event if one is queued, else fails with timeout at once.
  result<xenstore::watch_event, xenstore::error> try_next() { return next(std::chrono::milliseconds{0}); }

  /// Counters of this watch's queue.
  xenstore::watch_stats stats() const {
    std::lock_guard l{state_->mu};
    return state_->stats;
  }

  /// Unregisters now (the destructor does it otherwise); the queue ends with `closed`.
  xenstore::status unwatch() {
    if (!state_) return {};
    auto s = conn_->remove_watch(*state_, true);
    conn_.reset();
    return s;
  }

 private:
  friend class xenstore::client;
  watch(std::shared_ptr<xenbus::detail::xs_conn> c, std::shared_ptr<xenbus::detail::xs_watch_state> s)
      : conn_{std::move(c)}, state_{std::move(s)} {}
  void reset() noexcept {
    if (conn_ && state_) (void)conn_->remove_watch(*state_, false);
    conn_.reset();
    state_.reset();
  }
  std::shared_ptr<xenbus::detail::xs_conn> conn_;
  std::shared_ptr<xenbus::detail::xs_watch_state> state_;
};

/// A xenstore client. Every call is synchronous and thread-safe; one reader thread matches
/// replies to requests by req_id and queues watch events. Anything malformed from the
/// server latches the connection broken: later calls fail with that error.
class client {
 public:
  /// Starts a client over `transport` (an xenstore::fd_transport, xenstore::ring_transport, ...).
  template <xenstore::transport T>
  explicit client(T transport)
      : conn_{std::make_shared<xenbus::detail::xs_conn>(
            std::make_unique<xenbus::detail::xs_transport_box<T>>(std::move(transport)))} {
    conn_->start();
  }

  /// Connects to xenstored's unix socket (default: $XENSTORED_PATH as libxenstore does).
  static result<xenstore::client, xenstore::error> connect(std::string_view socket_path = {}) {
    auto t = xenstore::fd_transport::connect_unix(socket_path);
    if (!t) return unexpected{t.error()};
    return xenstore::client{std::move(*t)};
  }
  /// As libxenstore's xs_open(0): the socket if it connects, else /dev/xen/xenbus.
  static result<xenstore::client, xenstore::error> open() {
    auto c = connect();
    if (c) return c;
    auto d = open_device();
    if (d) return d;
    return unexpected{c.error()};  // the socket's failure says more off Xen
  }
  /// Opens /dev/xen/xenbus (in a Xen domain).
  static result<xenstore::client, xenstore::error> open_device(const char* path = xenstore::xenbus_device) {
    auto t = xenstore::fd_transport::open_device(path);
    if (!t) return unexpected{t.error()};
    return xenstore::client{std::move(*t)};
  }

  /// A moved-from client may only be destroyed.
  client(xenstore::client&&) noexcept = default;
  xenstore::client& operator=(xenstore::client&&) = delete;
  ~client() {
    if (conn_) conn_->shutdown();  // watches still alive then end with `closed`
  }

  /// The data of a node.
  result<std::string, xenstore::error> read(std::string_view path, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    return conn_->request(xenbus::detail::xs_type::read, tx, {path});
  }
  /// Writes a node's data, creating it (and missing parents) as needed.
  xenstore::status write(std::string_view path, std::string_view value, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    return done(conn_->request(xenbus::detail::xs_type::write, tx, {path, value}, true));
  }
  /// Creates a node with empty data if it does not exist.
  xenstore::status mkdir(std::string_view path, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    return done(conn_->request(xenbus::detail::xs_type::mkdir, tx, {path}));
  }
  /// Removes a node and everything under it.
  xenstore::status rm(std::string_view path, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    return done(conn_->request(xenbus::detail::xs_type::rm, tx, {path}));
  }
  /// The most bytes of names (each with its NUL) a listing in parts gathers: beyond it
  /// directory() fails with e2big. 4 MiB: about 1000 DIRECTORY_PART round trips.
  static constexpr std::size_t directory_max_bytes = std::size_t{4} << 20;
  /// How often a listing in parts starts over because the directory changed meanwhile
  /// (its generation moved) before directory() gives up with eagain.
  static constexpr unsigned directory_max_restarts = 16;

  /// The names of a node's children. A list too long for one reply (the server answers
  /// E2BIG) is read in parts with XS_DIRECTORY_PART, as libxenstore's xs_directory does,
  /// and read again from the start when the directory changed between parts.
  result<std::vector<std::string>, xenstore::error> directory(std::string_view path, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    auto r = conn_->request(xenbus::detail::xs_type::directory, tx, {path});
    if (!r && r.error() == xenstore::errc::e2big) return directory_in_parts(path, tx);
    if (!r) return unexpected{r.error()};
    return split_names(*r);
  }
  /// A node's permissions: owner first, then per-domain entries.
  result<std::vector<xenstore::perm>, xenstore::error> get_perms(std::string_view path, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path)) return bad();
    auto r = conn_->request(xenbus::detail::xs_type::get_perms, tx, {path});
    if (!r) return unexpected{r.error()};
    return xenbus::detail::xs_parse_perms(*r);
  }
  /// Replaces a node's permissions (at least one entry: the owner).
  xenstore::status set_perms(std::string_view path, std::span<const xenstore::perm> perms, xenstore::tx tx = {}) {
    if (!xenbus::detail::xs_valid_path(path) || perms.empty()) return bad();
    std::string payload(path);
    payload.push_back('\0');
    for (const auto& p : perms) {
      char text[6];
      payload.append(text, xenstore::format_perm(p, text));
      payload.push_back('\0');
    }
    return done(conn_->request(xenbus::detail::xs_type::set_perms, tx, {payload}, true));
  }
  /// The home path of a domain (/local/domain/<domid>).
  result<std::string, xenstore::error> get_domain_path(std::uint16_t domid) {
    const xenstore::decimal d{domid};
    auto r = conn_->request(xenbus::detail::xs_type::get_domain_path, {}, {d.view()});
    if (!r) return unexpected{r.error()};
    r->pop_back();  // the checked trailing NUL
    return r;
  }

  /// Starts a transaction.
  result<xenstore::tx, xenstore::error> transaction_start() {
    auto r = conn_->request(xenbus::detail::xs_type::transaction_start, {}, {""});
    if (!r) return unexpected{r.error()};
    // Checked by the reader: decimal, non-zero, fits 32 bits, NUL-terminated.
    const auto id = xenstore::parse_decimal(std::string_view(*r).substr(0, r->size() - 1));
    return xenstore::tx{static_cast<std::uint32_t>(id.value_or(0))};
  }
  /// Commits (`commit`) or aborts a transaction; a commit may fail with eagain (conflict).
  xenstore::status transaction_end(xenstore::tx tx, bool commit) {
    return done(conn_->request(xenbus::detail::xs_type::transaction_end, tx, {commit ? "T" : "F"}));
  }

  /// Runs fn(xenstore::tx) -> result<T, xenstore::error> in a transaction and commits; when the commit
  /// (or fn) fails with eagain, retries, at most `max_attempts` times in all.
  template <class F>
  auto transact(F&& fn, unsigned max_attempts = 8) -> std::invoke_result_t<F&, xenstore::tx> {
    using R = std::invoke_result_t<F&, xenstore::tx>;
    static_assert(xenbus::detail::xs_is_result<R>::value || std::is_same_v<R, xenstore::status>,
                  "transact: fn must return xenbus::result<T, xenstore::error> (or xenstore::status)");
    for (unsigned attempt = 0; attempt < max_attempts; ++attempt) {
      auto tx = transaction_start();
      if (!tx) return unexpected{tx.error()};
      R r = fn(*tx);
      if (!r) {
        (void)transaction_end(*tx, false);
        if (r.error() == xenstore::errc::eagain) continue;
        return r;
      }
      auto end = transaction_end(*tx, true);
      if (end) return r;
      if (end.error() != xenstore::errc::eagain) return unexpected{end.error()};
    }
    return unexpected{xenstore::error{xenstore::errc::eagain}};
  }

  /// Registers a watch on `path` (its subtree); events queue up to `capacity` paths.
  /// The server fires it once at registration.
  result<xenstore::watch, xenstore::error> watch(std::string_view path, std::size_t capacity = 64) {
    if (!xenbus::detail::xs_valid_path(path, true)) return bad();
    auto w = conn_->add_watch(path, capacity);
    if (!w) return unexpected{w.error()};
    return xenstore::watch{conn_, std::move(*w)};
  }

  /// XS_RESET_WATCHES: the server drops every watch and transaction of this connection,
  /// including those a previous user of it left (a kexec'd kernel's, on a shared ring).
  /// Watches of this client still alive get no further events: destroy them first.
  xenstore::status reset_watches() { return done(conn_->request(xenbus::detail::xs_type::reset_watches, {}, {""})); }

  /// Ring transports: the xenstore-ring.txt reconnection. Outstanding requests fail with
  /// reset, transactions are gone, watches are registered again. Sockets: unsupported.
  xenstore::status reconnect() { return conn_->reconnect(); }

  /// Ok while the connection works, else the error that latched it broken (or closed).
  xenstore::status health() const { return conn_->health(); }
  /// Bounds every request (0, the default: no bound): waiting to send, sending and waiting
  /// for the reply end by one deadline this long after the call. A server that takes no
  /// bytes meanwhile latches the connection broken with fault send_timeout, one that does
  /// not answer with fault reply_timeout: the caller never hangs on a server that stopped
  /// reading or answering, and a late reply cannot be mistaken for another. Destroying a
  /// watch never blocks, with or without a timeout (on transports with send_until).
  void set_reply_timeout(std::chrono::milliseconds t) { conn_->set_reply_timeout(t); }
  /// Watch events that named no live watch (e.g. in flight while unwatching).
  std::uint64_t stray_events() const { return conn_->stray_events(); }
  /// XS_UNWATCHes of destroyed watches dropped because xenbus::detail::xs_conn::deferred_max were
  /// already waiting for a server that did not read (that server keeps those watches).
  std::uint64_t dropped_unwatches() const { return conn_->dropped_unwatches(); }
  /// Shuts the connection down now; every later call fails with closed.
  void close() { conn_->shutdown(); }

 private:
  static unexpected<xenstore::error> bad() { return unexpected{xenstore::error{xenstore::errc::bad_request}}; }
  static std::vector<std::string> split_names(std::string_view list) {
    std::vector<std::string> names;
    for (auto n : xenstore::string_list{list})
      if (!n.empty()) names.emplace_back(n);  // only the lone-NUL empty list has an empty one
    return names;
  }
  // libxenstore's xs_directory_part: ask from byte offset `names.size()` of the list; the
  // first part's generation must stay the same in every later part, else start over.
  result<std::vector<std::string>, xenstore::error> directory_in_parts(std::string_view path, xenstore::tx tx) {
    std::string names;  // at most directory_max_bytes
    std::string generation;
    unsigned restarts = 0;
    for (;;) {
      const xenstore::decimal offset{names.size()};
      auto r = conn_->request(xenbus::detail::xs_type::directory_part, tx, {path, offset.view()});
      if (!r) {
        // A server without DIRECTORY_PART (oxenstored): the list is simply too big.
        if (r.error() == xenstore::errc::enosys) return unexpected{xenstore::error{xenstore::errc::e2big}};
        return unexpected{r.error()};
      }
      const auto part = xenbus::detail::xs_split_dir_part(*r);  // checked by the reader
      if (names.empty() && generation.empty()) {
        generation.assign(part.generation);
      } else if (part.generation != generation) {
        if (++restarts > directory_max_restarts) return unexpected{xenstore::error{xenstore::errc::eagain}};
        names.clear();
        generation.clear();
        continue;
      }
      // Every name fits a part (a name is shorter than a path), so a server that sends
      // neither names nor the end would have us ask forever.
      if (part.names.empty() && !part.last) {
        conn_->latch(xenstore::error{xenstore::errc::broken, xenstore::fault::malformed_payload});
        return unexpected{xenstore::error{xenstore::errc::broken, xenstore::fault::malformed_payload}};
      }
      if (part.names.size() > directory_max_bytes - names.size())
        return unexpected{xenstore::error{xenstore::errc::e2big}};
      names.append(part.names);
      if (part.last) return split_names(names);
    }
  }
  static xenstore::status done(const result<std::string, xenstore::error>& r) {
    if (!r) return unexpected{r.error()};
    return {};
  }
  std::shared_ptr<xenbus::detail::xs_conn> conn_;
};

}  // namespace xenstore

// The names before 0.2.0.
using xs_client [[deprecated("use xenbus::xenstore::client")]] = xenstore::client;
using xs_watch [[deprecated("use xenbus::xenstore::watch")]] = xenstore::watch;
using xs_tx [[deprecated("use xenbus::xenstore::tx")]] = xenstore::tx;
using xs_watch_event [[deprecated("use xenbus::xenstore::watch_event")]] = xenstore::watch_event;
using xs_watch_stats [[deprecated("use xenbus::xenstore::watch_stats")]] = xenstore::watch_stats;
using xs_perm [[deprecated("use xenbus::xenstore::perm")]] = xenstore::perm;
using xs_access [[deprecated("use xenbus::xenstore::access")]] = xenstore::access;

XENBUS_END_NAMESPACE
