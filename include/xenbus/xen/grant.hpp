// [xen] xenbus grant concepts over the real libxengnttab/libxengntshr (link -lxengnttab; Xen host): map, copy, share.
#pragma once

#include <xenbus/grant.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <cerrno>
#include <cstdint>
#include <span>

#include <sys/mman.h>

extern "C" {
#include <xengnttab.h>
}

XENBUS_BEGIN_NAMESPACE
namespace xen {

/// Most pages one call maps or shares (the largest ring xenbus negotiates: order 6).
inline constexpr std::size_t max_grant_batch = 64;

/// Maps a peer's grants through /dev/xen/gntdev (libxengnttab).
class gnttab {
 public:
  static result<gnttab, grant_error> open() noexcept {
    errno = 0;
    xengnttab_handle* h = ::xengnttab_open(nullptr, 0);
    if (!h) return unexpected{grant_error{grant_errc::unavailable, errno}};
    return gnttab{h};
  }
  gnttab(gnttab&& o) noexcept : h_{o.h_} { o.h_ = nullptr; }
  gnttab& operator=(gnttab&&) = delete;
  ~gnttab() {
    if (h_) ::xengnttab_close(h_);
  }

  class mapping {
   public:
    mapping(mapping&& o) noexcept : h_{o.h_}, base_{o.base_}, n_{o.n_} { o.base_ = nullptr; }
    mapping& operator=(mapping&&) = delete;
    ~mapping() {
      if (base_) ::xengnttab_unmap(h_, base_, n_);
    }
    void* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return std::size_t{n_} * xen_page_size; }

   private:
    friend class gnttab;
    mapping(xengnttab_handle* h, void* b, std::uint32_t n) noexcept : h_{h}, base_{b}, n_{n} {}
    xengnttab_handle* h_;
    void* base_;
    std::uint32_t n_;
  };

  result<mapping, grant_error> map(domid_t owner, std::span<const grant_ref> refs, bool writable) noexcept {
    if (refs.empty() || refs.size() > max_grant_batch) return unexpected{grant_error{grant_errc::bad_count}};
    std::array<std::uint32_t, max_grant_batch> r{};
    for (std::size_t i = 0; i < refs.size(); ++i) r[i] = refs[i];
    const auto n = static_cast<std::uint32_t>(refs.size());
    void* p = ::xengnttab_map_domain_grant_refs(h_, n, owner, r.data(), writable ? PROT_READ | PROT_WRITE : PROT_READ);
    if (!p) return unexpected{grant_error{grant_errc::system, errno}};
    return mapping{h_, p, n};
  }

  /// The ops through xengnttab_grant_copy (IOCTL_GNTDEV_GRANT_COPY), at most
  /// max_grant_batch per call; the layout is libxengnttab's segment (a virtual address on
  /// our side, ref/offset/domid on the granted side, GNTCOPY_source_gref or
  /// GNTCOPY_dest_gref saying which). An op whose range leaves the page is refused here:
  /// gntdev would fail the whole call with EINVAL for it. A failed call gives its errno to
  /// every op of its batch and of the batches after it (nothing is known about them).
  result<void, grant_error> copy(std::span<grant_copy_op> ops) noexcept {
    std::array<xengnttab_grant_copy_segment_t, max_grant_batch> segs{};
    std::array<std::size_t, max_grant_batch> which{};
    std::size_t n = 0;
    auto flush = [&]() -> result<void, grant_error> {
      if (n == 0) return {};
      errno = 0;
      if (::xengnttab_grant_copy(h_, static_cast<std::uint32_t>(n), segs.data()) != 0)
        return unexpected{grant_error{grant_errc::system, errno ? errno : EIO}};
      for (std::size_t k = 0; k < n; ++k) ops[which[k]].status = status_of(segs[k].status);
      n = 0;
      return {};
    };
    for (std::size_t i = 0; i < ops.size(); ++i) {
      grant_copy_op& op = ops[i];
      if (std::size_t{op.offset} + op.length > xen_page_size) {
        op.status = unexpected{grant_error{grant_errc::bad_range}};
        continue;
      }
      xengnttab_grant_copy_segment_t& s = segs[n];
      s = {};
      s.len = op.length;
      auto& foreign = op.dir == copy_dir::from_grant ? s.source.foreign : s.dest.foreign;
      foreign.ref = op.ref;
      foreign.offset = op.offset;
      foreign.domid = op.domid;
      if (op.dir == copy_dir::from_grant) {
        s.dest.virt = op.local;
        s.flags = GNTCOPY_source_gref;
      } else {
        s.source.virt = op.local;
        s.flags = GNTCOPY_dest_gref;
      }
      which[n] = i;
      if (++n == max_grant_batch) {
        if (auto f = flush(); !f) return fail_from(ops, which[0], f.error());
      }
    }
    if (n > 0)
      if (auto f = flush(); !f) return fail_from(ops, which[0], f.error());
    return {};
  }

