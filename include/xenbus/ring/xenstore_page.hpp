// [freestanding] The xenstore ring (struct xenstore_domain_interface) as a byte transport for the guest and the server,
// with the reconnection handshake.
#pragma once

#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/detail/shared_access.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

XENBUS_BEGIN_NAMESPACE

/// The xenstore page as xen/io/xs_wire.h lays it out (docs/misc/xenstore-ring.txt).
struct xenstore_domain_interface_layout {
  char req[1024];  ///< guest -> server ("Input")
  char rsp[1024];  ///< server -> guest ("Output": replies and watch events)
  ring_idx req_cons, req_prod;
  ring_idx rsp_cons, rsp_prod;
  std::uint32_t server_features;  ///< set by the server only, bits never cleared
  std::uint32_t connection;       ///< 0 connected, 1 reconnect in progress
  std::uint32_t error;            ///< set by the server when it stopped the connection
};

/// server_features bits (XENSTORE_SERVER_FEATURE_*).
inline constexpr std::uint32_t xenstore_feature_reconnection = 1;
inline constexpr std::uint32_t xenstore_feature_error = 2;
/// connection values (XENSTORE_CONNECTED, XENSTORE_RECONNECT).
inline constexpr std::uint32_t xenstore_connected = 0;
inline constexpr std::uint32_t xenstore_reconnect = 1;
/// error values (XENSTORE_ERROR_*); a guest must expect others too.
inline constexpr std::uint32_t xenstore_error_none = 0;
inline constexpr std::uint32_t xenstore_error_comm = 1;
inline constexpr std::uint32_t xenstore_error_ringidx = 2;
inline constexpr std::uint32_t xenstore_error_proto = 3;

namespace detail {

inline xenstore_domain_interface_layout* xenstore_page(std::span<std::byte> page) noexcept {
  if (page.data() == nullptr || page.size() < sizeof(xenstore_domain_interface_layout) ||
      reinterpret_cast<std::uintptr_t>(page.data()) % alignof(xenstore_domain_interface_layout) != 0)
    return nullptr;
  return reinterpret_cast<xenstore_domain_interface_layout*>(page.data());
}
inline byte_ring_location xenstore_req(xenstore_domain_interface_layout* x) noexcept {
  return {reinterpret_cast<std::byte*>(x->req), sizeof x->req, &x->req_cons, &x->req_prod};
}
inline byte_ring_location xenstore_rsp(xenstore_domain_interface_layout* x) noexcept {
  return {reinterpret_cast<std::byte*>(x->rsp), sizeof x->rsp, &x->rsp_cons, &x->rsp_prod};
}

}  // namespace detail

/// The guest's end: writes requests, reads replies and watch events. Signal the event
/// channel after every call that moved bytes, and after begin_reconnect().
class xenstore_ring_guest {
 public:
  /// Attaches at the indices the page holds now (the ring need not start at 0).
  static result<xenstore_ring_guest, ring_error> attach(std::span<std::byte> page) noexcept {
    auto* x = detail::xenstore_page(page);
    if (x == nullptr) return unexpected{ring_error::bad_memory};
    xenstore_ring_guest g(x);
    g.restart();
    // xenstore-ring.txt: an earlier owner of the page may have asked for a reconnection
    // (connection = 1). The indices we attached at are then stale: restart from the
    // server's reset ones, even if it is done before our first read or write.
    if ((g.server_features() & xenstore_feature_reconnection) &&
        detail::load(x->connection, std::memory_order_acquire) != xenstore_connected)
      g.restart_pending_ = true;  // acquire: pairs with the server's release of connection
    return g;
  }

  /// Writes what fits of `bytes` into the request ring; returns how much (0 when full).
  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept {
    if (auto e = check()) return unexpected{*e};
    return req_.write(bytes);
  }
  /// Reads up to out.size() bytes of replies and events; returns how much (0 when empty).
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept {
    if (auto e = check()) return unexpected{*e};
    return rsp_.read(out);
  }

