// [posix] Serving the domains' xenstore rings beside the socket: XS_INTRODUCE maps a guest's page and binds its event
// channel, dying domains are found and cleaned up, dom0's own kernel ring is served.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/hosted/xenstore/ring_connection.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/xenstore/errors.hpp>

#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// What the hypervisor says about a domain, reduced to what xenstored acts on.
enum class domain_status : std::uint8_t {
  running,   ///< exists and is not shut down
  shutdown,  ///< shut down (suspended, crashed, halted) but not yet being destroyed
  dying,     ///< being destroyed: its pages go once every mapping of them is gone
  gone,      ///< no such domain
};

/// Maps a guest's xenstore page at XS_INTRODUCE: by the reserved grant entry
/// (GNTTAB_RESERVED_XENSTORE) or by the frame the toolstack names (`mfn`). The mapping
/// (grant_pages: data(), size()) unmaps itself. Errors are errno values.
template <class M>
concept ring_page_mapper = requires(M& m, domid_t domid, std::uint64_t mfn) {
  typename M::mapping;
  requires grant_pages<typename M::mapping>;
  { m.map_ring(domid, mfn) } -> std::same_as<result<typename M::mapping, int>>;
};

/// Where the ring service learns of dying domains: fd() turns readable when the
/// hypervisor reports a domain exception (VIRQ_DOM_EXC), ack() consumes that, and status()
/// asks about one domain (xc_domain_getinfo).
template <class I>
concept domain_info_source = requires(I& i, const I& ci, domid_t domid) {
  { ci.fd() } -> std::same_as<int>;
  {i.ack()};
  { i.status(domid) } -> std::same_as<domain_status>;
};

/// Counters of a ring service (read from the loop's thread, or after it stopped).
struct ring_service_stats {
  std::uint64_t introduced = 0;    ///< domains introduced (first time)
  std::uint64_t reintroduced = 0;  ///< XS_INTRODUCE of a domain already served: ring reset
  std::uint64_t released = 0;      ///< XS_RELEASE
  std::uint64_t died = 0;          ///< found dying or gone after VIRQ_DOM_EXC
  std::uint64_t shutdowns = 0;     ///< found shut down (each fires @releaseDomain)
  std::uint64_t stopped = 0;       ///< connections stopped for breaking the ring or framing
  std::uint64_t events = 0;        ///< event-channel notifications taken
  std::uint64_t spurious = 0;      ///< notifications on a port no domain has
};

/// The domains' side of xenstored, served in a server's loop (server::add_source) beside
/// its socket clients, and the store's domain_hooks. Dom0's own kernel connects through a
/// ring the kernel allocated (serve_local); each guest's ring is mapped at XS_INTRODUCE and
/// dropped at XS_RELEASE or when the domain is found dying or gone after VIRQ_DOM_EXC. Then
/// the store forgets the domain (store::domain_gone: its nodes go to dom0 or away, its
/// quota count to zero, permission entries naming it are dropped) and @releaseDomain fires.
/// A domain found shut down fires @releaseDomain once, until XS_RESUME.
///
/// A guest controls only its own page and event channel: every index and message it
/// writes is checked (ring_connection); one that breaks them loses its connection, and the
/// rest of the store carries on. Each notification does a bounded amount of work; a ring
/// with more left is pumped again before the loop sleeps.
///
/// The three platform pieces are references (they must outlive the service): the real
/// ones are in <xenbus/xen/xenstored.hpp>, and tests use posix::grant_table,
/// posix::evtchn_handle and a scripted domain_info_source.
template <ring_page_mapper Mapper, event_channel Evtchn, domain_info_source Info>
class ring_service final : public connection_source, public domain_hooks {
 public:
  ring_service(store& s, Mapper& mapper, Evtchn& evtchn, Info& info)
      : store_{s}, mapper_{mapper}, evtchn_{evtchn}, info_{info} {
    store_.set_domain_hooks(this);
  }
  ring_service(const ring_service&) = delete;
  ring_service& operator=(const ring_service&) = delete;
  ~ring_service() {
    store_.set_domain_hooks(nullptr);
    for (auto& [domid, d] : domains_)
      if (d->port) (void)evtchn_.unbind(d->port);
  }

