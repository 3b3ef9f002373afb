// Test-side helpers for the ring service tests: a dom0 simulated on a posix::machine (store, socket server, ring
// service and its loop thread), guests whose xenstore page and event channel live on the same machine, and a
// scripted source of domain states standing in for VIRQ_DOM_EXC and libxenctrl.
#pragma once

#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/posix/xenstore/ring_service.hpp>
#include <xenbus/posix/xenstore/ring_transport.hpp>
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/eventfd.h>
#include <unistd.h>

namespace xsring {

namespace xs = xenbus::xenstore;
namespace px = xenbus::posix;
using xenbus::domid_t;
using xenbus::evtchn_port;

/// GNTTAB_RESERVED_XENSTORE: the grant entry a guest's xenstore page is found under.
inline constexpr xenbus::grant_ref xenstore_grant = 1;

/// ring_page_mapper over the machine's grant tables: the guest's page by grant entry 1.
class grant_mapper {
 public:
  explicit grant_mapper(px::grant_table& gt) : gt_{&gt} {}
  using mapping = px::grant_table::mapping;
  xenbus::result<mapping, int> map_ring(domid_t domid, std::uint64_t) {
    const xenbus::grant_ref ref = xenstore_grant;
    auto m = gt_->map(domid, std::span<const xenbus::grant_ref>{&ref, 1}, true);
    if (!m) return xenbus::unexpected{m.error().code == xenbus::grant_errc::system ? m.error().sys_errno : EACCES};
    return std::move(*m);
  }

 private:
  px::grant_table* gt_;
};

/// domain_info_source for tests: states set by the test (running unless set), and an
/// eventfd that set() raises as Xen raises VIRQ_DOM_EXC. Thread-safe.
class scripted_domains {
 public:
  scripted_domains() : fd_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)} {}
  ~scripted_domains() { ::close(fd_); }
  int fd() const noexcept { return fd_; }
  void ack() noexcept {
    std::uint64_t v;
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  }
  xs::domain_status status(domid_t domid) {
    std::lock_guard l{m_};
    auto it = states_.find(domid);
    return it == states_.end() ? xs::domain_status::running : it->second;
  }
  /// Sets a domain's state and raises the virtual interrupt.
  void set(domid_t domid, xs::domain_status st) {
    {
      std::lock_guard l{m_};
      states_[domid] = st;
    }
    raise();
  }
  void raise() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  }

 private:
  int fd_;
  std::mutex m_;
  std::map<domid_t, xs::domain_status> states_;
};
static_assert(xs::domain_info_source<scripted_domains>);

/// A ring_event_channel (what the client's ring transport takes) over one port of a
/// posix::evtchn_handle.
class guest_channel {
 public:
  guest_channel(px::evtchn_handle& ev, evtchn_port port) : ev_{&ev}, port_{port} {}
  void notify() noexcept { (void)ev_->notify(port_); }
  int fd() const noexcept { return ev_->fd(); }
  void ack() noexcept {
    while (auto p = ev_->pending()) (void)ev_->unmask(*p);
  }

 private:
  px::evtchn_handle* ev_;
  evtchn_port port_;
};
static_assert(xs::ring_event_channel<guest_channel>);

/// Runs closures on a server's loop thread (a connection_source of its own): the store is
/// the loop's, so tests inspect it through call().
class loop_caller final : public xs::connection_source {
 public:
  loop_caller() : fd_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)} {}
  ~loop_caller() { ::close(fd_); }
  std::size_t fds(std::span<int> out) const override {
    out[0] = fd_;
    return 1;
  }
  void readable(int) override {
    std::uint64_t v;
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
    std::vector<std::function<void()>> now;
    {
      std::lock_guard l{m_};
      now.swap(queue_);
    }
    for (auto& f : now) f();
  }
  bool flush(xs::conn_id) override { return false; }
  bool busy() const noexcept override { return false; }
  void run() override {}

  /// Runs `f` on the loop thread and returns its result.
  template <class F>
  auto call(F f) -> decltype(f()) {
    using R = decltype(f());
    std::promise<R> done;
    auto fut = done.get_future();
    {
      std::lock_guard l{m_};
      queue_.emplace_back([&] {
        if constexpr (std::is_void_v<R>) {
          f();
          done.set_value();
        } else {
          done.set_value(f());
        }
      });
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
    return fut.get();
  }

 private:
  int fd_;
  std::mutex m_;
  std::vector<std::function<void()>> queue_;
};

inline px::machine make_machine() {
  auto m = px::machine::create();
  REQUIRE(m.has_value());
  return std::move(*m);
}

