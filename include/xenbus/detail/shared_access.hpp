// Atomic access to indices on a shared page and copy-once reads of peer-writable memory.
#pragma once

#include <xenbus/ring_common.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cstring>
#include <type_traits>

XENBUS_BEGIN_NAMESPACE
namespace detail {

// std::atomic_ref needs its object suitably aligned; the Xen layouts put every index on a
// 4-byte boundary, and attach() checks the base address of the shared area.
static_assert(std::atomic_ref<ring_idx>::required_alignment <= alignof(ring_idx),
              "ring indices must be accessible through std::atomic_ref at natural alignment");
static_assert(std::atomic_ref<ring_idx>::is_always_lock_free,
              "a shared ring index needs lock-free 32-bit atomics: the peer is another "
              "process or domain and cannot share a lock with us");

/// One access to a shared index with the order the caller names (and justifies).
inline ring_idx load(ring_idx& shared, std::memory_order order) noexcept {
  return std::atomic_ref<ring_idx>(shared).load(order);
}
inline void store(ring_idx& shared, ring_idx v, std::memory_order order) noexcept {
  std::atomic_ref<ring_idx>(shared).store(v, order);
}

/// Copies a peer-writable object out of shared memory exactly once (XSA-155).
/// The empty asm tells the compiler the private copy may have changed after the memcpy,
/// so it cannot drop the copy and re-read the shared slot at each later use, which is
/// what turned RING_GET_REQUEST users into double fetches.
template <class T>
inline void copy_once(T& out, const void* shared) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  std::memcpy(&out, shared, sizeof(T));
#if defined(__GNUC__) || defined(__clang__)
  asm volatile("" : "+m"(out));
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace detail
XENBUS_END_NAMESPACE