  /// Where the service reports what it did (a domain stopped, died, was released): one
  /// line, no newline. None by default.
  void set_log(std::function<void(std::string_view)> log) { log_ = std::move(log); }

  /// Serves a ring that `domid` allocated itself, as dom0's kernel does (/proc/xen/xsd_kva,
  /// its port in /proc/xen/xsd_port): bound to `remote_port` of that domain, attached at
  /// the indices it holds, then signalled so that the kernel's waiting probe starts.
  /// `page` must outlive the service. Errors are errno values.
  result<void, int> serve_local(domid_t domid, std::span<std::byte> page, evtchn_port remote_port,
                                bool privileged = true) {
    if (domains_.count(domid)) return unexpected{EEXIST};
    auto port = evtchn_.bind_interdomain(domid, remote_port);
    if (!port) return unexpected{port.error().sys_errno ? port.error().sys_errno : EINVAL};
    auto conn = ring_connection::attach(store_, page, domid, privileged, false);
    if (!conn) {
      (void)evtchn_.unbind(*port);
      return unexpected{EINVAL};
    }
    auto d = std::make_unique<domain>();
    d->domid = domid;
    d->port = *port;
    d->local = true;
    d->conn = std::move(*conn);
    add(std::move(d));
    (void)evtchn_.notify(*port);
    return {};
  }

  // ---- domain_hooks: the store calls these for privileged requests ---------------------

  result<void, errc> introduce(std::uint32_t domid, std::uint64_t mfn, std::uint32_t remote_port) override {
    const auto id = static_cast<domid_t>(domid);
    if (auto* d = find(domid)) {
      if (d->local) return unexpected{errc::einval};
      // Again for a domain we serve (after a soft reset or a resume): its event channel is
      // bound afresh and the ring starts over, as C xenstored does. Unbinding first hands
      // the guest's port back to it unbound, so the same port may be named again.
      if (d->port) {
        ports_.erase(d->port);
        (void)evtchn_.unbind(d->port);
        d->port = 0;
      }
      auto port = evtchn_.bind_interdomain(id, remote_port);
      if (!port) {
        log("domain " + std::to_string(domid) + ": cannot bind its event channel " + std::to_string(remote_port));
        return unexpected{errno_to_errc(port.error().sys_errno, errc::einval)};
      }
      d->port = *port;
      ports_[*port] = domid;
      d->conn->reset();
      d->shutdown = false;
      note_conn(*d);
      ++stats_.reintroduced;
      (void)evtchn_.notify(d->port);
      return {};
    }
    auto page = mapper_.map_ring(id, mfn);
    if (!page) {
      log("domain " + std::to_string(domid) + ": cannot map its xenstore page: " + errno_text(page.error()));
      return unexpected{errno_to_errc(page.error(), errc::einval)};
    }
    auto port = evtchn_.bind_interdomain(id, remote_port);
    if (!port) {
      log("domain " + std::to_string(domid) + ": cannot bind its event channel " + std::to_string(remote_port));
      return unexpected{errno_to_errc(port.error().sys_errno, errc::einval)};
    }
    auto d = std::make_unique<domain>();
    d->domid = domid;
    d->port = *port;
    d->page.emplace(std::move(*page));
    auto conn = ring_connection::attach(
        store_, std::span<std::byte>{static_cast<std::byte*>(d->page->data()), d->page->size()}, domid, false, true);
    if (!conn) {
      (void)evtchn_.unbind(*port);
      return unexpected{errc::einval};
    }
    d->conn = std::move(*conn);
    add(std::move(d));
    ++stats_.introduced;
    store_.domain_introduced(domid);
    (void)evtchn_.notify(*port);
    return {};
  }

  result<void, errc> release(std::uint32_t domid) override {
    auto* d = find(domid);
    if (!d || d->local) return unexpected{d ? errc::einval : errc::enoent};
    ++stats_.released;
    drop(domid, "released");
    store_.fire_release_domain();
    return {};
  }

