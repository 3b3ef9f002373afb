// [posix] A block image over a raw image file or a block device: preadv/pwritev, fdatasync, hole punching or
// BLKDISCARD.
#pragma once

#include <xenbus/hosted/blk/image.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// An image file or a block device, opened once. The page cache is its volatile cache:
/// a write is visible to every reader when write() returns, and durable after flush()
/// (fdatasync). Discard punches a hole in a file (it then reads as zeros) or issues
/// BLKDISCARD (BLKSECDISCARD for a secure one) on a device. A regular file's size is
/// rounded down to whole 512-byte sectors; a device reports its own sector sizes.
class file_image {
 public:
  using error = blk::image_error;
  using errc = blk::image_errc;

  /// Opens `path` for reading and writing (or reading only).
  static result<file_image, error> open(const std::string& path, bool read_only) noexcept {
    const int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return unexpected{error{errc::io, errno}};
    file_image img{fd, read_only};
    if (auto g = img.probe(); !g) return unexpected{g.error()};
    return img;
  }

  file_image(file_image&& o) noexcept : fd_{o.fd_}, g_{o.g_}, device_{o.device_} { o.fd_ = -1; }
  file_image& operator=(file_image&&) = delete;
  file_image(const file_image&) = delete;
  ~file_image() {
    if (fd_ >= 0) ::close(fd_);
  }

  const blk::image_geometry& geometry() const noexcept { return g_; }
  int fd() const noexcept { return fd_; }
  bool is_device() const noexcept { return device_; }

  result<void, error> read(std::uint64_t offset, std::span<const blk::io_buffer> bufs) noexcept {
    return transfer(offset, bufs, false);
  }
  result<void, error> write(std::uint64_t offset, std::span<const blk::io_buffer> bufs) noexcept {
    if (g_.read_only) return unexpected{error{errc::read_only}};
    return transfer(offset, bufs, true);
  }
  result<void, error> flush() noexcept {
    if (::fdatasync(fd_) != 0) return unexpected{error{errc::io, errno}};
    return {};
  }
  result<void, error> discard(std::uint64_t offset, std::uint64_t length, bool secure) noexcept {
    if (g_.read_only) return unexpected{error{errc::read_only}};
    if (!in_range(offset, length)) return unexpected{error{errc::out_of_range}};
    if (length == 0) return {};
    if (!g_.discard || (secure && !g_.discard_secure)) return unexpected{error{errc::not_supported}};
    if (device_) {
      std::uint64_t range[2] = {offset, length};
      if (::ioctl(fd_, secure ? BLKSECDISCARD : BLKDISCARD, range) != 0) return unexpected{io_or_unsupported(errno)};
      return {};
    }
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) != 0)
      return unexpected{io_or_unsupported(errno)};
    return {};
  }

 private:
  file_image(int fd, bool ro) noexcept : fd_{fd} { g_.read_only = ro; }

  static error io_or_unsupported(int e) noexcept {
    return error{e == EOPNOTSUPP || e == ENOTTY || e == EINVAL ? errc::not_supported : errc::io, e};
  }

  bool in_range(std::uint64_t offset, std::uint64_t length) const noexcept {
    return offset <= g_.bytes && length <= g_.bytes - offset;
  }

  result<void, error> probe() noexcept {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return unexpected{error{errc::io, errno}};
    if (S_ISBLK(st.st_mode)) {
      device_ = true;
      std::uint64_t bytes = 0;
      int lbs = 512;
      unsigned pbs = 512;
      if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0 || ::ioctl(fd_, BLKSSZGET, &lbs) != 0)
        return unexpected{error{errc::io, errno}};
      if (::ioctl(fd_, BLKPBSZGET, &pbs) != 0) pbs = static_cast<unsigned>(lbs);
      if (lbs < 512 || (lbs & (lbs - 1)) != 0) return unexpected{error{errc::bad_argument}};
      g_.sector_size = static_cast<std::uint32_t>(lbs);
      g_.physical_sector_size = pbs >= g_.sector_size ? pbs : g_.sector_size;
      g_.bytes = bytes / g_.sector_size * g_.sector_size;
      // What the device's queue says about discard (0 bytes: it has none).
      const std::string q =
          "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + "/queue/";
      const std::uint64_t max_discard = read_sysfs_number(q + "discard_max_bytes");
      g_.discard = !g_.read_only && max_discard > 0;
      if (g_.discard) {
        const std::uint64_t gran = read_sysfs_number(q + "discard_granularity");
        g_.discard_granularity = gran > 0 && gran <= 0xffffffffu ? static_cast<std::uint32_t>(gran) : g_.sector_size;
      }
      return {};
    }
    if (!S_ISREG(st.st_mode)) return unexpected{error{errc::bad_argument}};
    g_.bytes = static_cast<std::uint64_t>(st.st_size) / 512 * 512;
    g_.sector_size = 512;
    g_.physical_sector_size = 512;
    if (!g_.read_only) {
      // Can this file system punch holes? Try one past the end of the file, where there is
      // no data to lose (KEEP_SIZE: the size does not change).
      g_.discard = ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, 4096) == 0;
      if (g_.discard)
        g_.discard_granularity =
            st.st_blksize > 0 && st.st_blksize <= 0x10000 ? static_cast<std::uint32_t>(st.st_blksize) : 4096;
    }
    return {};
  }

  static std::uint64_t read_sysfs_number(const std::string& path) noexcept {
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (!f) return 0;
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) != 1) v = 0;
    std::fclose(f);
    return v;
  }

  // Moves exactly the buffers' bytes at `offset`, in calls of at most IOV_MAX buffers,
  // resuming after a short transfer or EINTR.
  result<void, error> transfer(std::uint64_t offset, std::span<const blk::io_buffer> bufs, bool out) noexcept {
    std::uint64_t total = 0;
    for (const auto& b : bufs) {
      if (b.size > g_.bytes) return unexpected{error{errc::out_of_range}};
      total += b.size;
    }
    if (bufs.empty() || total % 512 != 0 || offset % 512 != 0) return unexpected{error{errc::bad_argument}};
    if (!in_range(offset, total)) return unexpected{error{errc::out_of_range}};
    constexpr std::size_t batch = IOV_MAX < 1024 ? IOV_MAX : 1024;
    std::array<iovec, batch> iov;
    for (std::size_t next = 0; next < bufs.size();) {  // bufs[next] is the first not yet in iov
      std::size_t n = 0;
      for (std::size_t i = next; i < bufs.size() && n < batch; ++i, ++n) iov[n] = iovec{bufs[i].data, bufs[i].size};
      std::size_t first = 0;  // iov[first] is the next to move
      while (first < n) {
        const ssize_t r = out ? ::pwritev(fd_, &iov[first], static_cast<int>(n - first), static_cast<off_t>(offset))
                              : ::preadv(fd_, &iov[first], static_cast<int>(n - first), static_cast<off_t>(offset));
        if (r < 0) {
          if (errno == EINTR) continue;
          return unexpected{error{errc::io, errno}};
        }
        if (r == 0) return unexpected{error{errc::io, EIO}};  // end of a file that shrank under us
        offset += static_cast<std::uint64_t>(r);
        auto left = static_cast<std::size_t>(r);
        while (left > 0 && first < n) {
          if (left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            ++first;
          } else {
            iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
            left = 0;
          }
        }
      }
      next += n;
    }
    return {};
  }

  int fd_;
  blk::image_geometry g_{};
  bool device_ = false;
};

static_assert(blk::block_image<file_image>, "posix::file_image must model xenbus::blk::block_image");

}  // namespace posix
XENBUS_END_NAMESPACE
