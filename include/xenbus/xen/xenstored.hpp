// [xen] The hypervisor's side of a dom0 xenstored: guests' pages (gnttab or foreign mapping), dying domains
// (VIRQ_DOM_EXC and libxenctrl) and dom0's own kernel ring (link -lxenctrl -lxenforeignmemory -lxengnttab -lxenevtchn).
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/posix/xenstore/ring_service.hpp>
#include <xenbus/ring/common.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

extern "C" {
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xentoollog.h>
#include <xen/grant_table.h>
#include <xen/xen.h>

// From <xenctrl.h>, which C++ cannot include in strict mode (Xen's <xen/foreign/*.h> and
// anonymous unions in <xen/hvm/save.h>): the same declarations, with the same types, so a
// translation unit that includes both still compiles. tests/xsring_xenctrl_layout.c checks
// the two fields read below against the real header.
struct xc_interface_core;
struct xen_domctl_getdomaininfo;
struct xc_interface_core* xc_interface_open(struct xentoollog_logger* logger, struct xentoollog_logger* dombuild_logger,
                                            unsigned open_flags);
int xc_interface_close(struct xc_interface_core* xch);
int xc_domain_getinfolist(struct xc_interface_core* xch, uint32_t first_domain, unsigned int max_domains,
                          struct xen_domctl_getdomaininfo* info);
}

XENBUS_BEGIN_NAMESPACE
namespace xen {

/// The layout facts of xc_domaininfo_t (struct xen_domctl_getdomaininfo) that status()
/// relies on: the domain id (domid_t) at offset 0, the XEN_DOMINF_* flags (uint32_t) at
/// offset 4, and a size within xc_domaininfo_bytes.
inline constexpr std::size_t xc_domaininfo_domain_offset = 0;
inline constexpr std::size_t xc_domaininfo_flags_offset = 4;
inline constexpr std::size_t xc_domaininfo_bytes = 1024;
inline constexpr std::uint32_t xen_dominf_dying = 1u << 0;     ///< XEN_DOMINF_dying
inline constexpr std::uint32_t xen_dominf_shutdown = 1u << 2;  ///< XEN_DOMINF_shutdown

/// Maps a guest's xenstore page for xenstore::ring_service: the reserved grant entry
/// (GNTTAB_RESERVED_XENSTORE, which the domain builder fills in for dom0) through
/// /dev/xen/gntdev, as C xenstored does; if the guest has no such grant, the frame the
/// toolstack named in XS_INTRODUCE through privcmd (libxenforeignmemory), as oxenstored does.
class ring_mapper {
 public:
  /// Opens gntdev (required) and privcmd (optional: only the fallback needs it).
  static result<ring_mapper, int> open() noexcept {
    errno = 0;
    xengnttab_handle* g = ::xengnttab_open(nullptr, 0);
    if (!g) return unexpected{errno ? errno : ENODEV};
    // One grant per guest: room for every domid (C xenstored asks for the same). Newer
    // kernels ignore it.
    (void)::xengnttab_set_max_grants(g, DOMID_FIRST_RESERVED);
    xenforeignmemory_handle* f = ::xenforeignmemory_open(nullptr, 0);
    return ring_mapper{g, f};
  }
  ring_mapper(ring_mapper&& o) noexcept : g_{std::exchange(o.g_, nullptr)}, f_{std::exchange(o.f_, nullptr)} {}
  ring_mapper& operator=(ring_mapper&&) = delete;
  ~ring_mapper() {
    if (f_) ::xenforeignmemory_close(f_);
    if (g_) ::xengnttab_close(g_);
  }

  /// One mapped page; unmapped (through the interface that mapped it) when destroyed.
  class mapping {
   public:
    mapping(mapping&& o) noexcept : g_{o.g_}, f_{o.f_}, base_{std::exchange(o.base_, nullptr)} {}
    mapping& operator=(mapping&&) = delete;
    ~mapping() {
      if (!base_) return;
      if (g_)
        ::xengnttab_unmap(g_, base_, 1);
      else
        ::xenforeignmemory_unmap(f_, base_, 1);
    }
    void* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return xen_page_size; }

