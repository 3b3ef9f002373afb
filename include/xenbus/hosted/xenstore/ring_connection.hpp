// [hosted] One domain's xenstore ring page served by a store: requests in, replies and watch events out, with the
// reconnection and error fields of xenstore-ring.txt.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/ring/xenstore_page.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// Why a ring connection stopped: the value the server wrote to the page's `error` field
/// (xenstore_error_ringidx or xenstore_error_proto), and what the guest did.
struct ring_stop {
  std::uint32_t error = xenstore_error_none;
  std::string_view reason;  ///< a static sentence for the log
};

/// The server's end of one xenstore ring page (struct xenstore_domain_interface) attached
/// to a store connection. pump() moves bytes both ways: what the store queued for the
/// connection into the response ring, and requests from the request ring into the store,
/// only while the store accepts (its flow control: the guest's outstanding replies and
/// held output). Everything on the page is the guest's: each index is checked by the byte
/// rings, each message by the decoder and parse_request. A guest that breaks the ring
/// (an index out of range) or the framing (a length over XENSTORE_PAYLOAD_MAX) is stopped:
/// the `error` field says why, its watches, transactions and queued output are dropped, and
/// nothing more is read until it asks for a reconnection. Other connections never notice.
///
/// Memory: a 1 KiB staging buffer for request bytes (refilled only when empty, and only
/// while the store accepts) and the decoder's fixed 4112 bytes; output lives in the store,
/// bounded by its limits. Work: pump() moves at most `budget` bytes per call.
class ring_connection {
 public:
  /// What one pump() did.
  struct pump_result {
    bool notify = false;   ///< bytes moved, or the connection reset or stopped: signal the guest
    bool more = false;     ///< the budget ran out with work left: pump again soon
    bool stopped = false;  ///< this call stopped the connection (see stop_reason())
  };

  /// Serves `page` (at least 4 KiB, suitably aligned; it must outlive this object) for
  /// domain `domid`, advertising reconnection and the error field. `fresh`: empty both
  /// queues first (C xenstored resets a guest's ring at every XS_INTRODUCE); otherwise
  /// attach at the indices the page holds (dom0's own ring, which its kernel may already
  /// have written to).
  static result<std::unique_ptr<ring_connection>, ring_error> attach(store& s, std::span<std::byte> page,
                                                                     std::uint32_t domid, bool privileged, bool fresh) {
    auto end = xenstore_ring_server::attach(page);
    if (!end) return unexpected{end.error()};
    if (fresh) end->reset();
    return std::unique_ptr<ring_connection>{new ring_connection(s, *end, domid, privileged)};
  }
  ring_connection(const ring_connection&) = delete;
  ring_connection& operator=(const ring_connection&) = delete;
  ~ring_connection() {
    if (!stopped_) store_.disconnect(id_);
  }

  /// Moves up to `budget` bytes (requests read plus replies written), serving a
  /// reconnection first if the guest asked for one.
  pump_result pump(std::size_t budget = 16384) {
    pump_result r;
    if (ring_.handle_reconnect()) {
      // xenstore-ring.txt: partial packets, requests in flight, watches and transactions
      // are dropped; the guest sees a fresh connection on a packet boundary.
      fresh_connection();
      ++reconnects_;
      r.notify = true;
    }
    if (stopped_) return r;
    std::size_t moved = 0;
    for (bool progress = true; progress;) {
      progress = false;
      // Output first: room in the response ring lets the store take more requests.
      for (;;) {
        const std::string_view out = store_.output(id_);
        if (out.empty()) break;
        auto n = ring_.write(std::as_bytes(std::span<const char>{out.data(), out.size()}));
        if (!n) return ring_failed(r, n.error());
        if (*n == 0) break;
        store_.consume(id_, *n);
        moved += *n;
        progress = r.notify = true;
      }
      while (moved < budget && store_.accepting(id_)) {
        if (in_used_ == in_len_) {
          auto n = ring_.read(std::as_writable_bytes(std::span<char>{in_}));
          if (!n) return ring_failed(r, n.error());
          if (*n == 0) break;
          in_used_ = 0;
          in_len_ = *n;
          moved += *n;
          progress = r.notify = true;
        }
        in_used_ += dec_->feed(std::span<const char>{in_ + in_used_, in_len_ - in_used_});
        if (dec_->broken()) return stop(r, {xenstore_error_proto, "message longer than XENSTORE_PAYLOAD_MAX"});
        if (dec_->ready()) {
          store_.handle(id_, dec_->current());
          dec_->next();
          ++requests_;
        }
      }
      if (moved >= budget) {
        r.more = true;
        break;
      }
    }
    return r;
  }

  /// Starts over on the server's initiative (XS_INTRODUCE of a domain already served):
  /// both queues emptied, error cleared, a fresh store connection. Signal the guest after.
  void reset() {
    ring_.reset();
    fresh_connection();
  }

  /// The store connection (it changes at a reconnection or reset). Meaningless while
  /// stopped: the store has no connection for a stopped ring.
  conn_id id() const noexcept { return id_; }
  std::uint32_t domid() const noexcept { return domid_; }
  bool privileged() const noexcept { return privileged_; }
  bool stopped() const noexcept { return stopped_; }
  const ring_stop& stop_reason() const noexcept { return why_; }
  std::uint64_t requests() const noexcept { return requests_; }
  std::uint64_t reconnects() const noexcept { return reconnects_; }

 private:
  ring_connection(store& s, xenstore_ring_server end, std::uint32_t domid, bool privileged)
      : store_{s},
        ring_{end},
        domid_{domid},
        privileged_{privileged},
        id_{s.connect(domid, privileged)},
        dec_{std::make_unique<decoder>()} {}

  void fresh_connection() {
    if (!stopped_) store_.disconnect(id_);
    id_ = store_.connect(domid_, privileged_);
    dec_->reset();
    in_used_ = in_len_ = 0;
    stopped_ = false;
    why_ = {};
  }

  pump_result& ring_failed(pump_result& r, ring_error e) {
    // The guest asked for a reconnection (it signals after setting the field, and that
    // event brings the next pump, which serves it), or wrote a value that means nothing:
    // either way nothing moves until the field is 1 and the guest signals.
    if (e == ring_error::reconnecting) return r;
    return stop(r, {xenstore_error_ringidx, "ring index out of range"});
  }

  pump_result& stop(pump_result& r, ring_stop why) {
    ring_.stop(why.error);
    store_.disconnect(id_);  // watches, transactions, queued replies and events
    stopped_ = true;
    why_ = why;
    in_used_ = in_len_ = 0;
    r.stopped = r.notify = true;
    r.more = false;
    return r;
  }

  store& store_;
  xenstore_ring_server ring_;
  std::uint32_t domid_;
  bool privileged_;
  conn_id id_;
  std::unique_ptr<decoder> dec_;  ///< 4112 bytes: kept off the object's own footprint
  char in_[1024];                 ///< request bytes read from the ring, not yet decoded
  std::size_t in_used_ = 0;
  std::size_t in_len_ = 0;
  bool stopped_ = false;
  ring_stop why_{};
  std::uint64_t requests_ = 0;
  std::uint64_t reconnects_ = 0;
};

}  // namespace xenstore
XENBUS_END_NAMESPACE
