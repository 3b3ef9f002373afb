// posix::file_image (include/xenbus/posix/blk/file_image.hpp): sizes, scattered reads and
// writes, hole punching, and the range and mode checks it makes whatever its caller checked;
// and the blkif checks of protocol/blkif.hpp on their own.
#include <xenbus/posix/blk/file_image.hpp>
#include <xenbus/protocol/blkif.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using namespace xenbus;

struct temp_file {
  std::string path;
  explicit temp_file(std::size_t bytes) {
    char tmpl[] = "/tmp/xenbus-image-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path = tmpl;
    std::vector<unsigned char> data(bytes);
    for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<unsigned char>(i % 253 + 1);
    REQUIRE(::write(fd, data.data(), bytes) == static_cast<ssize_t>(bytes));
    ::close(fd);
  }
  ~temp_file() { ::unlink(path.c_str()); }
  std::vector<unsigned char> contents() const {
    std::vector<unsigned char> out;
    const int fd = ::open(path.c_str(), O_RDONLY);
    unsigned char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.insert(out.end(), buf, buf + n);
    ::close(fd);
    return out;
  }
};

TEST_CASE("file_image: size in whole sectors, scattered buffers in and out") {
  temp_file f{(1 << 20) + 100};  // a tail of 100 bytes that is not a sector
  auto img = posix::file_image::open(f.path, false);
  REQUIRE(img);
  CHECK(img->geometry().bytes == (1 << 20));
  CHECK(img->geometry().sector_size == 512);
  CHECK_FALSE(img->geometry().read_only);
  std::vector<std::byte> a(512, std::byte{0xaa}), b(1536, std::byte{0xbb});
  const blk::io_buffer out[] = {{a.data(), a.size()}, {b.data(), b.size()}};
  REQUIRE(img->write(4096, out));
  auto c = f.contents();
  CHECK(c[4095] == 4095 % 253 + 1);
  CHECK(c[4096] == 0xaa);
  CHECK(c[4096 + 512] == 0xbb);
  CHECK(c[4096 + 2047] == 0xbb);
  CHECK(c[4096 + 2048] == (4096 + 2048) % 253 + 1);
  std::vector<std::byte> x(1024), y(1024);
  const blk::io_buffer in[] = {{x.data(), x.size()}, {y.data(), y.size()}};
  REQUIRE(img->read(4096, in));
  CHECK(x[0] == std::byte{0xaa});
  CHECK(x[600] == std::byte{0xbb});
  CHECK(y[1023] == std::byte{0xbb});
  CHECK(img->flush());
}

TEST_CASE("file_image refuses what lies outside the file or is not whole sectors, and writes nothing") {
  temp_file f{1 << 20};
  auto img = posix::file_image::open(f.path, false);
  REQUIRE(img);
  const auto before = f.contents();
  std::vector<std::byte> buf(4096, std::byte{1});
  const blk::io_buffer one[] = {{buf.data(), buf.size()}};
  CHECK(img->write((1 << 20) - 2048, one).error().code == blk::image_errc::out_of_range);
  CHECK(img->write(~std::uint64_t{0} - 511, one).error().code == blk::image_errc::out_of_range);
  CHECK(img->write(100, one).error().code == blk::image_errc::bad_argument);
  const blk::io_buffer odd[] = {{buf.data(), 100}};
  CHECK(img->write(0, odd).error().code == blk::image_errc::bad_argument);
  CHECK(img->write(0, {}).error().code == blk::image_errc::bad_argument);
  CHECK(img->discard((1 << 20) - 512, 1024, false).error().code == blk::image_errc::out_of_range);
  CHECK(f.contents() == before);
  CHECK(f.contents().size() == (1u << 20));  // nothing grew the file
}

TEST_CASE("file_image discards by punching a hole that reads as zeros") {
  temp_file f{1 << 20};
  auto img = posix::file_image::open(f.path, false);
  REQUIRE(img);
  if (!img->geometry().discard) {
    MESSAGE("this file system cannot punch holes: discard is not offered, which is the behaviour under test");
    CHECK(img->discard(0, 512, false).error().code == blk::image_errc::not_supported);
    return;
  }
  CHECK(img->geometry().discard_granularity > 0);
  REQUIRE(img->discard(8192, 8192, false));
  auto c = f.contents();
  CHECK(c.size() == (1u << 20));
  CHECK(c[8191] == 8191 % 253 + 1);
  for (std::size_t i = 8192; i < 16384; ++i) REQUIRE(c[i] == 0);
  CHECK(c[16384] == 16384 % 253 + 1);
  CHECK(img->discard(0, 512, true).error().code == blk::image_errc::not_supported);  // no secure erase on a file
}