   private:
    friend class ring_mapper;
    mapping(xengnttab_handle* g, xenforeignmemory_handle* f, void* base) noexcept : g_{g}, f_{f}, base_{base} {}
    xengnttab_handle* g_;  ///< set when mapped by grant; otherwise the foreign mapping's f_
    xenforeignmemory_handle* f_;
    void* base_;
  };

  result<mapping, int> map_ring(domid_t domid, std::uint64_t mfn) noexcept {
    errno = 0;
    if (void* p = ::xengnttab_map_grant_ref(g_, domid, GNTTAB_RESERVED_XENSTORE, PROT_READ | PROT_WRITE))
      return mapping{g_, nullptr, p};
    const int grant_errno = errno ? errno : EINVAL;
    if (!f_ || mfn == 0) return unexpected{grant_errno};
    const xen_pfn_t frame = static_cast<xen_pfn_t>(mfn);
    int err = 0;
    errno = 0;
    void* p = ::xenforeignmemory_map(f_, domid, PROT_READ | PROT_WRITE, 1, &frame, &err);
    if (!p) return unexpected{errno ? errno : grant_errno};
    if (err != 0) {
      ::xenforeignmemory_unmap(f_, p, 1);
      return unexpected{err < 0 ? -err : err};
    }
    return mapping{nullptr, f_, p};
  }

 private:
  ring_mapper(xengnttab_handle* g, xenforeignmemory_handle* f) noexcept : g_{g}, f_{f} {}
  xengnttab_handle* g_;
  xenforeignmemory_handle* f_;
};
static_assert(xenstore::ring_page_mapper<ring_mapper>);

/// Dying domains, for xenstore::ring_service: VIRQ_DOM_EXC bound on an event-channel
/// handle of its own (fd() turns readable when a domain shuts down or dies), and
/// libxenctrl's domain list to ask about one domain.
class domain_info {
 public:
  static result<domain_info, int> open() noexcept {
    errno = 0;
    xc_interface_core* xc = ::xc_interface_open(nullptr, nullptr, 0);
    if (!xc) return unexpected{errno ? errno : ENODEV};
    errno = 0;
    xenevtchn_handle* ev = ::xenevtchn_open(nullptr, 0);
    if (!ev) {
      const int e = errno ? errno : ENODEV;
      ::xc_interface_close(xc);
      return unexpected{e};
    }
    const xenevtchn_port_or_error_t port = ::xenevtchn_bind_virq(ev, VIRQ_DOM_EXC);
    if (port < 0) {
      const int e = errno ? errno : EBUSY;
      ::xenevtchn_close(ev);
      ::xc_interface_close(xc);
      return unexpected{e};
    }
    return domain_info{xc, ev, static_cast<evtchn_port>(port)};
  }
  domain_info(domain_info&& o) noexcept
      : xc_{std::exchange(o.xc_, nullptr)}, ev_{std::exchange(o.ev_, nullptr)}, port_{o.port_} {}
  domain_info& operator=(domain_info&&) = delete;
  ~domain_info() {
    if (ev_) {
      ::xenevtchn_unbind(ev_, port_);
      ::xenevtchn_close(ev_);
    }
    if (xc_) ::xc_interface_close(xc_);
  }

  int fd() const noexcept { return ::xenevtchn_fd(ev_); }

  /// Takes the pending VIRQ and unmasks it (never blocks: libxenevtchn's pending() may).
  void ack() noexcept {
    pollfd p{fd(), POLLIN, 0};
    while (::poll(&p, 1, 0) > 0) {
      const xenevtchn_port_or_error_t got = ::xenevtchn_pending(ev_);
      if (got < 0) return;
      ::xenevtchn_unmask(ev_, static_cast<evtchn_port_t>(got));
    }
  }

