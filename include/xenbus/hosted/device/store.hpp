// [hosted] The store a device driver runs over, as a concept: our embedded store, a socket client, xenstored.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// A device_store fails with the one xenstore error (xenstore/errors.hpp): the server's
/// errno name unchanged (ENOENT, EAGAIN, E2BIG, ...) or a local condition (timeout, broken).
using store_errc = xenstore::errc;
using store_error = xenstore::error;

/// A transaction id; 0 is "no transaction" (XBT_NULL).
using store_tx = std::uint32_t;
inline constexpr store_tx no_tx = 0;

/// A fired watch: the path that changed (or the watched path, on registration) and the token.
struct watch_event {
  std::string path;
  std::string token;
  /// Events of this watch the store dropped before this one (a full queue): whoever keeps
  /// state from the watch must read the watched subtree again. 0 where nothing was lost.
  std::uint64_t lost = 0;
};

/// What a frontend, backend or toolstack needs from xenstore, on one connection:
/// node reads/writes/removal and directory listing (optionally inside a transaction),
/// transactions that may end in `eagain`, watches, and a wait for the next watch event
/// that gives up with `timeout` after `timeout_ms` (0: just poll; -1: wait forever).
/// Watches follow xenstore: one event when registered, spurious events allowed,
/// several changes may arrive as one event.
///
/// Optional members, used where present (device_service, posix::attach):
/// - `int watch_fd()`: a descriptor that polls readable while next_watch_event(0) may
///   return an event (client_store, xen::xs_store; the embedded store has none);
/// - `result<void, store_error> reset_watches()`: XS_RESET_WATCHES, dropping every watch
///   and transaction this connection holds in the server (client_store, embedded_store).
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

/// A device_store that can also set a node's permissions (XS_SET_PERMS; the owner first,
/// whose letter is every unlisted domain's access). The toolstack gives each end its own
/// directory through it, as libxl does; a store without it is one where every party is
/// privileged (our socket server run by one user, say).
template <class S>
concept permission_store = device_store<S> &&
    requires(S& s, store_tx tx, std::string_view path, std::span<const xenstore::perm> perms) {
  { s.set_perms(tx, path, perms) } -> std::same_as<result<void, store_error>>;
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
      if (r.error().code == store_errc::eagain) continue;
      return r;
    }
    auto end = s.transaction_end(*tx, true);
    if (end) return {};
    if (end.error().code != store_errc::eagain) return end;
  }
  return unexpected{store_error{store_errc::eagain}};
}

XENBUS_END_NAMESPACE