 private:
  // The hypervisor's per-op status (GNTST_*) in the library's vocabulary. Xen answers a
  // copy into a read-only grant with GNTST_general_error, as it answers a grant to another
  // domain or not in use (grant_table.c, _set_status_v1), so read_only never comes from
  // here: every refusal but a bad range is bad_ref (bad_gntref, bad_domain, XSM's
  // permission_denied, bad_page, an eagain gntdev's own retries gave up on).
  static result<void, grant_error> status_of(std::int16_t st) noexcept {
    if (st == GNTST_okay) return {};
    if (st == GNTST_bad_copy_arg) return unexpected{grant_error{grant_errc::bad_range}};
    return unexpected{grant_error{grant_errc::bad_ref}};
  }
  // Gives the call's error to every op from index `first` on that was (or would have been)
  // passed to gntdev; the ones refused for their range keep bad_range.
  static result<void, grant_error> fail_from(std::span<grant_copy_op> ops, std::size_t first, grant_error e) noexcept {
    for (std::size_t i = first; i < ops.size(); ++i)
      if (std::size_t{ops[i].offset} + ops[i].length <= xen_page_size) ops[i].status = unexpected{e};
    return unexpected{e};
  }

  explicit gnttab(xengnttab_handle* h) noexcept : h_{h} {}
  xengnttab_handle* h_;
};

/// Shares our pages with a peer through /dev/xen/gntalloc (libxengntshr).
class gntshr {
 public:
  static result<gntshr, grant_error> open() noexcept {
    errno = 0;
    xengntshr_handle* h = ::xengntshr_open(nullptr, 0);
    if (!h) return unexpected{grant_error{grant_errc::unavailable, errno}};
    return gntshr{h};
  }
  gntshr(gntshr&& o) noexcept : h_{o.h_} { o.h_ = nullptr; }
  gntshr& operator=(gntshr&&) = delete;
  ~gntshr() {
    if (h_) ::xengntshr_close(h_);
  }

  class shared_pages {
   public:
    shared_pages(shared_pages&& o) noexcept : h_{o.h_}, base_{o.base_}, n_{o.n_} { o.base_ = nullptr; }
    shared_pages& operator=(shared_pages&&) = delete;
    ~shared_pages() {
      if (base_) ::xengntshr_unshare(h_, base_, n_);
    }
    void* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return std::size_t{n_} * xen_page_size; }

   private:
    friend class gntshr;
    shared_pages(xengntshr_handle* h, void* b, std::uint32_t n) noexcept : h_{h}, base_{b}, n_{n} {}
    xengntshr_handle* h_;
    void* base_;
    std::uint32_t n_;
  };

  result<shared_pages, grant_error> share(domid_t peer, std::span<grant_ref> refs, bool writable) noexcept {
    if (refs.empty() || refs.size() > max_grant_batch) return unexpected{grant_error{grant_errc::bad_count}};
    std::array<std::uint32_t, max_grant_batch> r{};
    const auto n = static_cast<std::uint32_t>(refs.size());
    void* p = ::xengntshr_share_pages(h_, peer, static_cast<int>(n), r.data(), writable ? 1 : 0);
    if (!p) return unexpected{grant_error{grant_errc::system, errno}};
    for (std::size_t i = 0; i < refs.size(); ++i) refs[i] = r[i];
    return shared_pages{h_, p, n};
  }

 private:
  explicit gntshr(xengntshr_handle* h) noexcept : h_{h} {}
  xengntshr_handle* h_;
};

static_assert(grant_mapper<gnttab> && grant_copier<gnttab>,
              "xen::gnttab must model xenbus::grant_mapper and grant_copier");
static_assert(grant_sharer<gntshr>, "xen::gntshr must model xenbus::grant_sharer");

}  // namespace xen
XENBUS_END_NAMESPACE