  result<void, errc> resume(std::uint32_t domid) override {
    auto* d = find(domid);
    if (!d || d->local) return unexpected{d ? errc::einval : errc::enoent};
    d->shutdown = false;
    return {};
  }

  // ---- connection_source: the server's loop calls these --------------------------------

  std::size_t fds(std::span<int> out) const override {
    std::size_t n = 0;
    if (n < out.size()) out[n++] = evtchn_.fd();
    if (n < out.size()) out[n++] = info_.fd();
    return n;
  }

  void readable(int fd) override {
    if (fd == info_.fd()) {
      info_.ack();
      check_domains();
    }
    if (fd == evtchn_.fd()) take_events();
  }

  bool flush(conn_id id) override {
    auto it = by_conn_.find(id.index);
    if (it == by_conn_.end()) return false;
    domain* d = find(it->second);
    if (!d || d->conn->stopped() || !(d->conn->id() == id)) return false;
    pump(*d);
    return true;
  }

  bool busy() const noexcept override { return !busy_.empty(); }

  void run() override {
    // Pumping one ring can release or introduce another (dom0's requests): look each
    // domain up afresh, never hold on to an entry across a pump.
    std::vector<std::uint32_t> now;
    now.swap(busy_);
    for (auto domid : now)
      if (auto* d = find(domid)) {
        d->busy = false;
        pump(*d);
      }
  }

  /// Asks the hypervisor about every guest served (after VIRQ_DOM_EXC): dying or gone ones
  /// are dropped, newly shut-down ones noted; @releaseDomain fires once if anything changed.
  void check_domains() {
    std::vector<std::uint32_t> ids;
    ids.reserve(domains_.size());
    for (const auto& [domid, d] : domains_)
      if (!d->local) ids.push_back(domid);
    bool fire = false;
    for (auto domid : ids) {
      domain* d = find(domid);
      if (!d) continue;
      const domain_status st = info_.status(static_cast<domid_t>(domid));
      if (st == domain_status::dying || st == domain_status::gone) {
        ++stats_.died;
        drop(domid, st == domain_status::dying ? "dying" : "gone");
        fire = true;
      } else if (st == domain_status::shutdown && !d->shutdown) {
        d->shutdown = true;
        ++stats_.shutdowns;
        fire = true;
      }
    }
    if (fire) store_.fire_release_domain();
  }

  // ---- Inspection (loop thread, or after the loop stopped) ----------------------------

  const ring_service_stats& stats() const noexcept { return stats_; }
  std::size_t domains() const noexcept { return domains_.size(); }
  bool serves(std::uint32_t domid) const { return domains_.count(domid) != 0; }
  /// The store connection of a domain's ring (nullopt when not served or stopped).
  std::optional<conn_id> connection_of(std::uint32_t domid) const {
    auto it = domains_.find(domid);
    if (it == domains_.end() || it->second->conn->stopped()) return std::nullopt;
    return it->second->conn->id();
  }
  /// Why a domain's connection stopped (nullopt while it runs, or when not served).
  std::optional<ring_stop> stop_reason(std::uint32_t domid) const {
    auto it = domains_.find(domid);
    if (it == domains_.end() || !it->second->conn->stopped()) return std::nullopt;
    return it->second->conn->stop_reason();
  }

 private:
  struct domain {
    std::uint32_t domid = 0;
    evtchn_port port = 0;  ///< our end of its event channel
    bool local = false;    ///< a ring the domain allocated itself (dom0's kernel): never dropped
    bool shutdown = false;
    bool busy = false;                             ///< in busy_
    std::optional<typename Mapper::mapping> page;  ///< a guest's mapped page (not for local rings)
    std::unique_ptr<ring_connection> conn;         ///< declared after page: destroyed first
    conn_id last_id{};                             ///< what by_conn_ knows it by
  };

  domain* find(std::uint32_t domid) {
    auto it = domains_.find(domid);
    return it == domains_.end() ? nullptr : it->second.get();
  }

