// [posix] Xenstore socket server: a store served on a unix socket by one epoll loop, embeddable or as xenbus-xenstored.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// Counters a server keeps about its clients (read them after run() returns, or from
/// the loop thread).
struct server_stats {
  std::uint64_t accepted = 0;
  std::uint64_t disconnected = 0;
  std::uint64_t broken_streams = 0;       ///< clients dropped for breaking the framing
  std::uint64_t partial_disconnects = 0;  ///< clients gone in the middle of a message
  std::uint64_t refused = 0;              ///< connections closed at once: limit reached or no descriptor
  std::uint64_t accept_pauses = 0;        ///< times accepting paused, out of descriptors and reserve
  std::size_t peak_held_bytes = 0;        ///< most output one connection held (store::held_bytes)
};

/// Connections a server's loop serves besides its socket clients: xenstore::ring_service
/// (the domains' rings). The loop polls the source's descriptors and tells it when the
/// store queued output for a connection that is not a socket client. All calls come from
/// the loop's thread.
class connection_source {
 public:
  /// Descriptors to poll for reading: fills `out`, returns how many (at most out.size()).
  virtual std::size_t fds(std::span<int> out) const = 0;
  /// `fd`, one of fds(), is readable.
  virtual void readable(int fd) = 0;
  /// The store queued output for `id`: true if the connection is this source's (it sends).
  virtual bool flush(conn_id id) = 0;
  /// Work left from a bounded step: the loop calls run() before it sleeps again.
  virtual bool busy() const noexcept = 0;
  virtual void run() = 0;

 protected:
  connection_source() = default;
  connection_source(const connection_source&) = default;
  connection_source& operator=(const connection_source&) = default;
  ~connection_source() = default;
};

/// Serves one store on a unix socket. Every client of the socket is privileged (domain 0),
/// as with xenstored's own socket. One thread runs the loop; the store is touched only
/// from it.
class server {
 public:
  /// Connections served at once unless set_max_connections() says otherwise.
  static constexpr std::size_t default_max_connections = 1024;