  /// One hypercall: the first domain from `domid` on; it is `domid` or that one is gone.
  xenstore::domain_status status(domid_t domid) noexcept {
    alignas(8) unsigned char info[xc_domaininfo_bytes] = {};
    const int n = ::xc_domain_getinfolist(xc_, domid, 1,
                                          reinterpret_cast<struct xen_domctl_getdomaininfo*>(static_cast<void*>(info)));
    if (n < 0) return xenstore::domain_status::running;  // no answer: assume nothing changed
    domid_t got = 0;
    std::uint32_t flags = 0;
    std::memcpy(&got, info + xc_domaininfo_domain_offset, sizeof got);
    std::memcpy(&flags, info + xc_domaininfo_flags_offset, sizeof flags);
    if (n == 0 || got != domid) return xenstore::domain_status::gone;
    if (flags & xen_dominf_dying) return xenstore::domain_status::dying;
    if (flags & xen_dominf_shutdown) return xenstore::domain_status::shutdown;
    return xenstore::domain_status::running;
  }

 private:
  domain_info(xc_interface_core* xc, xenevtchn_handle* ev, evtchn_port port) noexcept : xc_{xc}, ev_{ev}, port_{port} {}
  xc_interface_core* xc_;
  xenevtchn_handle* ev_;
  evtchn_port port_;
};
static_assert(xenstore::domain_info_source<domain_info>);

/// Dom0's own kernel ring: the page its kernel allocated (/proc/xen/xsd_kva, mapped here)
/// and the unbound port it offers to the xenstored (/proc/xen/xsd_port).
class local_ring {
 public:
  static constexpr const char* default_kva = "/proc/xen/xsd_kva";
  static constexpr const char* default_port = "/proc/xen/xsd_port";

  /// True where this is dom0 with xenfs mounted (the two files exist).
  static bool present(const char* kva = default_kva) noexcept { return ::access(kva, F_OK) == 0; }

  static result<local_ring, int> open(const char* kva = default_kva, const char* port_file = default_port) noexcept {
    const int pf = ::open(port_file, O_RDONLY | O_CLOEXEC);
    if (pf < 0) return unexpected{errno};
    char text[32] = {};
    const ssize_t got = ::read(pf, text, sizeof text - 1);
    const int read_errno = errno;
    ::close(pf);
    if (got <= 0) return unexpected{got < 0 ? read_errno : EINVAL};
    char* end = nullptr;
    const unsigned long port = std::strtoul(text, &end, 10);
    if (end == text || port == 0 || port > 0xffffffffUL) return unexpected{EINVAL};
    const int kf = ::open(kva, O_RDWR | O_CLOEXEC);
    if (kf < 0) return unexpected{errno};
    void* p = ::mmap(nullptr, xen_page_size, PROT_READ | PROT_WRITE, MAP_SHARED, kf, 0);
    const int map_errno = errno;
    ::close(kf);
    if (p == MAP_FAILED) return unexpected{map_errno};
    return local_ring{p, static_cast<evtchn_port>(port)};
  }
  local_ring(local_ring&& o) noexcept : base_{std::exchange(o.base_, nullptr)}, port_{o.port_} {}
  local_ring& operator=(local_ring&&) = delete;
  ~local_ring() {
    if (base_) ::munmap(base_, xen_page_size);
  }

  std::span<std::byte> page() const noexcept { return {static_cast<std::byte*>(base_), xen_page_size}; }
  /// The kernel's unbound port, to bind with bind_interdomain(0, port()).
  evtchn_port port() const noexcept { return port_; }

 private:
  local_ring(void* base, evtchn_port port) noexcept : base_{base}, port_{port} {}
  void* base_;
  evtchn_port port_;
};

}  // namespace xen
XENBUS_END_NAMESPACE
