// [posix] device_store over our xenstore client (xenstore::client): a socket, /dev/xen/xenbus or a xenstore ring.
#pragma once

#include <xenbus/hosted/device/store.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/posix/xenstore/client.hpp>

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE

/// An xenstore::client as a device_store. The client keeps one queue per watch; this adapter
/// names each by the driver's token and waits on all of their fds at once.
class client_store {
 public:
  explicit client_store(xenstore::client c) : c_{std::move(c)} {}
  client_store(client_store&& o) noexcept
      : c_{std::move(o.c_)}, watches_{std::move(o.watches_)}, next_{o.next_}, ep_{std::exchange(o.ep_, -1)} {}
  client_store& operator=(client_store&&) = delete;
  ~client_store() {
    if (ep_ >= 0) ::close(ep_);
  }
  /// Connects to a xenstored socket ($XENSTORED_PATH by default), as libxenstore does.
  static result<client_store, store_error> connect(std::string_view socket_path = {}) {
    auto c = xenstore::client::connect(socket_path);
    if (!c) return unexpected{store_error{for_driver(c.error())}};
    return client_store{std::move(*c)};
  }

  xenstore::client& client() noexcept { return c_; }

  result<std::string, store_error> read(store_tx tx, std::string_view path) {
    return wrap(c_.read(path, xenstore::tx{tx}));
  }
  result<void, store_error> write(store_tx tx, std::string_view path, std::string_view value) {
    return wrap(c_.write(path, value, xenstore::tx{tx}));
  }
  result<void, store_error> remove(store_tx tx, std::string_view path) { return wrap(c_.rm(path, xenstore::tx{tx})); }
  result<std::vector<std::string>, store_error> directory(store_tx tx, std::string_view path) {
    return wrap(c_.directory(path, xenstore::tx{tx}));
  }
  result<void, store_error> set_perms(store_tx tx, std::string_view path, std::span<const xenstore::perm> perms) {
    return wrap(c_.set_perms(path, perms, xenstore::tx{tx}));
  }
  result<store_tx, store_error> transaction_start() {
    auto t = c_.transaction_start();
    if (!t) return unexpected{store_error{for_driver(t.error())}};
    return store_tx{t->id};
  }
  result<void, store_error> transaction_end(store_tx tx, bool commit) {
    return wrap(c_.transaction_end(xenstore::tx{tx}, commit));
  }
  result<void, store_error> watch(std::string_view path, std::string_view token) {
    auto w = c_.watch(path);
    if (!w) return unexpected{store_error{for_driver(w.error())}};
    if (ep_ >= 0) {
      epoll_event e{};
      e.events = EPOLLIN;
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, w->fd(), &e) != 0) return unexpected{store_error{store_errc::broken}};
    }
    watches_.push_back(entry{std::string(token), std::move(*w)});
    return {};
  }
  result<void, store_error> unwatch(std::string_view path, std::string_view token) {
    for (auto it = watches_.begin(); it != watches_.end(); ++it)
      if (it->token == token && it->w.path() == path) {
        forget(*it);
        watches_.erase(it);  // the watch's destructor sends XS_UNWATCH
        return {};
      }
    return unexpected{store_error{store_errc::enoent}};
  }

  /// One descriptor for every watch of this store: it polls readable (level-triggered) while
  /// any watch has an event queued, so an event loop waits on it alone. Created on first
  /// use (an epoll set of the watches' eventfds); -1 if the kernel refuses one.
  int watch_fd() {
    if (ep_ >= 0) return ep_;
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return -1;
    for (const entry& e : watches_) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      (void)::epoll_ctl(ep_, EPOLL_CTL_ADD, e.w.fd(), &ev);
    }
    return ep_;
  }

  /// XS_RESET_WATCHES: unregisters this store's own watches, then has the server drop every
  /// watch and transaction left on the connection (a previous kernel's, on a shared ring).
  result<void, store_error> reset_watches() {
    for (entry& e : watches_) forget(e);
    watches_.clear();
    return wrap(c_.reset_watches());
  }

  result<watch_event, store_error> next_watch_event(int timeout_ms) {
    for (bool waited = false;; waited = true) {
      // Take from the queues round-robin, so one busy watch cannot starve the others.
      for (std::size_t k = 0; k < watches_.size(); ++k) {
        entry& e = watches_[(next_ + k) % watches_.size()];
        auto ev = e.w.try_next();
        if (ev) {
          next_ = (next_ + k + 1) % watches_.size();
          return watch_event{std::move(ev->path), e.token, ev->lost};
        }
        if (ev.error().code != xenstore::errc::timeout) return unexpected{store_error{for_driver(ev.error())}};
      }
      if (waited || timeout_ms == 0 || watches_.empty()) return unexpected{store_error{store_errc::timeout}};
      std::vector<pollfd> fds;
      for (const entry& e : watches_) fds.push_back(pollfd{e.w.fd(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return unexpected{store_error{store_errc::timeout}};
    }
  }

  /// A xenstore ring reconnection (ring transports only; sockets answer unsupported).
  result<void, store_error> reconnect() { return wrap(c_.reconnect()); }

 private:
  struct entry {
    std::string token;
    xenstore::watch w;
  };
  void forget(const entry& e) noexcept {
    if (ep_ >= 0) (void)::epoll_ctl(ep_, EPOLL_CTL_DEL, e.w.fd(), nullptr);
  }
  /// The client's error as is, except that a request lost to a ring reconnection (reset)
  /// is reported as EAGAIN: the driver retries it as it retries a conflicting transaction.
  static store_error for_driver(store_error e) noexcept {
    if (e.code == store_errc::reset) e.code = store_errc::eagain;
    return e;
  }
  template <class T>
  static result<T, store_error> wrap(result<T, xenstore::error>&& r) {
    if (!r) return unexpected{store_error{for_driver(r.error())}};
    return std::move(*r);
  }
  static result<void, store_error> wrap(result<void, xenstore::error>&& r) {
    if (!r) return unexpected{store_error{for_driver(r.error())}};
    return {};
  }

  xenstore::client c_;
  std::vector<entry> watches_;
  std::size_t next_ = 0;
  int ep_ = -1;  // watch_fd(): the watches' eventfds in one epoll set
};

static_assert(permission_store<client_store>, "client_store must model xenbus::permission_store");

XENBUS_END_NAMESPACE
