// [hosted] blk::backend_device: one blkif device served from a block_image, on the library's backend driver.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/hosted/blk/engine.hpp>
#include <xenbus/hosted/blk/image.hpp>
#include <xenbus/hosted/device/backend.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/protocol/blkif.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace blk {

/// blkif as a device_protocol: Xen's x86_64 request and response in the ring, the device
/// type `vbd` (the directory Linux's blkback serves). The limits are what the library can
/// negotiate; device_options says what a device offers.
struct vbd {
  using request = blkif::request;
  using response = blkif::response;
  static constexpr std::string_view type = "vbd";
  static constexpr std::string_view abi = "x86_64-abi";
  static constexpr unsigned max_ring_page_order = max_supported_ring_page_order;
  static constexpr unsigned max_queues = max_supported_queues;
};

/// The same protocol served from backend/qdisk/<domid>/<devid>, the directory libxl gives a
/// user-space disk backend: no kernel driver binds it, so the kernel's blkback leaves it to
/// us. The frontend's directory stays device/vbd/<devid>; it finds us through its `backend` node.
struct qdisk : vbd {
  static constexpr std::string_view type = "qdisk";
};

/// What a device offers the frontend, and how much work one call may do.
struct device_options {
  unsigned max_ring_page_order = 4;           ///< max-ring-page-order (Linux blkback's default: 16 pages)
  unsigned max_queues = 4;                    ///< multi-queue-max-queues
  std::uint32_t max_indirect_segments = 256;  ///< feature-max-indirect-segments (Linux: 256); 0 turns indirect off
  bool offer_flush = true;                    ///< feature-flush-cache and feature-barrier (if the image has a cache)
  bool offer_discard = true;                  ///< feature-discard (if the image can, and discard-enable is not 0)
  bool offer_persistent = true;               ///< feature-persistent (never with data_path::copy: nothing stays mapped)
  std::size_t persistent_grants = 1056;       ///< cached mappings per queue (Linux's max_persistent_grants)
  bool reset_at_once = true;                  ///< see backend_options
  unsigned budget = 64;                       ///< requests one call serves per queue before it returns
  /// Responses published at once: each push may kick the frontend, so fewer pushes mean
  /// fewer notifications; the responses of a pass always go out at its end.
  unsigned push_every = 8;
  unsigned logged_failures = 16;  ///< failed requests logged per connection (the rest are counted)
  /// Map the data pages, or grant-copy through a per-queue bounce buffer (needs a G that
  /// models grant_copier; otherwise the device maps). See request_server.
  data_path path = data_path::map;
};

/// One blkif device: the library's backend driver for the xenbus handshake, one
/// request_server per queue once connected, and the image they share. Single-threaded and
/// never blocking, like the driver: its owner feeds it watch events (handle()) and event
/// channel ports (on_event()), so one loop can run many devices. The nodes it writes are
/// the ones Linux's blkback writes, with the values Linux blkfront reads.
template <device_store S, event_channel E, grant_mapper G, block_image I, class P = vbd>
class backend_device {
 public:
  using driver_type = backend<P, S, E, G>;

  /// Device `devid` of domain `frontend`, served by domain `self` from `image`. The store,
  /// handles and image must outlive the device.
  backend_device(S& store, E& evtchn, G& grants, I& image, domid_t self, domid_t frontend, unsigned devid,
                 device_options opts = {})
      : store_{&store},
        evtchn_{&evtchn},
        grants_{&grants},
        image_{&image},
        self_{self},
        frontend_{frontend},
        devid_{devid},
        opts_{opts} {
    if (opts_.max_ring_page_order > P::max_ring_page_order) opts_.max_ring_page_order = P::max_ring_page_order;
    if (opts_.max_queues == 0) opts_.max_queues = 1;
    if (opts_.max_queues > P::max_queues) opts_.max_queues = P::max_queues;
    if (opts_.max_indirect_segments > blkif::max_indirect_segments_limit)
      opts_.max_indirect_segments = blkif::max_indirect_segments_limit;
    if (opts_.budget == 0) opts_.budget = 1;
    if (opts_.push_every == 0) opts_.push_every = 1;
    if (!grant_copier<G>) opts_.path = data_path::map;
    // Persistent grants are kept mappings; a device that never maps must not offer them,
    // or a frontend would grant every page writable and reuse it for nothing.
    if (opts_.path == data_path::copy) opts_.offer_persistent = false;
  }