  explicit server(store& s) : store_{s} {}
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() {
    for (auto& c : clients_)
      if (c) ::close(c->fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (reserve_fd_ >= 0) ::close(reserve_fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  /// Binds and listens on `path` (an existing socket file there is replaced).
  /// Returns an errno value on failure.
  result<void, int> listen(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) return unexpected{ENAMETOOLONG};
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (epoll_fd_ < 0) epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return unexpected{errno};
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return unexpected{errno};
    ::unlink(path.c_str());
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return unexpected{errno};
    path_ = path;
    if (::listen(listen_fd_, 128) != 0) return unexpected{errno};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) return unexpected{errno};
    // A spare descriptor: closed when accept fails for want of one (EMFILE, ENFILE), so
    // that the pending connection can be accepted and closed instead of staying queued
    // and waking the loop again at once.
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return {};
  }

  /// Runs the loop until `stop_fd` becomes readable (an eventfd or pipe the caller owns).
  result<void, int> run(int stop_fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = stop_tag;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd, &ev) != 0) return unexpected{errno};
    std::vector<epoll_event> events(64);
    // After activity, poll without sleeping for spin_ before blocking again: the next
    // request of a busy client then finds the loop awake (no wakeup on the server side).
    auto last_activity = std::chrono::steady_clock::now() - spin_;
    for (;;) {
      const bool spinning =
          (spin_.count() > 0 && std::chrono::steady_clock::now() - last_activity < spin_) || sources_busy();
      int timeout = spinning ? 0 : -1;
      if (accept_paused_) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= resume_accept_)
          resume_accepting();
        else if (!spinning)
          timeout = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(resume_accept_ - now).count());
      }
      const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
      if (n < 0) {
        if (errno == EINTR) continue;
        return unexpected{errno};
      }
      if (n == 0) {
        run_sources();
        continue;
      }
      if (spin_.count() > 0) last_activity = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) {
        const auto tag = events[static_cast<std::size_t>(i)].data.u64;
        const auto what = events[static_cast<std::size_t>(i)].events;
        if (tag == stop_tag) {
          ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, stop_fd, nullptr);
          return {};
        }
        if (tag == listen_tag) {
          accept_all();
          continue;
        }
        if (is_source_tag(tag)) {
          on_source(tag);
          continue;
        }
        client* c = find(tag);
        if (!c) continue;  // closed earlier in this batch
        if (what & (EPOLLIN | EPOLLHUP | EPOLLERR))
          on_readable(*c);
        else if (what & EPOLLOUT)
          flush(*c);
      }
      run_sources();
    }
  }

  /// Serves `src`'s connections in the same loop (before run(); `src` must outlive the
  /// server or its loop). At most 16 sources, each with at most 4 descriptors.
  result<void, int> add_source(connection_source& src) {
    if (sources_.size() >= max_sources) return unexpected{EMFILE};
    if (epoll_fd_ < 0) epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return unexpected{errno};
    int fds[4];
    const std::size_t n = src.fds(fds);
    for (std::size_t i = 0; i < n && i < 4; ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = source_tag(sources_.size(), i);
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fds[i], &ev) != 0) return unexpected{errno};
    }
    sources_.push_back(&src);
    return {};
  }

  /// Busy-poll for this long after each burst of activity before sleeping in epoll_wait
  /// (0, the default: never). Trades CPU for latency when clients talk back to back.
  void set_spin(std::chrono::microseconds d) noexcept { spin_ = d; }

  /// At most `n` clients at once (at least 1); a connection beyond is accepted and closed
  /// at once, and the log hears of it. Each connection's memory is bounded by the store's
  /// limits, so this bounds the memory of all of them together.
  void set_max_connections(std::size_t n) noexcept { max_connections_ = n > 0 ? n : 1; }
  std::size_t max_connections() const noexcept { return max_connections_; }

  /// Where the server reports trouble (connection limit reached, out of descriptors): one
  /// line, no newline. None by default.
  void set_log(std::function<void(std::string_view)> log) { log_ = std::move(log); }

  const server_stats& stats() const noexcept { return stats_; }
  std::size_t clients() const noexcept { return live_; }
  const std::string& path() const noexcept { return path_; }

 private:
  static constexpr std::uint64_t listen_tag = ~std::uint64_t{0};
  static constexpr std::uint64_t stop_tag = ~std::uint64_t{0} - 1;
  // Sources' descriptors: 64 tags below stop_tag (client tags have a sequence number in the
  // high half that would need 2^32 - 1 connections to get there).
  static constexpr std::size_t max_sources = 16;
  static constexpr std::uint64_t source_tag_base = stop_tag - 1 - 4 * max_sources;
  static constexpr std::uint64_t source_tag(std::size_t source, std::size_t fd) noexcept {
    return source_tag_base + 4 * source + fd;
  }
  static constexpr bool is_source_tag(std::uint64_t tag) noexcept {
    return tag >= source_tag_base && tag < source_tag_base + 4 * max_sources;
  }

  void on_source(std::uint64_t tag) {
    const auto k = static_cast<std::size_t>(tag - source_tag_base);
    if (k / 4 >= sources_.size()) return;
    connection_source* src = sources_[k / 4];
    int fds[4];
    const std::size_t n = src->fds(fds);
    if (k % 4 < n) src->readable(fds[k % 4]);
  }
  bool sources_busy() const noexcept {
    for (auto* s : sources_)
      if (s->busy()) return true;
    return false;
  }
  /// Lets the sources finish bounded work, then sends what the store queued everywhere.
  void run_sources() {
    for (auto* s : sources_)
      if (s->busy()) s->run();
    flush_writable();
  }

  struct client {
    int fd = -1;
    conn_id id;
    std::uint64_t tag = 0;
    std::unique_ptr<decoder> dec = std::make_unique<decoder>();
    /// Bytes read but not yet fed (while the store is not accepting). Bound: one read (16
    /// KiB): reading is armed only while the store accepts, and then `in` is empty.
    std::string in;
    bool want_out = false;  ///< EPOLLOUT armed
    bool reading = true;    ///< EPOLLIN armed
  };

  client* find(std::uint64_t tag) {
    const auto slot = static_cast<std::size_t>(tag & 0xffffffffu);
    if (slot >= clients_.size() || !clients_[slot] || clients_[slot]->tag != tag) return nullptr;
    return clients_[slot].get();
  }

  void log(std::string_view line) {
    if (log_) log_(line);
  }

  /// Accepts one pending connection and closes it (refused); false with errno set when
  /// none was taken.
  bool accept_and_close() {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    ::close(fd);
    ++stats_.refused;
    return true;
  }

  /// accept() failed with `err`: nothing pending (EAGAIN), a connection that went away
  /// (ECONNABORTED) or an interruption is no trouble. Anything else would leave the
  /// connection queued and the socket readable: handle it rather than spin.
  void accept_failed(int err) {
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return;
    if (err == EMFILE || err == ENFILE) return out_of_descriptors(err);
    pause_accepting();  // ENOBUFS, ENOMEM and the like: retry in a while
  }

  void pause_accepting() {
    ++stats_.accept_pauses;
    accept_paused_ = true;
    resume_accept_ = std::chrono::steady_clock::now() + accept_pause;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  }

  /// accept() failed for want of a descriptor: the pending connection would stay queued
  /// and wake the loop at once, forever. Spend the reserve descriptor to take it off the
  /// queue and close it; without a reserve, stop watching the socket for a while.
  void out_of_descriptors(int err) {
    if (!fd_shortage_) {
      fd_shortage_ = true;
      log(std::string{"out of file descriptors ("} + std::strerror(err) +
          "): refusing new connections until some close");
    }
    if (reserve_fd_ >= 0) {
      ::close(reserve_fd_);
      reserve_fd_ = -1;
      while (accept_and_close()) {
      }
      const int why = errno;  // why the draining stopped
      reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (reserve_fd_ >= 0 && (why == EAGAIN || why == EWOULDBLOCK)) return;  // queue empty
    }
    // No reserve to spend: poll the socket again in a while instead of spinning.
    pause_accepting();
  }

  void resume_accepting() {
    accept_paused_ = false;
    if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }

  void accept_all() {
    for (;;) {
      if (live_ >= max_connections_) {
        // Full: take each newcomer off the queue and close it (its peer sees EOF).
        if (!accept_and_close()) return accept_failed(errno);
        if (!at_limit_) {
          at_limit_ = true;
          log("connection limit (" + std::to_string(max_connections_) +
              ") reached: refusing new connections until some close");
        }
        continue;
      }
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return accept_failed(errno);
      fd_shortage_ = false;
      if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      std::size_t slot = 0;
      while (slot < clients_.size() && clients_[slot]) ++slot;
      if (slot == clients_.size()) clients_.emplace_back();
      auto c = std::make_unique<client>();
      c->fd = fd;
      c->id = store_.connect(0, true);
      c->tag = (++tag_seq_ << 32) | slot;
      if (by_conn_.size() <= c->id.index) by_conn_.resize(c->id.index + 1, nullptr);
      by_conn_[c->id.index] = c.get();
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = c->tag;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        store_.disconnect(c->id);
        by_conn_[c->id.index] = nullptr;
        ::close(fd);
        continue;
      }
      clients_[slot] = std::move(c);
      ++stats_.accepted;
      ++live_;
    }
  }

  void drop(client& c) {
    if (c.dec->pending() != 0 || !c.in.empty()) ++stats_.partial_disconnects;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    store_.disconnect(c.id);
    by_conn_[c.id.index] = nullptr;
    const auto slot = static_cast<std::size_t>(c.tag & 0xffffffffu);
    ++stats_.disconnected;
    --live_;
    if (at_limit_ && live_ < max_connections_) {
      at_limit_ = false;
      log("below the connection limit again: accepting");
    }
    clients_[slot].reset();
  }

  /// Feeds buffered input to the store while it accepts; false if the client broke.
  bool process(client& c) {
    std::size_t used = 0;
    while (used < c.in.size() && store_.accepting(c.id)) {
      used += c.dec->feed(std::string_view{c.in}.substr(used));
      if (c.dec->broken()) {
        ++stats_.broken_streams;
        return false;
      }
      if (c.dec->ready()) {
        store_.handle(c.id, c.dec->current());
        c.dec->next();
        note_held(c);
      }
    }
    c.in.erase(0, used);
    return true;
  }

  void on_readable(client& c) {
    char buf[16384];
    const ssize_t n = ::read(c.fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop(c);
    if (n < 0) return;
    c.in.append(buf, static_cast<std::size_t>(n));
    if (!process(c)) return drop(c);
    flush(c);
  }

  void set_events(client& c, bool in, bool out) {
    if (c.reading == in && c.want_out == out) return;
    c.reading = in;
    c.want_out = out;
    epoll_event ev{};
    ev.events = (in ? EPOLLIN : 0u) | (out ? EPOLLOUT : 0u);
    ev.data.u64 = c.tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void note_held(const client& c) {
    const std::size_t h = store_.held_bytes(c.id);
    if (h > stats_.peak_held_bytes) stats_.peak_held_bytes = h;
  }

  /// Writes what the store queued; re-arms reading once the store accepts again.
  void flush(client& c) {
    note_held(c);
    for (;;) {
      // Up to 16 chunks (64 KiB) in one gathering write.
      std::string_view runs[16];
      const std::size_t k = store_.output_spans(c.id, runs);
      if (k == 0) break;
      ssize_t n;
      if (k == 1) {  // the common case, a reply or two: plain send
        n = ::send(c.fd, runs[0].data(), runs[0].size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        iovec iov[16];
        for (std::size_t i = 0; i < k; ++i) iov[i] = iovec{const_cast<char*>(runs[i].data()), runs[i].size()};
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = k;
        n = ::sendmsg(c.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return drop(c);
      }
      store_.consume(c.id, static_cast<std::size_t>(n));
    }
    // Input held back by flow control can go on now that output drained.
    if (!c.in.empty() && store_.accepting(c.id)) {
      if (!process(c)) return drop(c);
      if (!store_.output(c.id).empty()) return flush(c);
    }
    const bool pending_out = !store_.output(c.id).empty();
    set_events(c, store_.accepting(c.id), pending_out);
  }

  /// Flushes every connection that got output; repeats because flushing one may release
  /// held-back requests whose watch events land on others.
  void flush_writable() {
    for (;;) {
      writable_.clear();
      store_.take_writable(writable_);
      if (writable_.empty()) return;
      for (auto id : writable_) {
        client* c = id.index < by_conn_.size() ? by_conn_[id.index] : nullptr;
        if (c && c->id == id) {
          flush(*c);
          continue;
        }
        for (auto* s : sources_)
          if (s->flush(id)) break;
      }
    }
  }

  store& store_;
  int epoll_fd_ = -1;
  int listen_fd_ = -1;
  std::string path_;
  std::vector<std::unique_ptr<client>> clients_;
  std::vector<client*> by_conn_;
  std::vector<conn_id> writable_;
  std::vector<connection_source*> sources_;
  std::uint64_t tag_seq_ = 0;
  std::size_t live_ = 0;
  server_stats stats_;
  std::chrono::microseconds spin_{0};
  static constexpr std::chrono::milliseconds accept_pause{100};
  std::size_t max_connections_ = default_max_connections;
  std::function<void(std::string_view)> log_;
  int reserve_fd_ = -1;         ///< spare descriptor for out_of_descriptors()
  bool fd_shortage_ = false;    ///< logged running out of descriptors, not accepted since
  bool at_limit_ = false;       ///< logged reaching max_connections_, not below it since
  bool accept_paused_ = false;  ///< listen socket out of epoll until resume_accept_
  std::chrono::steady_clock::time_point resume_accept_{};
};

/// A server with its own store, run on a background thread until destroyed: for tests
/// and programs that embed xenstore in-process.
class server_thread {
 public:
  /// Starts serving on `path`; check ok() (or error()) before use. `configure`, if given,
  /// sets the server up (connection limit, log) before its loop starts.
  explicit server_thread(std::string path, limits l = {}, const std::function<void(server&)>& configure = {})
      : store_{std::make_unique<store>(l)}, server_{std::make_unique<server>(*store_)} {
    if (configure) configure(*server_);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) {
      error_ = errno;
      return;
    }
    if (auto r = server_->listen(path); !r) {
      error_ = r.error();
      return;
    }
    thread_ = std::thread([this] { (void)server_->run(stop_fd_); });
  }
  ~server_thread() {
    stop();
    if (stop_fd_ >= 0) ::close(stop_fd_);
  }
  server_thread(const server_thread&) = delete;
  server_thread& operator=(const server_thread&) = delete;

  bool ok() const noexcept { return error_ == 0; }
  int error() const noexcept { return error_; }
  const std::string& path() const noexcept { return server_->path(); }

  /// Stops and joins the loop; afterwards store() and stats() may be inspected.
  void stop() {
    if (!thread_.joinable()) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  /// Only after stop(): the loop thread owns the store while running.
  store& get_store() noexcept { return *store_; }
  const server_stats& stats() const noexcept { return server_->stats(); }

 private:
  std::unique_ptr<store> store_;
  std::unique_ptr<server> server_;
  int stop_fd_ = -1;
  int error_ = 0;
  std::thread thread_;
};

}  // namespace xenstore
XENBUS_END_NAMESPACE
