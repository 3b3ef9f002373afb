// [xen] xenbus grant concepts over the real libxengnttab/libxengntshr (link -lxengnttab; Xen host).
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

 private:
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

static_assert(grant_mapper<gnttab>, "xen::gnttab must model xenbus::grant_mapper");
static_assert(grant_sharer<gntshr>, "xen::gntshr must model xenbus::grant_sharer");

}  // namespace xen
XENBUS_END_NAMESPACE
