// [freestanding] Atomic access to indices on a shared page and copy-once reads of peer-writable memory.
#pragma once

#include <xenbus/ring/common.hpp>
#include <xenbus/version.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

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

#if defined(__GNUC__) || defined(__clang__)
/// One word of a copy_once: a plain load, made opaque, stored into the private copy.
/// The empty asm (not volatile) says "w may have become anything": after it the compiler
/// can only use the register it loaded, never derive the value again by re-reading the
/// shared slot (the double fetch of XSA-155). Being non-volatile, it is dropped with the
/// load when nothing reads that word of the copy, as RING_COPY_*'s volatile struct copy
/// is in practice: a consumer that looks at two fields fetches only their words.
template <class W>
inline void copy_word(unsigned char* dst, const unsigned char* src) noexcept {
  W w;
  std::memcpy(&w, src, sizeof w);
  asm("" : "+r"(w));
  std::memcpy(dst, &w, sizeof w);
}
template <std::size_t... I>
inline void copy_words(unsigned char* dst, const unsigned char* src, std::index_sequence<I...>) noexcept {
  (copy_word<std::uint64_t>(dst + I * 8, src + I * 8), ...);
}
#endif

/// Copies a peer-writable object out of shared memory exactly once (XSA-155): every byte
/// of `out` that the program reads was fetched from `shared` once, here, and never again;
/// the slot can change afterwards without the copy changing. Bytes of the copy that
/// nothing reads may not be fetched at all (see copy_word).
template <class T>
inline void copy_once(T& out, const void* shared) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
#if defined(__GNUC__) || defined(__clang__)
  auto* dst = reinterpret_cast<unsigned char*>(&out);
  const auto* src = static_cast<const unsigned char*>(shared);
  constexpr std::size_t words = sizeof(T) / 8;
  copy_words(dst, src, std::make_index_sequence<words>{});
  constexpr std::size_t tail = words * 8;
  if constexpr (sizeof(T) - tail >= 4) copy_word<std::uint32_t>(dst + tail, src + tail);
  constexpr std::size_t t2 = tail + (sizeof(T) - tail >= 4 ? 4 : 0);
  if constexpr (sizeof(T) - t2 >= 2) copy_word<std::uint16_t>(dst + t2, src + t2);
  constexpr std::size_t t1 = t2 + (sizeof(T) - t2 >= 2 ? 2 : 0);
  if constexpr (sizeof(T) - t1 >= 1) copy_word<std::uint8_t>(dst + t1, src + t1);
#else
  // Elsewhere: copy everything, then a compiler barrier on the copy.
  std::memcpy(&out, shared, sizeof(T));
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

/// memcpy of a run-time length for the byte rings. Where the caller's bounds are visible
/// (a byte ring of a constant 1 KiB), GCC would inline `rep movsq`, whose start-up cost on
/// current x86-64 cores dominates the 16- to 256-byte copies of a byte ring: copies of up
/// to 16 bytes are done here with two overlapping moves, longer ones by the C library's
/// vector memcpy (the asm hides the bound so that GCC calls it).
inline void copy_bytes(void* dst, const void* src, std::size_t n) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (n <= 16) {
    if (n >= 8) {
      std::uint64_t a, b;
      std::memcpy(&a, s, 8);
      std::memcpy(&b, s + n - 8, 8);
      std::memcpy(d, &a, 8);
      std::memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
      std::uint32_t a, b;
      std::memcpy(&a, s, 4);
      std::memcpy(&b, s + n - 4, 4);
      std::memcpy(d, &a, 4);
      std::memcpy(d + n - 4, &b, 4);
    } else {
      for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
    }
    return;
  }
#if defined(__GNUC__) || defined(__clang__)
  asm("" : "+r"(n));
#endif
  std::memcpy(d, s, n);
}

}  // namespace detail
XENBUS_END_NAMESPACE
