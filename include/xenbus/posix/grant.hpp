// [posix] Grants between processes: pages of a posix::machine's memfd, shared, mapped and copied by reference.
#pragma once

#include <xenbus/grant.hpp>
#include <xenbus/posix/machine.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>

#include <sys/mman.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Most pages one share() or map() call handles (a ring of order 6, or 64 single pages).
inline constexpr std::size_t max_grant_batch = 64;

namespace detail {
// Maps `n` frames of the machine contiguously: reserve the range, then place each page.
inline void* map_frames(const machine& m, std::span<const std::uint32_t> frames, bool writable) noexcept {
  const std::size_t len = frames.size() * xen_page_size;
  void* base = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    void* at = static_cast<char*>(base) + i * xen_page_size;
    if (::mmap(at, xen_page_size, prot, MAP_SHARED | MAP_FIXED, m.fd(), m.frame_offset(frames[i])) == MAP_FAILED) {
      ::munmap(base, len);
      return nullptr;
    }
  }
  return base;
}
}  // namespace detail

/// Domain `self`'s view of the machine's grant tables: it shares its own pages with a peer
/// (`share`, like libxengntshr), maps pages a peer granted it (`map`, like libxengnttab) or
/// copies to and from them (`copy`, like xengnttab_grant_copy).
class grant_table {
 public:
  grant_table(const machine& m, domid_t self) noexcept : m_{&m}, self_{self} {}

  domid_t domid() const noexcept { return self_; }

  /// Our pages, granted to a peer. Dropping them ends the grants; a page the peer still
  /// maps is not reused (counted in machine::leaked_frames, like Linux's deferred end).
  class shared_pages {
   public:
    shared_pages(shared_pages&& o) noexcept : m_{o.m_}, owner_{o.owner_}, n_{o.n_}, base_{o.base_}, refs_{o.refs_} {
      o.base_ = nullptr;
    }
    shared_pages& operator=(shared_pages&&) = delete;
    ~shared_pages() {
      if (!base_) return;
      ::munmap(base_, size());
      for (std::size_t i = 0; i < n_; ++i) {
        detail::grant_entry* g = m_->grant(owner_, refs_[i]);
        // Seq_cst with map(): either the mapper's recheck sees the entry gone, or we see its map count.
        const std::uint64_t w = std::atomic_ref<std::uint64_t>(g->word).exchange(0, std::memory_order_seq_cst);
        if (std::atomic_ref<std::uint32_t>(g->maps).load(std::memory_order_seq_cst) == 0)
          m_->free_frame(detail::grant_frame(w));
        else
          m_->count_leaked_frame();
      }
    }
    void* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return n_ * xen_page_size; }
    std::span<const grant_ref> refs() const noexcept { return {refs_.data(), n_}; }