  void add(std::unique_ptr<domain> d) {
    const auto domid = d->domid;
    ports_[d->port] = domid;
    domain& ref = *d;
    domains_[domid] = std::move(d);
    note_conn(ref);
  }

  /// Keeps by_conn_ in step with the ring's store connection (it changes at a reconnect).
  void note_conn(domain& d) {
    if (by_conn_.count(d.last_id.index) && by_conn_[d.last_id.index] == d.domid) by_conn_.erase(d.last_id.index);
    d.last_id = d.conn->id();
    if (!d.conn->stopped()) by_conn_[d.last_id.index] = d.domid;
  }

  /// Ends a guest's connection: its watches go first (so that no event of its own cleanup
  /// is queued for it), then its nodes are handed on, its port unbound and its page unmapped.
  void drop(std::uint32_t domid, std::string_view why) {
    auto it = domains_.find(domid);
    if (it == domains_.end()) return;
    std::unique_ptr<domain> d = std::move(it->second);
    domains_.erase(it);
    if (by_conn_.count(d->last_id.index) && by_conn_[d->last_id.index] == domid) by_conn_.erase(d->last_id.index);
    ports_.erase(d->port);
    d->conn.reset();  // disconnects: watches, transactions and output dropped
    const orphan_report rep = store_.domain_gone(domid);
    if (d->port) (void)evtchn_.unbind(d->port);
    d->page.reset();
    log("domain " + std::to_string(domid) + " " + std::string{why} + ": connection closed, " +
        std::to_string(rep.handed) + " node(s) handed to dom0, " + std::to_string(rep.removed) + " removed, " +
        std::to_string(rep.acl_entries) + " permission entr" + (rep.acl_entries == 1 ? "y" : "ies") + " dropped");
  }

  /// Takes pending notifications (at most 256 per call: the loop comes back while more
  /// wait) and pumps the rings they name.
  void take_events() {
    for (int i = 0; i < 256; ++i) {
      auto p = evtchn_.pending();
      if (!p) return;
      // Unmask before pumping: a notification after our look at the ring is not lost.
      (void)evtchn_.unmask(*p);
      ++stats_.events;
      auto it = ports_.find(*p);
      if (it == ports_.end()) {
        ++stats_.spurious;
        continue;
      }
      if (domain* d = find(it->second)) pump(*d);
    }
  }

  void pump(domain& d) {
    const auto r = d.conn->pump();
    if (r.stopped) {
      ++stats_.stopped;
      log("domain " + std::to_string(d.domid) + ": connection stopped (" + std::string{d.conn->stop_reason().reason} +
          ")");
    }
    if (!(d.last_id == d.conn->id()) || r.stopped) note_conn(d);
    if (r.notify) (void)evtchn_.notify(d.port);
    if (r.more && !d.busy) {
      d.busy = true;
      busy_.push_back(d.domid);
    }
  }

  void log(const std::string& line) {
    if (log_) log_(line);
  }

  static std::string errno_text(int e) { return e ? std::string{std::strerror(e)} : std::string{"unknown error"}; }

  /// The xsd_errors[] name closest to an OS error from mapping or binding.
  static errc errno_to_errc(int e, errc otherwise) noexcept {
    switch (e) {
      case ENOENT:
      case ESRCH:
        return errc::enoent;
      case EACCES:
      case EPERM:
        return errc::eacces;
      case ENOMEM:
        return errc::enomem;
      case EBUSY:
        return errc::ebusy;
      case ENOSPC:
        return errc::enospc;
      default:
        return otherwise;
    }
  }

  store& store_;
  Mapper& mapper_;
  Evtchn& evtchn_;
  Info& info_;
  std::unordered_map<std::uint32_t, std::unique_ptr<domain>> domains_;
  std::unordered_map<evtchn_port, std::uint32_t> ports_;      ///< our port -> domid
  std::unordered_map<std::uint32_t, std::uint32_t> by_conn_;  ///< store connection index -> domid
  std::vector<std::uint32_t> busy_;                           ///< domids with work left
  ring_service_stats stats_;
  std::function<void(std::string_view)> log_;
};

}  // namespace xenstore
XENBUS_END_NAMESPACE