  /// The feature bits the server offers now.
  std::uint32_t server_features() const noexcept {
    // Acquire: a feature bit is set before the server relies on it; pairs with the
    // server's release store of server_features.
    return detail::load(x_->server_features, std::memory_order_acquire);
  }
  /// The server's `error` value, if it advertised the error feature and set one.
  std::optional<std::uint32_t> server_error() const noexcept {
    if (!(server_features() & xenstore_feature_error)) return std::nullopt;
    // Acquire: pairs with the server's release store of error.
    const std::uint32_t e = detail::load(x_->error, std::memory_order_acquire);
    if (e == xenstore_error_none) return std::nullopt;
    return e;
  }

  /// Asks the server to reset the ring (connection = 1). Afterwards every read/write says
  /// `reconnecting` until reconnected() returns true. Needs the reconnection feature.
  result<void, ring_error> begin_reconnect() noexcept {
    if (!(server_features() & xenstore_feature_reconnection)) return unexpected{ring_error::not_supported};
    // Release: our last index stores come before the request, so the server's reset
    // (after its acquire load of connection) cannot be overtaken by one of them.
    detail::store(x_->connection, xenstore_reconnect, std::memory_order_release);
    restart_pending_ = true;
    return {};
  }
  /// True once the server has reset the ring (connection back to 0); from then on the
  /// ring is fresh: a latched error is cleared and partial packets are gone.
  bool reconnected() noexcept {
    // Acquire: the server reset the indices before storing 0; pairs with its release.
    if (detail::load(x_->connection, std::memory_order_acquire) != xenstore_connected) return false;
    restart();
    restart_pending_ = false;
    return true;
  }

  std::optional<ring_error> broken() const noexcept {
    if (auto e = req_.broken()) return e;
    return rsp_.broken();
  }

 private:
  explicit xenstore_ring_guest(xenstore_domain_interface_layout* x) noexcept : x_(x) {}

  void restart() noexcept {
    // Relaxed: starting points after attach or after the acquire load of connection.
    req_ = byte_ring_producer(detail::xenstore_req(x_), detail::load(x_->req_prod, std::memory_order_relaxed));
    rsp_ = byte_ring_consumer(detail::xenstore_rsp(x_), detail::load(x_->rsp_cons, std::memory_order_relaxed));
  }

  // The control fields first: while a reconnect is in progress the guest must ignore
  // everything else, and a server error stops the connection for good.
  std::optional<ring_error> check() noexcept {
    if (auto e = broken()) return e;
    const std::uint32_t features = server_features();
    if (features & xenstore_feature_reconnection) {
      if (detail::load(x_->connection, std::memory_order_acquire) != xenstore_connected) {
        // Whoever asked (we, or an earlier owner of the page before we attached), the
        // server will reset the indices: restart from them once it is done.
        restart_pending_ = true;
        return ring_error::reconnecting;  // not latched: it ends when the server is done
      }
      if (restart_pending_) {
        // The acquire load above saw connection = 0 after a reconnect we had seen in
        // progress: the server's reset indices are visible (see reconnected()).
        restart();
        restart_pending_ = false;
      }
    }
    if ((features & xenstore_feature_error) &&
        detail::load(x_->error, std::memory_order_acquire) != xenstore_error_none) {
      req_.mark_broken(ring_error::peer_error);
      rsp_.mark_broken(ring_error::peer_error);
      return ring_error::peer_error;
    }
    return std::nullopt;
  }

  xenstore_domain_interface_layout* x_;
  byte_ring_producer req_;
  byte_ring_consumer rsp_;
  bool restart_pending_ = false;  ///< a reconnect was seen in progress: restart when it ends
};

/// The server's end: reads requests, writes replies and watch events.
class xenstore_ring_server {
 public:
  /// Attaches at the page's indices and advertises `features` (before producing or
  /// consuming anything, as xenstore-ring.txt requires).
  static result<xenstore_ring_server, ring_error> attach(std::span<std::byte> page,
                                                         std::uint32_t features = xenstore_feature_reconnection |
                                                                                  xenstore_feature_error) noexcept {
    auto* x = detail::xenstore_page(page);
    if (x == nullptr) return unexpected{ring_error::bad_memory};
    // Relaxed: only the server writes this field; bits are only ever added to it.
    const std::uint32_t have = detail::load(x->server_features, std::memory_order_relaxed);
    // Release: the feature bits become visible as one value; pairs with the guest's
    // acquire load of server_features.
    detail::store(x->server_features, have | features, std::memory_order_release);
    xenstore_ring_server s(x, features);
    s.restart();
    return s;
  }

