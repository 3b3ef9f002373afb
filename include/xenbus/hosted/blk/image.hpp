// [hosted] What a block backend serves: the block_image concept (read, write, flush, discard at byte offsets).
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace blk {

/// A run of our memory that one I/O fills or drains (for a block backend: part of a mapped
/// guest page). Laid out like struct iovec, but owned by nobody: the caller keeps it alive.
struct io_buffer {
  std::byte* data;
  std::size_t size;
};

/// Why an image operation failed.
enum class image_errc : std::uint8_t {
  io,             ///< the OS reported an I/O error (see sys_errno)
  not_supported,  ///< the image cannot do this (a discard the file system refuses)
  out_of_range,   ///< offset + length past the end of the image
  read_only,      ///< a write or discard to an image opened read-only
  bad_argument,   ///< not a multiple of the sector size, or an empty buffer list
};

constexpr std::string_view to_string(image_errc e) noexcept {
  switch (e) {
    case image_errc::io:
      return "I/O error";
    case image_errc::not_supported:
      return "operation not supported by the image";
    case image_errc::out_of_range:
      return "range past the end of the image";
    case image_errc::read_only:
      return "image is read-only";
    case image_errc::bad_argument:
      return "bad offset, length or buffers";
  }
  return "(invalid)";
}

struct image_error {
  image_errc code;
  int sys_errno = 0;
};

/// What a block backend tells the frontend about the image (the nodes Linux blkback writes).
struct image_geometry {
  std::uint64_t bytes = 0;                   ///< size; a multiple of sector_size
  std::uint32_t sector_size = 512;           ///< logical block size (`sector-size`)
  std::uint32_t physical_sector_size = 512;  ///< `physical-sector-size`
  bool read_only = false;
  bool volatile_cache = true;             ///< writes may sit in a cache until flush(): offer flushes
  bool discard = false;                   ///< discard() can work
  bool discard_secure = false;            ///< discard(..., secure = true) erases unrecoverably
  std::uint32_t discard_granularity = 0;  ///< bytes (`discard-granularity`)
  std::uint32_t discard_alignment = 0;    ///< bytes (`discard-alignment`)
};

/// A block image: reads and writes of whole sectors at byte offsets into caller buffers,
/// a flush that makes every completed write durable, and a discard. Every call is
/// synchronous: when it returns success, the operation is done as its semantics require
/// (a write is in the image, visible to every later read; after flush() it survives a
/// crash). Each operation checks its range against the image itself, whatever the caller
/// checked before.
template <class I>
concept block_image = requires(I& img, const I& cimg, std::uint64_t offset, std::uint64_t length,
                               std::span<const io_buffer> bufs, bool secure) {
  { cimg.geometry() } -> std::convertible_to<image_geometry>;
  { img.read(offset, bufs) } -> std::same_as<result<void, image_error>>;
  { img.write(offset, bufs) } -> std::same_as<result<void, image_error>>;
  { img.flush() } -> std::same_as<result<void, image_error>>;
  { img.discard(offset, length, secure) } -> std::same_as<result<void, image_error>>;
};

}  // namespace blk
XENBUS_END_NAMESPACE
