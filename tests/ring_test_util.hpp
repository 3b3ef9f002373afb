// Test helpers for the ring tests: page-aligned shared memory, private or in a memfd.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <span>

namespace xenbus::test {

/// `n` zeroed, page-aligned 4 KiB pages of private memory standing in for granted pages.
class shared_pages {
 public:
  explicit shared_pages(std::size_t n)
      : bytes_(n * 4096), p_(static_cast<std::byte*>(std::aligned_alloc(4096, bytes_))) {
    std::memset(p_, 0, bytes_);
  }
  ~shared_pages() { std::free(p_); }
  shared_pages(const shared_pages&) = delete;
  shared_pages& operator=(const shared_pages&) = delete;

  std::byte* data() const { return p_; }
  std::size_t bytes() const { return bytes_; }
  std::span<std::byte> span() const { return {p_, bytes_}; }

 private:
  std::size_t bytes_;
  std::byte* p_;
};

}  // namespace xenbus::test