/// A guest on the machine: its event channel (a port offered to dom0, as the domain
/// builder does) and its xenstore page, granted to dom0 under entry 1.
class sim_guest {
 public:
  sim_guest(const px::machine& m, domid_t domid) : domid_{domid}, gt_{m, domid}, ev_{open_ev(m, domid)} {
    auto port = ev_.bind_unbound(0);
    REQUIRE(port.has_value());
    port_ = *port;
    std::array<xenbus::grant_ref, 2> refs{};
    auto pages = gt_.share(0, refs, true);
    REQUIRE(pages.has_value());
    REQUIRE(refs[1] == xenstore_grant);
    pages_.emplace(std::move(*pages));
  }
  domid_t domid() const noexcept { return domid_; }
  /// The port to name in XS_INTRODUCE.
  evtchn_port port() const noexcept { return port_; }
  std::span<std::byte> page() const noexcept {
    return {static_cast<std::byte*>(pages_->data()) + xenbus::xen_page_size, xenbus::xen_page_size};
  }
  xenbus::xenstore_domain_interface_layout* layout() const noexcept {
    return reinterpret_cast<xenbus::xenstore_domain_interface_layout*>(page().data());
  }
  px::evtchn_handle& evtchn() noexcept { return ev_; }
  void notify() { (void)ev_.notify(port_); }

  /// A client over the ring (attach after XS_INTRODUCE, as a guest boots after it).
  xs::client connect() {
    auto t = xs::ring_transport<guest_channel>::attach(page(), guest_channel{ev_, port_});
    REQUIRE(t.has_value());
    return xs::client{std::move(*t)};
  }

 private:
  static px::evtchn_handle open_ev(const px::machine& m, domid_t d) {
    auto e = px::evtchn_handle::open(m, d);
    REQUIRE(e.has_value());
    return std::move(*e);
  }
  domid_t domid_;
  px::grant_table gt_;
  px::evtchn_handle ev_;
  evtchn_port port_ = 0;
  std::optional<px::grant_table::shared_pages> pages_;
};

/// Dom0: the store, the socket server and the ring service on a loop thread, with dom0's
/// own kernel ring (a page and a port of domain 0, as /proc/xen/xsd_kva and xsd_port).
class sim_host {
 public:
  using service = xs::ring_service<grant_mapper, px::evtchn_handle, scripted_domains>;

  explicit sim_host(const px::machine& m, xs::limits l = {}, xs::orphan_policy orphans = xs::orphan_policy::to_dom0)
      : gt0_{m, 0},
        mapper_{gt0_},
        ev0_{open_ev(m)},
        kernel_ev_{open_ev(m)},
        store_{std::make_unique<xs::store>(l)},
        server_{std::make_unique<xs::server>(*store_)},
        svc_{std::make_unique<service>(*store_, mapper_, ev0_, domains)} {
    store_->set_orphans(orphans);
    sock_ = "/tmp/xenbus-xsring-" + std::to_string(::getpid()) + "-" + std::to_string(++seq()) + ".sock";
    REQUIRE(server_->listen(sock_).has_value());
    REQUIRE(server_->add_source(*svc_).has_value());
    REQUIRE(server_->add_source(caller_).has_value());
    auto kport = kernel_ev_.bind_unbound(0);
    REQUIRE(kport.has_value());
    kernel_port_ = *kport;
    svc_->set_log([this](std::string_view line) {
      std::lock_guard l{log_m_};
      log_.emplace_back(line);
    });
    REQUIRE(svc_->serve_local(0, kernel_page_.bytes, kernel_port_).has_value());
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread_ = std::thread([this] { (void)server_->run(stop_fd_); });
  }
  ~sim_host() {
    stop();
    ::close(stop_fd_);
  }
  sim_host(const sim_host&) = delete;
  sim_host& operator=(const sim_host&) = delete;

  void stop() {
    if (!thread_.joinable()) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }

  const std::string& socket() const noexcept { return sock_; }
  /// A privileged socket client (the toolstack's view).
  xs::client toolstack() {
    auto c = xs::client::connect(sock_);
    REQUIRE(c.has_value());
    return std::move(*c);
  }
  /// A client over dom0's own kernel ring (what /dev/xen/xenbus users go through).
  xs::client kernel() {
    auto t = xs::ring_transport<guest_channel>::attach(kernel_page_.bytes, guest_channel{kernel_ev_, kernel_port_});
    REQUIRE(t.has_value());
    return xs::client{std::move(*t)};
  }
  /// Runs `f(store, service)` on the loop thread.
  template <class F>
  auto call(F f) {
    return caller_.call([&] { return f(*store_, *svc_); });
  }
  std::vector<std::string> log() {
    std::lock_guard l{log_m_};
    return log_;
  }

  scripted_domains domains;

 private:
  static px::evtchn_handle open_ev(const px::machine& m) {
    auto e = px::evtchn_handle::open(m, 0);
    REQUIRE(e.has_value());
    return std::move(*e);
  }
  static int& seq() {
    static int s = 0;
    return s;
  }
  struct alignas(4096) kernel_page {
    std::byte bytes[4096]{};
  };

  px::grant_table gt0_;
  grant_mapper mapper_;
  px::evtchn_handle ev0_;
  px::evtchn_handle kernel_ev_;
  evtchn_port kernel_port_ = 0;
  kernel_page kernel_page_;
  std::unique_ptr<xs::store> store_;
  std::unique_ptr<xs::server> server_;
  std::unique_ptr<service> svc_;
  loop_caller caller_;
  std::string sock_;
  int stop_fd_ = -1;
  std::thread thread_;
  std::mutex log_m_;
  std::vector<std::string> log_;
};

}  // namespace xsring
