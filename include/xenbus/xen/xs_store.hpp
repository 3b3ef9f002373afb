// [xen] xenbus::device_store over libxenstore (link -lxenstore): a real xenstored or any socket server.
#pragma once

// <cerrno> first: <xen/io/xs_wire.h> (through store.hpp) defines xsd_errors[] only when EINVAL exists.
#include <cerrno>

#include <xenbus/hosted/device/store.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <poll.h>

extern "C" {
#include <xenstore.h>
}

XENBUS_BEGIN_NAMESPACE
namespace xen {

/// The error behind a failed libxenstore call. libxenstore turns the server's XS_ERROR name
/// into errno through xsd_errors[] (get_error() in xs.c); this is its inverse, so every name
/// of xsd_errors[] comes back as itself (tests/device_test.cpp walks xsd_errors[]).
/// Any other errno is libxenstore's own failure on the connection: broken.
constexpr xenstore::errc errc_from_errno(int e) noexcept {
  using xenstore::errc;
  switch (e) {
    case EINVAL:
      return errc::einval;
    case EACCES:
      return errc::eacces;
    case EEXIST:
      return errc::eexist;
    case EISDIR:
      return errc::eisdir;
    case ENOENT:
      return errc::enoent;
    case ENOMEM:
      return errc::enomem;
    case ENOSPC:
      return errc::enospc;
    case EIO:
      return errc::eio;
    case ENOTEMPTY:
      return errc::enotempty;
    case ENOSYS:
      return errc::enosys;
    case EROFS:
      return errc::erofs;
    case EBUSY:
      return errc::ebusy;
    case EAGAIN:
      return errc::eagain;
    case EISCONN:
      return errc::eisconn;
    case E2BIG:
      return errc::e2big;
    case EPERM:
      return errc::eperm;
    default:
      return errc::broken;
  }
}

/// One libxenstore connection. `open()` connects where libxenstore does: $XENSTORED_PATH,
/// the xenstored socket, or /dev/xen/xenbus in a guest.
class xs_store {
 public:
  static result<xs_store, store_error> open() noexcept {
    errno = 0;
    xs_handle* h = ::xs_open(0);
    if (!h) return unexpected{store_error{store_errc::broken}};
    return xs_store{h};
  }
  xs_store(xs_store&& o) noexcept : h_{o.h_} { o.h_ = nullptr; }
  xs_store& operator=(xs_store&&) = delete;
  ~xs_store() {
    if (h_) ::xs_close(h_);
  }

  result<std::string, store_error> read(store_tx tx, std::string_view path) {
    unsigned len = 0;
    void* p = ::xs_read(h_, tx, std::string(path).c_str(), &len);
    if (!p) return unexpected{err()};
    std::string out(static_cast<const char*>(p), len);
    std::free(p);
    return out;
  }
  result<void, store_error> write(store_tx tx, std::string_view path, std::string_view value) {
    if (!::xs_write(h_, tx, std::string(path).c_str(), value.data(), static_cast<unsigned>(value.size())))
      return unexpected{err()};
    return {};
  }
  /// Creates `path` with an empty value (XS_MKDIR; not part of device_store). A node that
  /// exists already is left as it is, without an error.
  result<void, store_error> mkdir(store_tx tx, std::string_view path) {
    if (!::xs_mkdir(h_, tx, std::string(path).c_str())) return unexpected{err()};
    return {};
  }
  result<void, store_error> remove(store_tx tx, std::string_view path) {
    if (!::xs_rm(h_, tx, std::string(path).c_str())) return unexpected{err()};
    return {};
  }
  result<std::vector<std::string>, store_error> directory(store_tx tx, std::string_view path) {
    unsigned n = 0;
    char** v = ::xs_directory(h_, tx, std::string(path).c_str(), &n);
    if (!v) return unexpected{err()};
    std::vector<std::string> out(v, v + n);
    std::free(v);
    return out;
  }
  result<void, store_error> set_perms(store_tx tx, std::string_view path, std::span<const xenstore::perm> perms) {
    // xenstore::access is the XS_PERM_* bit mask: none 0, read 1, write 2, both 3.
    static_assert(static_cast<unsigned>(xenstore::access::read) == XS_PERM_READ &&
                  static_cast<unsigned>(xenstore::access::write) == XS_PERM_WRITE &&
                  static_cast<unsigned>(xenstore::access::both) == (XS_PERM_READ | XS_PERM_WRITE));
    std::vector<xs_permissions> v;
    v.reserve(perms.size());
    for (const xenstore::perm& p : perms) v.push_back(xs_permissions{p.domid, static_cast<unsigned>(p.acc)});
    if (v.empty()) return unexpected{store_error{store_errc::einval}};
    if (!::xs_set_permissions(h_, tx, std::string(path).c_str(), v.data(), static_cast<unsigned>(v.size())))
      return unexpected{err()};
    return {};
  }
  result<store_tx, store_error> transaction_start() {
    const xs_transaction_t t = ::xs_transaction_start(h_);
    if (t == XBT_NULL) return unexpected{err()};
    return store_tx{t};
  }
  result<void, store_error> transaction_end(store_tx tx, bool commit) {
    if (!::xs_transaction_end(h_, tx, commit ? false : true)) return unexpected{err()};
    return {};
  }
  result<void, store_error> watch(std::string_view path, std::string_view token) {
    if (!::xs_watch(h_, std::string(path).c_str(), std::string(token).c_str())) return unexpected{err()};
    return {};
  }
  result<void, store_error> unwatch(std::string_view path, std::string_view token) {
    if (!::xs_unwatch(h_, std::string(path).c_str(), std::string(token).c_str())) return unexpected{err()};
    return {};
  }
  /// libxenstore's xs_fileno(): readable when watch events are queued. It may stop polling
  /// readable before every queued event was taken, so drain next_watch_event(0) to timeout.
  int watch_fd() noexcept { return ::xs_fileno(h_); }

  result<watch_event, store_error> next_watch_event(int timeout_ms) {
    for (;;) {
      char** v = ::xs_check_watch(h_);
      if (v) {
        watch_event ev{v[XS_WATCH_PATH], v[XS_WATCH_TOKEN], 0};
        std::free(v);
        return ev;
      }
      if (errno != EAGAIN) return unexpected{store_error{store_errc::broken}};
      pollfd p{::xs_fileno(h_), POLLIN, 0};
      const int r = ::poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return unexpected{store_error{store_errc::timeout}};
      timeout_ms = 0;  // readable: one more check, then give up
    }
  }

 private:
  explicit xs_store(xs_handle* h) noexcept : h_{h} {}
  static store_error err() noexcept { return store_error{errc_from_errno(errno)}; }
  xs_handle* h_;
};

static_assert(permission_store<xs_store>, "xen::xs_store must model xenbus::permission_store");

}  // namespace xen
XENBUS_END_NAMESPACE