  backend_device(const backend_device&) = delete;
  backend_device& operator=(const backend_device&) = delete;

  /// The backend directory this device serves.
  std::string dir() const { return device_address{frontend_, self_, std::string(P::type), devid_}.backend_dir(); }

  /// Reads the toolstack's `discard-enable`, decides the features from the image, and
  /// starts the driver (it then moves to InitWait and publishes them).
  result<void, store_error> start() {
    if (driver_) return {};
    bool discard_enabled = true;
    if (auto de = store_->read(no_tx, dir() + "/discard-enable"); de && *de == "0") discard_enabled = false;
    const image_geometry g = image_->geometry();
    limits_ = blkif::limits{};
    limits_.capacity_sectors = g.bytes / blkif::sector_bytes;
    limits_.align_sectors = g.sector_size >= blkif::sector_bytes ? g.sector_size / blkif::sector_bytes : 1;
    limits_.max_indirect_segments = opts_.max_indirect_segments;
    limits_.read_only = g.read_only;
    limits_.flush = limits_.barrier = opts_.offer_flush && g.volatile_cache && !g.read_only;
    limits_.discard = opts_.offer_discard && discard_enabled && g.discard && !g.read_only;
    limits_.discard_secure = limits_.discard && g.discard_secure;

    backend_options bo;
    bo.max_ring_page_order = opts_.max_ring_page_order;
    bo.max_queues = opts_.max_queues;
    bo.reset_at_once = opts_.reset_at_once;
    auto& f = bo.features;
    auto flag = [](bool b) { return std::string(b ? "1" : "0"); };
    if (limits_.max_indirect_segments > 0)
      f.emplace_back("feature-max-indirect-segments", to_decimal(limits_.max_indirect_segments));
    f.emplace_back("feature-flush-cache", flag(limits_.flush));
    f.emplace_back("feature-barrier", flag(limits_.barrier));
    if (discard_enabled) {  // Linux writes nothing about discard when the toolstack disabled it
      if (limits_.discard) {
        f.emplace_back("discard-granularity",
                       to_decimal(g.discard_granularity ? g.discard_granularity : g.sector_size));
        f.emplace_back("discard-alignment", to_decimal(g.discard_alignment));
        f.emplace_back("discard-secure", flag(limits_.discard_secure));
      }
      f.emplace_back("feature-discard", flag(limits_.discard));
    }
    f.emplace_back("feature-persistent", flag(opts_.offer_persistent));
    f.emplace_back("sectors", to_decimal(limits_.capacity_sectors));
    f.emplace_back("info", to_decimal(g.read_only ? blkif::vdisk_readonly : 0));
    f.emplace_back("sector-size", to_decimal(g.sector_size));
    f.emplace_back("physical-sector-size", to_decimal(g.physical_sector_size));

    driver_.emplace(*store_, *evtchn_, *grants_, self_, frontend_, devid_, std::move(bo));
    if (log_) driver_->set_logger(log_);
    auto s = driver_->start();
    sync();
    return s;
  }

  /// Feeds a watch event to the driver; false if it was not for this device.
  bool handle(const watch_event& ev) {
    if (!driver_ || !driver_->handle(ev)) return false;
    sync();
    return true;
  }
  /// Re-reads both state nodes and acts (safe at any time).
  void process() {
    if (!driver_) return;
    driver_->process();
    sync();
  }

