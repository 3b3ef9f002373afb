// [freestanding] Grants as concepts: share pages with a domain by reference, map a peer's granted pages.
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

XENBUS_END_NAMESPACE
