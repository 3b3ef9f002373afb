// [posix] A stand-in for the hypervisor's grant and event-channel tables: one memfd shared by processes.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Sizes of a machine. Every process that attaches reads them from the shared header.
struct machine_config {
  std::uint32_t frames = 1024;            ///< pages of "guest memory" that can be granted
  std::uint16_t domains = 16;             ///< domain ids 0..domains-1
  std::uint32_t grants_per_domain = 256;  ///< grant references per granting domain
  std::uint32_t ports_per_domain = 64;    ///< event-channel ports per domain (port 0 unused)
};

/// An OS error from creating or attaching a machine.
struct machine_error {
  int sys_errno;
};

namespace detail {

inline constexpr std::uint64_t machine_magic = 0x78656e6275736d31ULL;  // "xenbusm1"

// The header at offset 0 of the memfd. Written once by the creator before any other
// process can see the fd; read-only afterwards except `next_handle`.
struct machine_header {
  std::uint64_t magic;
  std::uint64_t instance;  // random: names the doorbell sockets of this machine
  std::uint32_t frames, domains, grants_per_domain, ports_per_domain;
  std::uint32_t next_handle;    // atomic: event-channel handle ids, from 1
  std::uint32_t leaked_frames;  // atomic: pages ended while the peer still mapped them
  std::uint64_t grants_off, ports_off, bitmap_off, frames_off, total_size;
};

// A grant entry is one 64-bit word so that a mapper reads a consistent snapshot:
// frame (32) | grantee (16) | flags (16). Zero means free.
struct grant_entry {
  std::uint64_t word;  // atomic
  std::uint32_t maps;  // atomic: live mappings by the grantee
  std::uint32_t pad;
};
inline constexpr std::uint64_t gnt_in_use = 1, gnt_writable = 2, gnt_reserved = 4;
constexpr std::uint64_t pack_grant(std::uint32_t frame, domid_t grantee, std::uint64_t flags) noexcept {
  return (std::uint64_t{frame} << 32) | (std::uint64_t{grantee} << 16) | flags;
}
constexpr std::uint32_t grant_frame(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
constexpr domid_t grant_grantee(std::uint64_t w) noexcept { return static_cast<domid_t>(w >> 16); }

// A port's binding is one 64-bit word: remote_port (32) | remote_dom (16) | state (16).
struct port_entry {
  std::uint64_t binding;  // atomic
  std::uint32_t owner;    // atomic: id of the handle the port is bound through
  std::uint32_t pending;  // atomic: raised by the peer's notify, cleared by pending()
  std::uint32_t masked;   // atomic: set by pending(), cleared by unmask()
  std::uint32_t pad;
};
inline constexpr std::uint64_t port_free = 0, port_reserved = 1, port_unbound = 2, port_interdomain = 3;
constexpr std::uint64_t pack_port(std::uint64_t st, domid_t rdom, evtchn_port rport) noexcept {
  return (std::uint64_t{rport} << 32) | (std::uint64_t{rdom} << 16) | st;
}
constexpr std::uint64_t port_state(std::uint64_t b) noexcept { return b & 0xffff; }
constexpr domid_t port_remote_dom(std::uint64_t b) noexcept { return static_cast<domid_t>(b >> 16); }
constexpr evtchn_port port_remote_port(std::uint64_t b) noexcept { return static_cast<evtchn_port>(b >> 32); }

constexpr std::uint64_t round_page(std::uint64_t n) noexcept {
  return (n + xen_page_size - 1) / xen_page_size * xen_page_size;
}

}  // namespace detail

/// The shared tables of one simulated host. The creator (the toolstack) makes the memfd;
/// other processes attach to an inherited or received descriptor. Anyone holding the fd
/// can write every table: this isolates nothing, it reproduces Xen's interfaces so that
/// drivers run unchanged between processes. Peers' entries are still validated on use.
class machine {
 public:
  /// Creates a new machine in a fresh memfd (close-on-exec; see `inheritable()`).
  static result<machine, machine_error> create(const machine_config& cfg = {}) noexcept {
    if (cfg.frames == 0 || cfg.domains == 0 || cfg.grants_per_domain == 0 || cfg.ports_per_domain < 2)
      return unexpected{machine_error{EINVAL}};
    const int fd = ::memfd_create("xenbus-machine", MFD_CLOEXEC);
    if (fd < 0) return unexpected{machine_error{errno}};
    detail::machine_header h{};
    h.magic = detail::machine_magic;
    if (::getrandom(&h.instance, sizeof h.instance, 0) != sizeof h.instance)
      h.instance = std::uint64_t{static_cast<std::uint32_t>(::getpid())} * std::uint64_t{0x9e3779b97f4a7c15};
    h.frames = cfg.frames;
    h.domains = cfg.domains;
    h.grants_per_domain = cfg.grants_per_domain;
    h.ports_per_domain = cfg.ports_per_domain;
    h.next_handle = 1;
    h.grants_off = sizeof h;
    h.ports_off = h.grants_off + sizeof(detail::grant_entry) * cfg.domains * cfg.grants_per_domain;
    h.bitmap_off = h.ports_off + sizeof(detail::port_entry) * cfg.domains * cfg.ports_per_domain;
    h.frames_off = detail::round_page(h.bitmap_off + (cfg.frames + 63) / 64 * 8);
    h.total_size = h.frames_off + std::uint64_t{cfg.frames} * xen_page_size;
    if (::ftruncate(fd, static_cast<off_t>(h.total_size)) != 0 ||
        ::pwrite(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
      const int e = errno;
      ::close(fd);
      return unexpected{machine_error{e}};
    }
    return attach_owned(fd);
  }

  /// Attaches to a machine whose fd this process inherited or received (takes ownership).
  static result<machine, machine_error> attach(int fd) noexcept { return attach_owned(fd); }

  machine(machine&& o) noexcept : fd_{o.fd_}, base_{o.base_}, meta_size_{o.meta_size_} {
    o.fd_ = -1;
    o.base_ = nullptr;
  }
  machine& operator=(machine&&) = delete;
  machine(const machine&) = delete;
  ~machine() {
    if (base_) ::munmap(base_, meta_size_);
    if (fd_ >= 0) ::close(fd_);
  }

  /// The memfd: pass it to a child process (see `inheritable()`) or over SCM_RIGHTS.
  int fd() const noexcept { return fd_; }
  /// Clears close-on-exec so that a child started with exec inherits the fd.
  result<void, machine_error> inheritable() const noexcept {
    const int flags = ::fcntl(fd_, F_GETFD);
    if (flags < 0 || ::fcntl(fd_, F_SETFD, flags & ~FD_CLOEXEC) != 0) return unexpected{machine_error{errno}};
    return {};
  }

  const detail::machine_header& header() const noexcept { return *static_cast<const detail::machine_header*>(base_); }
  std::uint32_t leaked_frames() const noexcept {
    // Relaxed: a statistic, ordered with nothing.
    return std::atomic_ref<std::uint32_t>(hdr().leaked_frames).load(std::memory_order_relaxed);
  }

  // ---- Used by posix::event_channel and posix::grant_table --------------------------------
  detail::grant_entry* grant(domid_t owner, grant_ref ref) const noexcept {
    const auto& h = header();
    if (owner >= h.domains || ref >= h.grants_per_domain) return nullptr;
    return reinterpret_cast<detail::grant_entry*>(static_cast<char*>(base_) + h.grants_off) +
           std::size_t{owner} * h.grants_per_domain + ref;
  }
  detail::port_entry* port(domid_t dom, evtchn_port p) const noexcept {
    const auto& h = header();
    if (dom >= h.domains || p == 0 || p >= h.ports_per_domain) return nullptr;
    return reinterpret_cast<detail::port_entry*>(static_cast<char*>(base_) + h.ports_off) +
           std::size_t{dom} * h.ports_per_domain + p;
  }
  std::uint32_t new_handle_id() const noexcept {
    // Relaxed: ids only need to be unique, which the RMW guarantees.
    return std::atomic_ref<std::uint32_t>(hdr().next_handle).fetch_add(1, std::memory_order_relaxed);
  }
  /// Takes a free frame; returns `frames` when none is left.
  std::uint32_t alloc_frame() const noexcept {
    const auto& h = header();
    auto* words = reinterpret_cast<std::uint64_t*>(static_cast<char*>(base_) + h.bitmap_off);
    for (std::uint32_t w = 0; w < (h.frames + 63) / 64; ++w) {
      std::atomic_ref<std::uint64_t> word(words[w]);
      // Relaxed: the bitmap only arbitrates ownership; the page's contents are published
      // by the grant entry's release store, not by this bit.
      std::uint64_t cur = word.load(std::memory_order_relaxed);
      while (~cur != 0) {
        const unsigned bit = static_cast<unsigned>(__builtin_ctzll(~cur));
        const std::uint32_t f = w * 64 + bit;
        if (f >= h.frames) break;
        if (word.compare_exchange_weak(cur, cur | (std::uint64_t{1} << bit), std::memory_order_relaxed)) return f;
      }
    }
    return h.frames;
  }
  void free_frame(std::uint32_t f) const noexcept {
    const auto& h = header();
    if (f >= h.frames) return;
    auto* words = reinterpret_cast<std::uint64_t*>(static_cast<char*>(base_) + h.bitmap_off);
    // Release: our last writes to the page happen before another owner takes it
    // (pairs with nothing stronger than the next owner's zeroing, which overwrites it).
    std::atomic_ref<std::uint64_t>(words[f / 64]).fetch_and(~(std::uint64_t{1} << (f % 64)), std::memory_order_release);
  }
  void count_leaked_frame() const noexcept {
    // Relaxed: a statistic, ordered with nothing.
    std::atomic_ref<std::uint32_t>(hdr().leaked_frames).fetch_add(1, std::memory_order_relaxed);
  }
  off_t frame_offset(std::uint32_t f) const noexcept {
    return static_cast<off_t>(header().frames_off + std::uint64_t{f} * xen_page_size);
  }

 private:
  machine(int fd, void* base, std::size_t meta) noexcept : fd_{fd}, base_{base}, meta_size_{meta} {}
  detail::machine_header& hdr() const noexcept { return *static_cast<detail::machine_header*>(base_); }

  static result<machine, machine_error> attach_owned(int fd) noexcept {
    detail::machine_header h{};
    if (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
      const int e = errno ? errno : EINVAL;
      ::close(fd);
      return unexpected{machine_error{e}};
    }
    if (h.magic != detail::machine_magic || h.frames_off < h.bitmap_off || h.frames_off % xen_page_size) {
      ::close(fd);
      return unexpected{machine_error{EINVAL}};
    }
    const auto meta = static_cast<std::size_t>(h.frames_off);
    void* base = ::mmap(nullptr, meta, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return unexpected{machine_error{e}};
    }
    return machine{fd, base, meta};
  }

  int fd_;
  void* base_;
  std::size_t meta_size_;
};

}  // namespace posix
XENBUS_END_NAMESPACE