   private:
    friend class grant_table;
    shared_pages(const machine* m, domid_t owner, std::size_t n, void* base,
                 const std::array<grant_ref, max_grant_batch>& r) noexcept
        : m_{m}, owner_{owner}, n_{n}, base_{base}, refs_{r} {}
    const machine* m_;
    domid_t owner_;
    std::size_t n_;
    void* base_;
    std::array<grant_ref, max_grant_batch> refs_;
  };

  /// A peer's pages mapped into our address space; unmapped by the destructor.
  class mapping {
   public:
    mapping(mapping&& o) noexcept : m_{o.m_}, owner_{o.owner_}, n_{o.n_}, base_{o.base_}, refs_{o.refs_} {
      o.base_ = nullptr;
    }
    mapping& operator=(mapping&&) = delete;
    ~mapping() {
      if (!base_) return;
      ::munmap(base_, size());
      for (std::size_t i = 0; i < n_; ++i)
        // Release: our accesses to the page happen before the owner may reuse it.
        std::atomic_ref<std::uint32_t>(m_->grant(owner_, refs_[i])->maps).fetch_sub(1, std::memory_order_release);
    }
    void* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return n_ * xen_page_size; }

   private:
    friend class grant_table;
    mapping(const machine* m, domid_t owner, std::size_t n, void* base,
            const std::array<grant_ref, max_grant_batch>& r) noexcept
        : m_{m}, owner_{owner}, n_{n}, base_{base}, refs_{r} {}
    const machine* m_;
    domid_t owner_;
    std::size_t n_;
    void* base_;
    std::array<grant_ref, max_grant_batch> refs_;
  };

  result<shared_pages, grant_error> share(domid_t peer, std::span<grant_ref> refs, bool writable) noexcept {
    const std::size_t n = refs.size();
    if (n == 0 || n > max_grant_batch) return unexpected{grant_error{grant_errc::bad_count}};
    if (peer >= m_->header().domains) return unexpected{grant_error{grant_errc::bad_ref}};
    std::array<std::uint32_t, max_grant_batch> frames{};
    std::array<grant_ref, max_grant_batch> got{};
    std::size_t have_frames = 0, have_refs = 0;
    auto undo = [&] {
      for (std::size_t i = 0; i < have_refs; ++i)
        // Release: hands the reserved entry back; it never held a grant.
        std::atomic_ref<std::uint64_t>(m_->grant(self_, got[i])->word).store(0, std::memory_order_release);
      for (std::size_t i = 0; i < have_frames; ++i) m_->free_frame(frames[i]);
    };
    for (; have_frames < n; ++have_frames) {
      frames[have_frames] = m_->alloc_frame();
      if (frames[have_frames] >= m_->header().frames) {
        undo();
        return unexpected{grant_error{grant_errc::no_space}};
      }
    }
    for (grant_ref r = 0; have_refs < n && r < m_->header().grants_per_domain; ++r) {
      detail::grant_entry* g = m_->grant(self_, r);
      // A reference is reusable only once no mapping of its last grant is left. Acquire:
      // pairs with the mappers' release decrements (their accesses end before our reuse).
      if (std::atomic_ref<std::uint32_t>(g->maps).load(std::memory_order_acquire) != 0) continue;
      std::uint64_t expect = 0;
      // Acquire: the previous grant's end happens before our reuse.
      if (std::atomic_ref<std::uint64_t>(g->word).compare_exchange_strong(expect, detail::gnt_reserved,
                                                                          std::memory_order_acquire))
        got[have_refs++] = r;
    }
    if (have_refs < n) {
      undo();
      return unexpected{grant_error{grant_errc::no_space}};
    }
    void* base = detail::map_frames(*m_, {frames.data(), n}, true);
    if (!base) {
      const int e = errno;
      undo();
      return unexpected{grant_error{grant_errc::system, e}};
    }
    std::memset(base, 0, n * xen_page_size);  // a recycled frame must not leak old contents
    const std::uint64_t flags = detail::gnt_in_use | (writable ? detail::gnt_writable : 0);
    for (std::size_t i = 0; i < n; ++i) {
      refs[i] = got[i];
      // Release: the zeroed page happens before the peer's acquire load of the entry in map().
      std::atomic_ref<std::uint64_t>(m_->grant(self_, got[i])->word)
          .store(detail::pack_grant(frames[i], peer, flags), std::memory_order_release);
    }
    return shared_pages{m_, self_, n, base, got};
  }

  result<mapping, grant_error> map(domid_t owner, std::span<const grant_ref> refs, bool writable) noexcept {
    const std::size_t n = refs.size();
    if (n == 0 || n > max_grant_batch) return unexpected{grant_error{grant_errc::bad_count}};
    std::array<std::uint32_t, max_grant_batch> frames{};
    std::array<grant_ref, max_grant_batch> held{};
    std::size_t have = 0;
    auto undo = [&] {
      for (std::size_t i = 0; i < have; ++i)
        // Release: pairs with the owner's acquire read of the count before reusing the entry.
        std::atomic_ref<std::uint32_t>(m_->grant(owner, held[i])->maps).fetch_sub(1, std::memory_order_release);
    };
    for (; have < n; ++have) {
      // The references come from the peer (ring-refN): check every one.
      detail::grant_entry* g = m_->grant(owner, refs[have]);
      if (!g) {
        undo();
        return unexpected{grant_error{grant_errc::bad_ref}};
      }
      std::atomic_ref<std::uint64_t> word(g->word);
      // Acquire: pairs with the owner's release in share(); the page contents are visible.
      const std::uint64_t w = word.load(std::memory_order_acquire);
      grant_errc bad = grant_errc::bad_ref;
      bool ok =
          (w & detail::gnt_in_use) && detail::grant_grantee(w) == self_ && detail::grant_frame(w) < m_->header().frames;
      if (ok && writable && !(w & detail::gnt_writable)) {
        ok = false;
        bad = grant_errc::read_only;
      }
      if (ok) {
        // Seq_cst with the owner's end of access: count ourselves in, then recheck the entry.
        std::atomic_ref<std::uint32_t>(g->maps).fetch_add(1, std::memory_order_seq_cst);
        if (word.load(std::memory_order_seq_cst) != w) {
          // Relaxed: we never touched the page, so there is nothing to publish.
          std::atomic_ref<std::uint32_t>(g->maps).fetch_sub(1, std::memory_order_relaxed);
          ok = false;
        }
      }
      if (!ok) {
        undo();
        return unexpected{grant_error{bad}};
      }
      held[have] = refs[have];
      frames[have] = detail::grant_frame(w);
    }
    void* base = detail::map_frames(*m_, {frames.data(), n}, writable);
    if (!base) {
      const int e = errno;
      undo();
      return unexpected{grant_error{grant_errc::system, e}};
    }
    return mapping{m_, owner, n, base, held};
  }

  /// Each op checked as map() checks a reference (granted to us, in use, writable when the
  /// page is the destination) and its range within the page; a bad op gets its error, the
  /// others are done. The bytes move by pread/pwrite on the machine's memfd while the
  /// entry's map count holds the page, as a mapping would. Any number of ops.
  result<void, grant_error> copy(std::span<grant_copy_op> ops) noexcept {
    for (auto& op : ops) op.status = copy_one(op);
    return {};
  }

 private:
  result<void, grant_error> copy_one(const grant_copy_op& op) noexcept {
    if (std::size_t{op.offset} + op.length > xen_page_size) return unexpected{grant_error{grant_errc::bad_range}};
    // The reference and domain come from the peer: checked like map()'s.
    detail::grant_entry* g = m_->grant(op.domid, op.ref);
    if (!g) return unexpected{grant_error{grant_errc::bad_ref}};
    std::atomic_ref<std::uint64_t> word(g->word);
    // Acquire: pairs with the owner's release in share(); the page contents are visible.
    const std::uint64_t w = word.load(std::memory_order_acquire);
    if (!(w & detail::gnt_in_use) || detail::grant_grantee(w) != self_ || detail::grant_frame(w) >= m_->header().frames)
      return unexpected{grant_error{grant_errc::bad_ref}};
    const bool writing = op.dir == copy_dir::to_grant;
    if (writing && !(w & detail::gnt_writable)) return unexpected{grant_error{grant_errc::read_only}};
    std::atomic_ref<std::uint32_t> maps(g->maps);
    // Seq_cst with the owner's end of access, as in map(): count ourselves in, then recheck.
    maps.fetch_add(1, std::memory_order_seq_cst);
    if (word.load(std::memory_order_seq_cst) != w) {
      // Relaxed: we never touched the page, so there is nothing to publish.
      maps.fetch_sub(1, std::memory_order_relaxed);
      return unexpected{grant_error{grant_errc::bad_ref}};
    }
    const off_t at = m_->frame_offset(detail::grant_frame(w)) + op.offset;
    const ssize_t n =
        writing ? ::pwrite(m_->fd(), op.local, op.length, at) : ::pread(m_->fd(), op.local, op.length, at);
    const int e = errno;
    // Release: our accesses to the page happen before the owner may reuse it.
    maps.fetch_sub(1, std::memory_order_release);
    if (n != static_cast<ssize_t>(op.length)) return unexpected{grant_error{grant_errc::system, n < 0 ? e : EIO}};
    return {};
  }

  const machine* m_;
  domid_t self_;
};

static_assert(grant_sharer<grant_table> && grant_mapper<grant_table> && grant_copier<grant_table>,
              "posix::grant_table must model xenbus::grant_sharer, grant_mapper and grant_copier");

}  // namespace posix
XENBUS_END_NAMESPACE
