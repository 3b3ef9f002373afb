// [hosted] Typed transport keys of a xenbus device: ring-ref(N), ring-page-order, event-channel, queues, protocol.
#pragma once

#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// Key names, as the Xen headers and Linux/QEMU drivers spell them.
namespace keys {
inline constexpr std::string_view state = "state";
inline constexpr std::string_view backend = "backend";
inline constexpr std::string_view backend_id = "backend-id";
inline constexpr std::string_view frontend = "frontend";
inline constexpr std::string_view frontend_id = "frontend-id";
inline constexpr std::string_view online = "online";
inline constexpr std::string_view hotplug_status = "hotplug-status";
inline constexpr std::string_view ring_ref = "ring-ref";
inline constexpr std::string_view ring_page_order = "ring-page-order";
inline constexpr std::string_view max_ring_page_order = "max-ring-page-order";
inline constexpr std::string_view event_channel = "event-channel";
inline constexpr std::string_view protocol = "protocol";
inline constexpr std::string_view num_queues = "multi-queue-num-queues";
inline constexpr std::string_view max_queues = "multi-queue-max-queues";
}  // namespace keys

/// Largest ring-page-order and queue count this library negotiates (64 pages, 64 queues).
inline constexpr unsigned max_supported_ring_page_order = 6;
inline constexpr unsigned max_supported_queues = 64;

/// Why the transport a peer published was refused.
enum class negotiation_errc : std::uint8_t {
  missing_key,      ///< a key the protocol needs is absent
  not_a_number,     ///< a numeric key holds something "%u" would not write
  order_too_large,  ///< ring-page-order above the max-ring-page-order we offered
  too_many_queues,  ///< multi-queue-num-queues above what we offered (or zero)
  wrong_protocol,   ///< `protocol` names another ABI than ours
  store_failed,     ///< reading or writing the store failed
};

constexpr std::string_view to_string(negotiation_errc e) noexcept {
  switch (e) {
    case negotiation_errc::missing_key:
      return "a transport key is missing";
    case negotiation_errc::not_a_number:
      return "a numeric key is not a decimal number";
    case negotiation_errc::order_too_large:
      return "ring-page-order exceeds max-ring-page-order";
    case negotiation_errc::too_many_queues:
      return "multi-queue-num-queues is zero or exceeds multi-queue-max-queues";
    case negotiation_errc::wrong_protocol:
      return "protocol names another ABI";
    case negotiation_errc::store_failed:
      return "store operation failed";
  }
  return "(invalid)";
}

struct negotiation_error {
  negotiation_errc code;
  store_errc store = store_errc::eother;  ///< for store_failed
};

/// Parses exactly what "%u" writes for a value <= `max`; peer text is never trusted further.
/// (xenstore/decimal.hpp's parse_decimal, the one parser.)
constexpr result<std::uint32_t, negotiation_errc> parse_uint(std::string_view text, std::uint32_t max) noexcept {
  auto v = xenstore::parse_decimal(text, max);
  if (!v) return unexpected{negotiation_errc::not_a_number};
  return static_cast<std::uint32_t>(*v);
}

/// Decimal text of `v`, as "%u" writes it (xenstore/decimal.hpp's formatter, the one formatter).
inline std::string to_decimal(std::uint64_t v) { return std::string{xenstore::decimal{v}.view()}; }

/// What a frontend publishes for one queue: its grant references and event channel.
struct queue_transport {
  std::array<grant_ref, std::size_t{1} << max_supported_ring_page_order> refs{};
  evtchn_port port = 0;
};

/// The whole transport: ring order (same for every queue), the queues, the ABI.
struct transport {
  unsigned ring_page_order = 0;
  unsigned queues = 1;
  std::array<queue_transport, max_supported_queues> queue{};
  std::string protocol;
  unsigned pages() const noexcept { return 1u << ring_page_order; }
};

/// The directory that holds queue `q`'s keys: the device directory for a single queue,
/// `queue-q/` under it otherwise (Linux netfront/blkfront multi-queue layout).
inline std::string queue_dir(std::string_view dir, unsigned queues, unsigned q) {
  std::string d(dir);
  if (queues > 1) d += "/queue-" + to_decimal(q);
  return d;
}

