// [freestanding] Grants as concepts: share pages with a domain by reference, map or copy a peer's granted pages.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/result.hpp>
#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

XENBUS_BEGIN_NAMESPACE

/// A grant reference, as Xen's grant_ref_t: what `ring-ref` carries.
using grant_ref = std::uint32_t;

/// Why a grant operation failed.
enum class grant_errc : std::uint8_t {
  unavailable,  ///< no grant device (not on Xen, or the machine is gone)
  no_space,     ///< no free page or grant entry
  bad_ref,      ///< the reference is out of range or not granted to this domain
  read_only,    ///< a writable mapping of a read-only grant
  bad_count,    ///< zero pages, or more than one call may map
  system,       ///< an OS call failed; see sys_errno
  bad_range,    ///< a copy's offset + length runs past the end of the granted page
};

constexpr std::string_view to_string(grant_errc e) noexcept {
  switch (e) {
    case grant_errc::unavailable:
      return "no grant device";
    case grant_errc::no_space:
      return "no free page or grant entry";
    case grant_errc::bad_ref:
      return "grant reference not granted to this domain";
    case grant_errc::read_only:
      return "grant is read-only";
    case grant_errc::bad_count:
      return "bad page count";
    case grant_errc::system:
      return "system call failed";
    case grant_errc::bad_range:
      return "copy runs past the granted page";
  }
  return "(invalid)";
}

struct grant_error {
  grant_errc code;
  int sys_errno = 0;
};

/// Pages mapped or shared: contiguous in our address space, released by the destructor.
template <class M>
concept grant_pages = std::move_constructible<M> && requires(const M& m) {
  { m.data() } -> std::same_as<void*>;
  { m.size() } -> std::same_as<std::size_t>;  // bytes
};

/// The granting side (libxengntshr's model): allocates `refs.size()` zeroed pages, grants
/// each to domain `peer` and writes the references to `refs`. Dropping the returned pages
/// ends the grants.
template <class S>
concept grant_sharer = requires(S& s, domid_t peer, std::span<grant_ref> refs, bool writable) {
  typename S::shared_pages;
  requires grant_pages<typename S::shared_pages>;
  { s.share(peer, refs, writable) } -> std::same_as<result<typename S::shared_pages, grant_error>>;
};

/// The mapping side (libxengnttab's model): maps the pages domain `owner` granted us under
/// `refs`, contiguously. The references come from the peer and are checked.
template <class G>
concept grant_mapper = requires(G& g, domid_t owner, std::span<const grant_ref> refs, bool writable) {
  typename G::mapping;
  requires grant_pages<typename G::mapping>;
  { g.map(owner, refs, writable) } -> std::same_as<result<typename G::mapping, grant_error>>;
};

/// Which way a grant copy moves the bytes.
enum class copy_dir : std::uint8_t {
  from_grant,  ///< the granted page is the source, `local` the destination (a write's data)
  to_grant,    ///< `local` is the source, the granted page the destination (a read's data)
};

/// One grant copy (Xen's gnttab_copy with one side in our memory): `length` bytes between
/// `local` and `offset` in the page domain `domid` granted us under `ref`. `offset + length`
/// must stay within the page; `local` may cross our pages. The copier sets `status`.
struct grant_copy_op {
  std::byte* local;
  domid_t domid;
  grant_ref ref;
  std::uint16_t offset;
  std::uint16_t length;
  copy_dir dir;
  result<void, grant_error> status{};  ///< this op's own outcome, set by copy()
};

/// The copying side (libxengnttab's xengnttab_grant_copy): does every op in `ops`, each
/// checked on its own (the references come from the peer) and given its own status; a bad
/// op never stops the others. An error from the call itself (no grant device, a failed
/// system call) is also written to the status of every op it may have left undone. Optional: a grant_mapper need not be
/// a grant_copier.
template <class G>
concept grant_copier = requires(G& g, std::span<grant_copy_op> ops) {
  { g.copy(ops) } -> std::same_as<result<void, grant_error>>;
};

XENBUS_END_NAMESPACE