  /// Reads up to out.size() bytes of requests; returns how much.
  result<std::size_t, ring_error> read(std::span<std::byte> out) noexcept {
    if (auto e = check()) return unexpected{*e};
    auto n = req_.read(out);
    if (!n) stop(xenstore_error_ringidx);
    return n;
  }
  /// Writes what fits of `bytes` (replies, watch events); returns how much.
  result<std::size_t, ring_error> write(std::span<const std::byte> bytes) noexcept {
    if (auto e = check()) return unexpected{*e};
    auto n = rsp_.write(bytes);
    if (!n) stop(xenstore_error_ringidx);
    return n;
  }

  /// Serves a reconnection request if the guest made one: empties both queues, clears the
  /// error, sets connection back to 0. True means "it happened": the caller must now drop
  /// partial packets, in-flight requests, watches and transactions of this connection, and
  /// signal the event channel.
  bool handle_reconnect() noexcept {
    if (!(features_ & xenstore_feature_reconnection)) return false;
    // Acquire: pairs with the guest's release store of connection = 1.
    if (detail::load(x_->connection, std::memory_order_acquire) != xenstore_reconnect) return false;
    reset();
    return true;
  }

  /// Starts the connection over on the server's initiative (C xenstored does this at every
  /// XS_INTRODUCE): both queues emptied (indices 0), the error cleared, our latched state
  /// dropped, and a reconnection the guest asked for, if any, completed. Signal the event
  /// channel afterwards.
  void reset() noexcept {
    // Relaxed: published together by the release store of connection below.
    detail::store(x_->req_cons, 0, std::memory_order_relaxed);
    detail::store(x_->req_prod, 0, std::memory_order_relaxed);
    detail::store(x_->rsp_cons, 0, std::memory_order_relaxed);
    detail::store(x_->rsp_prod, 0, std::memory_order_relaxed);
    if (features_ & xenstore_feature_error) detail::store(x_->error, xenstore_error_none, std::memory_order_relaxed);
    restart();
    // Release: the reset above is visible before connection = 0; pairs with the guest's
    // acquire load in reconnected(). (Only the server writes 0 here; without the
    // reconnection feature the field means nothing to the guest.)
    if (features_ & xenstore_feature_reconnection)
      detail::store(x_->connection, xenstore_connected, std::memory_order_release);
  }

  /// Stops the connection for a protocol error found above the ring (e.g. a payload over
  /// XENSTORE_PAYLOAD_MAX: xenstore_error_proto) and tells the guest through `error`.
  void stop(std::uint32_t error_code) noexcept {
    req_.mark_broken(ring_error::peer_error);
    rsp_.mark_broken(ring_error::peer_error);
    if (features_ & xenstore_feature_error)
      // Release: pairs with the guest's acquire load of error.
      detail::store(x_->error, error_code, std::memory_order_release);
  }

  std::optional<ring_error> broken() const noexcept {
    if (auto e = req_.broken()) return e;
    return rsp_.broken();
  }

 private:
  xenstore_ring_server(xenstore_domain_interface_layout* x, std::uint32_t features) noexcept
      : x_(x), features_(features) {}

  void restart() noexcept {
    // Relaxed: our own indices' starting points, read once.
    req_ = byte_ring_consumer(detail::xenstore_req(x_), detail::load(x_->req_cons, std::memory_order_relaxed));
    rsp_ = byte_ring_producer(detail::xenstore_rsp(x_), detail::load(x_->rsp_prod, std::memory_order_relaxed));
  }

  std::optional<ring_error> check() noexcept {
    if ((features_ & xenstore_feature_reconnection) &&
        detail::load(x_->connection, std::memory_order_acquire) != xenstore_connected)
      return ring_error::reconnecting;  // call handle_reconnect()
    return broken();
  }

  xenstore_domain_interface_layout* x_;
  std::uint32_t features_;
  byte_ring_consumer req_;
  byte_ring_producer rsp_;
};

XENBUS_END_NAMESPACE
