// [hosted] The store a device driver runs over, as a concept: our embedded store, a socket client, xenstored.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cerrno>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// Why a store operation failed, in xenstore's terms (xsd_errors[]) plus local conditions.
enum class store_errc : std::uint8_t {
  noent,    ///< ENOENT: no such node
  again,    ///< EAGAIN: a transaction conflicted; retry it
  access,   ///< EACCES/EPERM
  exists,   ///< EEXIST
  inval,    ///< EINVAL and other refusals of the request
  quota,    ///< ENOSPC, E2BIG, ENOMEM: a limit was hit
  timeout,  ///< next_watch_event(): nothing arrived in time
  broken,   ///< the connection is gone or latched broken
  other,
};

constexpr std::string_view to_string(store_errc e) noexcept {
  switch (e) {
    case store_errc::noent: return "ENOENT";
    case store_errc::again: return "EAGAIN";
    case store_errc::access: return "EACCES";
    case store_errc::exists: return "EEXIST";
    case store_errc::inval: return "EINVAL";
    case store_errc::quota: return "ENOSPC";
    case store_errc::timeout: return "timeout";
    case store_errc::broken: return "connection broken";
    case store_errc::other: return "error";
  }
  return "(invalid)";
}

/// Maps an errno value (as libxenstore reports) to a store_errc.
constexpr store_errc store_errc_from_errno(int e) noexcept {
  switch (e) {
    case ENOENT: return store_errc::noent;
    case EAGAIN: return store_errc::again;
    case EACCES: case EPERM: return store_errc::access;
    case EEXIST: return store_errc::exists;
    case EINVAL: case EISDIR: case ENOTEMPTY: case ENOSYS: case EROFS: case EBUSY: return store_errc::inval;
    case ENOSPC: case E2BIG: case ENOMEM: return store_errc::quota;
    case EIO: case EPIPE: case ECONNRESET: case EBADF: return store_errc::broken;
    default: return store_errc::other;
  }
}

struct store_error {
  store_errc code;
  friend constexpr bool operator==(store_error a, store_errc c) noexcept { return a.code == c; }
};

/// A transaction id; 0 is "no transaction" (XBT_NULL).
using store_tx = std::uint32_t;
inline constexpr store_tx no_tx = 0;

/// A fired watch: the path that changed (or the watched path, on registration) and the token.
struct watch_event {
  std::string path;
  std::string token;
};

/// What a frontend, backend or toolstack needs from xenstore, on one connection:
/// node reads/writes/removal and directory listing (optionally inside a transaction),
/// transactions that may end in `again`, watches, and a wait for the next watch event
/// that gives up with `timeout` after `timeout_ms` (0: just poll; -1: wait forever).
/// Watches follow xenstore: one event when registered, spurious events allowed,
/// several changes may arrive as one event.
template <class S>
concept device_store = requires(S& s, store_tx tx, std::string_view path, std::string_view value, bool commit,
                                int timeout_ms) {
  { s.read(tx, path) } -> std::same_as<result<std::string, store_error>>;
  { s.write(tx, path, value) } -> std::same_as<result<void, store_error>>;
  { s.remove(tx, path) } -> std::same_as<result<void, store_error>>;
  { s.directory(tx, path) } -> std::same_as<result<std::vector<std::string>, store_error>>;
  { s.transaction_start() } -> std::same_as<result<store_tx, store_error>>;
  { s.transaction_end(tx, commit) } -> std::same_as<result<void, store_error>>;
  { s.watch(path, value) } -> std::same_as<result<void, store_error>>;
  { s.unwatch(path, value) } -> std::same_as<result<void, store_error>>;
  { s.next_watch_event(timeout_ms) } -> std::same_as<result<watch_event, store_error>>;
};

/// Runs `body(tx)` in a transaction, retrying on EAGAIN up to `attempts` times.
/// `body` returns result<void, store_error>; its failure aborts the transaction.
template <device_store S, class Body>
result<void, store_error> in_transaction(S& s, Body&& body, int attempts = 16) {
  for (int i = 0; i < attempts; ++i) {
    auto tx = s.transaction_start();
    if (!tx) return unexpected{tx.error()};
    auto r = body(*tx);
    if (!r) {
      (void)s.transaction_end(*tx, false);
      if (r.error().code == store_errc::again) continue;
      return r;
    }
    auto end = s.transaction_end(*tx, true);
    if (end) return {};
    if (end.error().code != store_errc::again) return end;
  }
  return unexpected{store_error{store_errc::again}};
}

XENBUS_END_NAMESPACE