/// Writes `t` under the frontend directory `dir`, inside transaction `tx`.
template <device_store S>
result<void, store_error> publish_transport(S& s, store_tx tx, std::string_view dir, const transport& t,
                                            std::string_view evtchn_key = keys::event_channel) {
  const std::string base(dir);
  auto put = [&](const std::string& path, const std::string& v) { return s.write(tx, path, v); };
  if (t.ring_page_order > 0)
    if (auto r = put(base + "/" + std::string(keys::ring_page_order), to_decimal(t.ring_page_order)); !r) return r;
  if (t.queues > 1)
    if (auto r = put(base + "/" + std::string(keys::num_queues), to_decimal(t.queues)); !r) return r;
  if (!t.protocol.empty())
    if (auto r = put(base + "/" + std::string(keys::protocol), t.protocol); !r) return r;
  for (unsigned q = 0; q < t.queues; ++q) {
    const std::string qd = queue_dir(base, t.queues, q);
    const queue_transport& qt = t.queue[q];
    if (t.ring_page_order == 0) {
      if (auto r = put(qd + "/" + std::string(keys::ring_ref), to_decimal(qt.refs[0])); !r) return r;
    } else {
      for (unsigned i = 0; i < t.pages(); ++i)
        if (auto r = put(qd + "/" + std::string(keys::ring_ref) + to_decimal(i), to_decimal(qt.refs[i])); !r) return r;
    }
    if (auto r = put(qd + "/" + std::string(evtchn_key), to_decimal(qt.port)); !r) return r;
  }
  return {};
}

/// Reads and checks the transport a frontend published under `dir`, against what the
/// backend offered (`max_order`, `max_queues`) and the ABI it speaks (`abi`, "" for any).
template <device_store S>
result<transport, negotiation_error> read_transport(S& s, store_tx tx, std::string_view dir, unsigned max_order,
                                                    unsigned max_queues, std::string_view abi,
                                                    std::string_view evtchn_key = keys::event_channel) {
  const std::string base(dir);
  auto get = [&](const std::string& path) { return s.read(tx, path); };
  auto number = [&](const std::string& path, std::uint32_t max, bool optional,
                    std::uint32_t fallback) -> result<std::uint32_t, negotiation_error> {
    auto v = get(path);
    if (!v) {
      if (v.error().code == store_errc::enoent) {
        if (optional) return fallback;
        return unexpected{negotiation_error{negotiation_errc::missing_key}};
      }
      return unexpected{negotiation_error{negotiation_errc::store_failed, v.error().code}};
    }
    auto n = parse_uint(*v, max);
    if (!n) return unexpected{negotiation_error{n.error()}};
    return *n;
  };
  transport t;
  auto order = number(base + "/" + std::string(keys::ring_page_order), 0xffffffffu, true, 0);
  if (!order) return unexpected{order.error()};
  if (*order > max_order || *order > max_supported_ring_page_order)
    return unexpected{negotiation_error{negotiation_errc::order_too_large}};
  t.ring_page_order = *order;
  auto queues = number(base + "/" + std::string(keys::num_queues), 0xffffffffu, true, 1);
  if (!queues) return unexpected{queues.error()};
  if (*queues == 0 || *queues > max_queues || *queues > max_supported_queues)
    return unexpected{negotiation_error{negotiation_errc::too_many_queues}};
  t.queues = *queues;
  if (auto p = get(base + "/" + std::string(keys::protocol)); p) {
    t.protocol = std::move(*p);
    if (!abi.empty() && t.protocol != abi) return unexpected{negotiation_error{negotiation_errc::wrong_protocol}};
  } else if (p.error().code != store_errc::enoent) {
    return unexpected{negotiation_error{negotiation_errc::store_failed, p.error().code}};
  }
  for (unsigned q = 0; q < t.queues; ++q) {
    const std::string qd = queue_dir(base, t.queues, q);
    for (unsigned i = 0; i < t.pages(); ++i) {
      const std::string key = qd + "/" + std::string(keys::ring_ref) + (t.ring_page_order ? to_decimal(i) : "");
      auto ref = number(key, 0xffffffffu, false, 0);
      if (!ref) return unexpected{ref.error()};
      t.queue[q].refs[i] = *ref;
    }
    auto port = number(qd + "/" + std::string(evtchn_key), 0xffffffffu, false, 0);
    if (!port) return unexpected{port.error()};
    t.queue[q].port = *port;
  }
  return t;
}

XENBUS_END_NAMESPACE
