// Test helpers for the ring tests: page-aligned shared memory (private or a memfd mapping
// that survives fork) and eventfd notifications standing in for event channels.
#pragma once

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

namespace xenbus::test {

/// `n` zeroed 4 KiB pages standing in for granted pages. With `shared_across_fork`, they
/// are a MAP_SHARED mapping of a memfd, so a forked child writes the same memory.
class shared_pages {
 public:
  explicit shared_pages(std::size_t n, bool shared_across_fork = false) : bytes_(n * 4096) {
    if (shared_across_fork) {
      const int fd = memfd_create("xenbus-ring-test", MFD_CLOEXEC);
      if (fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes_)) == 0) {
        void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
          p_ = static_cast<std::byte*>(p);
          mapped_ = true;
        }
      }
      if (fd >= 0) close(fd);
      if (p_ == nullptr) std::abort();  // test environment broken, not a ring failure
    } else {
      p_ = static_cast<std::byte*>(std::aligned_alloc(4096, bytes_));
    }
    std::memset(p_, 0, bytes_);
  }
  ~shared_pages() {
    if (mapped_)
      munmap(p_, bytes_);
    else
      std::free(p_);
  }
  shared_pages(const shared_pages&) = delete;
  shared_pages& operator=(const shared_pages&) = delete;

  std::byte* data() const { return p_; }
  std::size_t bytes() const { return bytes_; }
  std::span<std::byte> span() const { return {p_, bytes_}; }

 private:
  std::size_t bytes_;
  std::byte* p_ = nullptr;
  bool mapped_ = false;
};

/// An eventfd: one end writes (the event channel notify), the other polls and reads.
class event_fd {
 public:
  event_fd() : fd_(eventfd(0, EFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
  }
  ~event_fd() { close(fd_); }
  event_fd(const event_fd&) = delete;
  event_fd& operator=(const event_fd&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

inline int kick(int fd) {
  const std::uint64_t one = 1;
  return write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one) ? 0 : -EIO;
}

/// Waits up to `ms` for a notification and consumes it: 0, -ETIMEDOUT or -errno.
inline int wait_event(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  const int n = poll(&p, 1, ms);
  if (n == 0) return -ETIMEDOUT;
  if (n < 0) return -errno;
  std::uint64_t v = 0;
  return read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v) ? 0 : -EIO;
}

}  // namespace xenbus::test