TEST_CASE("file_image opened read-only refuses writes and discards") {
  temp_file f{1 << 20};
  auto img = posix::file_image::open(f.path, true);
  REQUIRE(img);
  CHECK(img->geometry().read_only);
  CHECK_FALSE(img->geometry().discard);
  std::vector<std::byte> buf(512);
  const blk::io_buffer one[] = {{buf.data(), buf.size()}};
  CHECK(img->write(0, one).error().code == blk::image_errc::read_only);
  CHECK(img->discard(0, 512, false).error().code == blk::image_errc::read_only);
  CHECK(img->read(0, one));
  CHECK(posix::file_image::open("/nonexistent/image", false).error().code == blk::image_errc::io);
  CHECK(posix::file_image::open("/tmp", true).error().code == blk::image_errc::bad_argument);  // a directory
}

TEST_CASE("blkif::check: the limits each request kind is held to") {
  blkif::limits l;
  l.capacity_sectors = 1000;
  l.max_indirect_segments = 32;
  l.flush = l.barrier = l.discard = true;
  blkif::request r{};
  r.operation = blkif::op_read;
  r.nr_segments = 2;
  r.id = 42;
  r.sector_number = 984;
  r.seg[0] = {1, 0, 7};
  r.seg[1] = {2, 0, 7};
  auto c = blkif::check(r, l);
  REQUIRE(c);
  CHECK(c->nr_sectors == 16);
  CHECK(c->what == blkif::action::read);
  r.sector_number = 985;
  CHECK(blkif::check(r, l).error() == blkif::refusal::out_of_range);
  r.sector_number = 0;
  r.seg[1] = {2, 7, 6};
  CHECK(blkif::check(r, l).error() == blkif::refusal::bad_segment);
  r.seg[1] = {2, 0, 8};
  CHECK(blkif::check(r, l).error() == blkif::refusal::bad_segment);
  r.seg[1] = {2, 7, 7};
  CHECK(blkif::check(r, l)->nr_sectors == 9);
  l.align_sectors = 8;
  CHECK(blkif::check(r, l).error() == blkif::refusal::misaligned);
  l.align_sectors = 1;
  r.operation = blkif::op_write;
  l.read_only = true;
  CHECK(blkif::check(r, l).error() == blkif::refusal::read_only);
  l.read_only = false;
  r.operation = blkif::op_flush_diskcache;
  r.nr_segments = 0;
  CHECK(blkif::check(r, l)->what == blkif::action::flush);
  l.flush = false;
  CHECK(blkif::check(r, l).error() == blkif::refusal::not_offered);
  CHECK(blkif::status_of(blkif::refusal::not_offered) == blkif::rsp_eopnotsupp);
  CHECK(blkif::status_of(blkif::refusal::out_of_range) == blkif::rsp_error);
  r.operation = 9;
  CHECK(blkif::check(r, l).error() == blkif::refusal::unknown_operation);
  auto rsp = blkif::refuse(r, blkif::refusal::unknown_operation);
  CHECK(rsp.id == 42);
  CHECK(rsp.operation == 9);
  CHECK(rsp.status == blkif::rsp_eopnotsupp);

  blkif::request_indirect in{};
  in.operation = blkif::op_indirect;
  in.indirect_op = blkif::op_write;
  in.nr_segments = 33;
  in.id = 7;
  blkif::request ir{};
  std::memcpy(&ir, &in, sizeof in);
  CHECK(blkif::check(ir, l).error() == blkif::refusal::bad_segment_count);
  in.nr_segments = 32;
  std::memcpy(&ir, &in, sizeof in);
  auto ic = blkif::check(ir, l);
  REQUIRE(ic);
  CHECK(ic->nr_indirect_pages == 1);
  CHECK(ic->operation == blkif::op_write);
  std::vector<blkif::segment> segs(32, blkif::segment{5, 0, 7});
  CHECK(blkif::check_indirect_segments(*ic, segs, l));
  CHECK(ic->nr_sectors == 256);
  segs.resize(31);
  CHECK(blkif::check_indirect_segments(*ic, segs, l).error() == blkif::refusal::bad_segment_count);
  segs.assign(32, blkif::segment{5, 0, 7});
  ic->sector = 800;
  CHECK(blkif::check_indirect_segments(*ic, segs, l).error() == blkif::refusal::out_of_range);
  CHECK(blkif::indirect_pages(512) == 1);
  CHECK(blkif::indirect_pages(513) == 2);
  CHECK(blkif::indirect_pages(4096) == 8);
}

}  // namespace