  /// A port from the event channel's pending(): if it is one of our queues', unmasks it and
  /// serves that queue (up to the budget). False if the port is not ours (the caller
  /// unmasks it then).
  bool on_event(evtchn_port port) {
    if (servers_.empty()) return false;
    for (unsigned q = 0; q < servers_.size(); ++q) {
      if (driver_->queue_at(q).port != port) continue;
      // Unmask first: a notification that comes while we serve is delivered again, so the
      // final check below can never sleep past a request.
      (void)evtchn_->unmask(port);
      more_ |= serve_queue(q);
      sync();
      return true;
    }
    return false;
  }

  /// Serves every queue up to the budget; true if some queue still had requests (call again
  /// before sleeping).
  bool serve() { return serve_all(true); }
  /// The same for a loop that polls the rings: serves what is there without asking the
  /// frontend to notify us (no req_event update), so a frontend that sees us busy need not
  /// kick. Returns how many requests it served. Call serve() before going to sleep.
  std::uint64_t serve_polling() {
    const std::uint64_t before = served_;
    (void)serve_all(false);
    return served_ - before;
  }
  /// True if a queue stopped at its budget since the last serve(): work is left.
  bool pending_work() const noexcept { return more_ && !servers_.empty(); }

  bool started() const noexcept { return driver_.has_value(); }
  bool connected() const noexcept { return driver_ && driver_->connected() && !servers_.empty(); }
  driver_type& driver() noexcept { return *driver_; }
  const driver_type& driver() const noexcept { return *driver_; }
  /// The bounds requests are checked against (after start()).
  const blkif::limits& limits() const noexcept { return limits_; }
  /// Whether this connection uses persistent grants (the frontend asked and we offered).
  bool persistent() const noexcept { return persistent_; }
  /// How the data reaches the guest's pages (map unless copy was asked and G can copy).
  data_path path() const noexcept { return opts_.path; }
  /// Counters of the current connection, summed over its queues.
  queue_stats stats() const noexcept {
    queue_stats t;
    for (const auto& s : servers_) add(t, s.stats());
    return t;
  }
  /// Counters of every connection so far, this one included.
  queue_stats lifetime_stats() const noexcept {
    queue_stats t = closed_;
    add(t, stats());
    return t;
  }
  /// The local ports of the connected queues (for a loop that routes ports to devices).
  std::vector<evtchn_port> ports() {
    std::vector<evtchn_port> out;
    for (unsigned q = 0; q < servers_.size(); ++q) out.push_back(driver_->queue_at(q).port);
    return out;
  }
  void set_logger(device_logger log) {
    log_ = std::move(log);
    if (driver_) driver_->set_logger(log_);
  }

 private:
  static void add(queue_stats& t, const queue_stats& s) noexcept {
    t.requests += s.requests;
    t.reads += s.reads;
    t.writes += s.writes;
    t.flushes += s.flushes;
    t.discards += s.discards;
    t.sectors_read += s.sectors_read;
    t.sectors_written += s.sectors_written;
    t.refused += s.refused;
    t.bad_grants += s.bad_grants;
    t.io_errors += s.io_errors;
    t.persistent_hits += s.persistent_hits;
    t.persistent_maps += s.persistent_maps;
    t.grant_copies += s.grant_copies;
  }
  void log(const std::string& line) const {
    if (log_) log_(line);
  }

  // Builds one server per queue when the driver has connected (again: a reconnect writes
  // the state node, so a changed write count means a new transport), and drops them, with
  // every persistent mapping, when it is no longer connected.
  void sync() {
    const bool live = driver_ && driver_->connected();
    if (live && (servers_.empty() || built_at_ != driver_->state_writes())) {
      drop();
      build();
    } else if (!live && !servers_.empty()) {
      drop();
    }
  }
  void build() {
    persistent_ = false;
    if (opts_.offer_persistent)
      if (auto fp = store_->read(no_tx, driver_->peer_dir() + "/feature-persistent"); fp && *fp == "1")
        persistent_ = true;
    const std::size_t n = driver_->queues().size();
    servers_.reserve(n);
    for (std::size_t q = 0; q < n; ++q)
      servers_.emplace_back(*grants_, *image_, frontend_, limits_, persistent_ ? opts_.persistent_grants : 0,
                            opts_.path);
    built_at_ = driver_->state_writes();
    logged_ = 0;
    log("blkif: serving " + to_decimal(n) + " queue(s) of " + to_decimal(driver_->queue_at(0).ring->size()) +
        " slots, " + to_decimal(limits_.capacity_sectors) + " sectors" + (limits_.read_only ? " read-only" : "") +
        (persistent_ ? ", persistent grants" : "") + (opts_.path == data_path::copy ? ", grant copy" : ""));
    // Requests may already wait (and a bound port may have fired before we were ready).
    for (unsigned q = 0; q < n && driver_->connected(); ++q) more_ |= serve_queue(q);
  }
  void drop() {
    if (servers_.empty()) return;
    const queue_stats t = stats();
    add(closed_, t);
    log("blkif: connection ended after " + to_decimal(t.requests) + " requests (" + to_decimal(t.refused) +
        " refused, " + to_decimal(t.bad_grants) + " bad grants, " + to_decimal(t.io_errors) + " I/O errors)");
    servers_.clear();
    more_ = false;
  }

  bool serve_all(bool arm) {
    bool more = false;
    for (unsigned q = 0; q < servers_.size() && driver_->connected(); ++q) more |= serve_queue(q, arm);
    sync();
    more_ = more;
    return more;
  }

  // Serves queue q until it is empty (with `arm`, the final check re-arms req_event) or the
  // budget is spent; true if requests remain.
  bool serve_queue(unsigned q, bool arm = true) {
    auto& qu = driver_->queue_at(q);
    request_server<G, I>& server = servers_[q];
    unsigned done = 0;
    for (;;) {
      while (done < opts_.budget) {
        auto r = driver_->take_request(q);  // a corrupted ring is reported and latched there
        if (!r || !*r) break;
        const served s = server.serve(**r);
        if (s.what != outcome::done && logged_ < opts_.logged_failures) {
          ++logged_;
          log("blkif: " + describe(s) +
              (logged_ == opts_.logged_failures ? " (further failures are only counted)" : ""));
        }
        (void)qu.ring->produce(s.rsp);  // its slot is free: the request was just taken
        ++done;
        ++served_;
        if (qu.ring->unpushed() >= opts_.push_every)
          if (!driver_->push(q)) return false;  // latched; the driver closes
      }
      // Everything answered goes out (and the frontend is kicked if it asked) before we look
      // for more or sleep.
      if (qu.ring->unpushed() > 0 && !driver_->push(q)) return false;
      if (!driver_->connected() || qu.ring->broken()) return false;
      if (done >= opts_.budget) return true;
      if (!arm) return false;  // a poller looks again soon; it arms before it sleeps
      auto more = qu.ring->final_check(1);
      if (!more) {
        driver_->fatal(close_reason::ring_broken, to_string(more.error()));
        return false;
      }
      if (!*more) return false;
    }
  }

  S* store_;
  E* evtchn_;
  G* grants_;
  I* image_;
  domid_t self_, frontend_;
  unsigned devid_;
  device_options opts_;
  blkif::limits limits_{};
  std::optional<driver_type> driver_;
  std::vector<request_server<G, I>> servers_;
  std::uint64_t built_at_ = 0;
  bool persistent_ = false;
  bool more_ = false;
  std::uint64_t served_ = 0;  // requests answered, every connection
  unsigned logged_ = 0;
  queue_stats closed_{};
  device_logger log_;
};

}  // namespace blk
XENBUS_END_NAMESPACE
