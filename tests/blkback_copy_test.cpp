// xenbus-blkback's engine with data_path::copy (include/xenbus/hosted/blk/engine.hpp):
// the same data reaches the image and the guest as with mapping, for direct, partial-page
// and indirect requests; a segment whose grant copy fails answers BLKIF_RSP_ERROR, writes
// nothing to the image and leaves the ring working; persistent grants are not offered.
#include "blkback_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>

namespace {

using namespace blktest;
using blkif::op_read;
using blkif::op_write;

constexpr std::size_t image_bytes = 4 << 20;  // 8192 sectors

std::string node(rig<>& r, std::string_view key) {
  auto v = r.ts.read(no_tx, r.tk.address().backend_dir() + "/" + std::string(key));
  return v ? *v : std::string("(absent)");
}

blk::device_options copy_mode(blk::device_options o = {}) {
  o.path = blk::data_path::copy;
  return o;
}

TEST_CASE("copy mode: feature-persistent = 0 even for a frontend that asks, nothing is mapped persistently") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(copy_mode({.persistent_grants = 8}), {}, true), r.dump());
  CHECK(r.dev->path() == blk::data_path::copy);
  CHECK(node(r, "feature-persistent") == "0");
  CHECK_FALSE(r.dev->persistent());
  for (unsigned p = 0; p < 4; ++p) {
    fill(r.page(p), 4096, p);
    CHECK(r.roundtrip(r.rw(op_write, p, p * 8, {r.full(p)})).status == blkif::rsp_okay);
  }
  const auto s = r.dev->stats();
  CHECK(s.persistent_maps == 0);
  CHECK(s.persistent_hits == 0);
  CHECK(s.grant_copies == 4);
  CHECK(r.dump().find("grant copy") != std::string::npos);
}

TEST_CASE("copy mode and map mode move the same bytes, across partial pages") {
  for (auto path : {blk::data_path::map, blk::data_path::copy}) {
    CAPTURE(to_string(path));
    ram_image img{image_bytes};
    rig r{img};
    blk::device_options o;
    o.path = path;
    REQUIRE_MESSAGE(r.up(o), r.dump());
    REQUIRE(r.dev->path() == path);
    for (unsigned p = 0; p < 3; ++p) fill(r.page(p), 4096, p + 10);
    // Sectors 2..7 of page 0, all of page 1, sectors 0..3 of page 2: 18 sectors.
    const std::vector<blkif::segment> segs{{r.ref(0), 2, 7}, r.full(1), {r.ref(2), 0, 3}};
    REQUIRE(r.roundtrip(r.rw(op_write, 7, 100, segs)).status == blkif::rsp_okay);
    std::vector<std::byte> want;
    want.insert(want.end(), r.page(0) + 2 * 512, r.page(0) + 4096);
    want.insert(want.end(), r.page(1), r.page(1) + 4096);
    want.insert(want.end(), r.page(2), r.page(2) + 4 * 512);
    CHECK(std::memcmp(img.data.data() + 100 * 512, want.data(), want.size()) == 0);
    CHECK(std::all_of(img.data.begin(), img.data.begin() + 100 * 512, [](std::byte b) { return b == std::byte{0}; }));
    CHECK(std::all_of(img.data.begin() + 118 * 512, img.data.end(), [](std::byte b) { return b == std::byte{0}; }));

    // Back into other pages at other offsets: the bytes outside the segments stay as they were.
    for (unsigned p = 3; p < 6; ++p) std::memset(r.page(p), 0xee, 4096);
    const std::vector<blkif::segment> back{{r.ref(3), 0, 5}, r.full(4), {r.ref(5), 4, 7}};
    REQUIRE(r.roundtrip(r.rw(op_read, 8, 100, back)).status == blkif::rsp_okay);
    CHECK(std::memcmp(r.page(3), want.data(), 6 * 512) == 0);
    CHECK(std::all_of(r.page(3) + 6 * 512, r.page(3) + 4096, [](std::byte b) { return b == std::byte{0xee}; }));
    CHECK(std::memcmp(r.page(4), want.data() + 6 * 512, 4096) == 0);
    CHECK(std::all_of(r.page(5), r.page(5) + 4 * 512, [](std::byte b) { return b == std::byte{0xee}; }));
    CHECK(std::memcmp(r.page(5) + 4 * 512, want.data() + 14 * 512, 4 * 512) == 0);

    // A flush with data: written, then durable, before the answer.
    fill(r.page(6), 4096, 66);
    REQUIRE(r.roundtrip(r.rw(blkif::op_flush_diskcache, 9, 200, {r.full(6)})).status == blkif::rsp_okay);
    CHECK(std::memcmp(img.durable.data() + 200 * 512, r.page(6), 4096) == 0);
    CHECK(img.out_of_range == 0);
    if (path == blk::data_path::copy) CHECK(r.dev->stats().grant_copies == 3 + 3 + 1);
  }
}

TEST_CASE("copy mode: indirect requests of 1 to 1024 segments, over one or two indirect pages") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(copy_mode({.max_indirect_segments = 1024})), r.dump());
  CHECK(node(r, "feature-max-indirect-segments") == "1024");
  for (unsigned nseg : {1u, 11u, 12u, 256u, 300u}) {
    CAPTURE(nseg);
    std::vector<unsigned> data;
    for (unsigned i = 0; i < nseg; ++i) {
      data.push_back(i);
      fill(r.page(i), 4096, i + nseg);
    }
    auto w = r.roundtrip(r.indirect(op_write, 9, 16, data, {500}));
    CHECK(w.status == blkif::rsp_okay);
    CHECK(w.operation == op_write);
    for (unsigned i = 0; i < nseg; ++i)
      REQUIRE(std::memcmp(img.data.data() + 16 * 512 + i * 4096, r.page(i), 4096) == 0);
    for (unsigned i = 0; i < nseg; ++i) std::memset(r.page(i), 0, 4096);
    auto rd = r.roundtrip(r.indirect(op_read, 10, 16, data, {500}));
    CHECK(rd.status == blkif::rsp_okay);
    CHECK(rd.operation == op_read);
    for (unsigned i = 0; i < nseg; ++i)
      REQUIRE(std::memcmp(img.data.data() + 16 * 512 + i * 4096, r.page(i), 4096) == 0);
  }
  // 1024 segments (the bound of the bounce buffer: 4 MiB) over two indirect pages, each
  // segment one sector of a page the pool reuses; read back into a patterned sector each.
  std::vector<blkif::segment> segs;
  for (unsigned i = 0; i < 1024; ++i) {
    const auto sect = static_cast<std::uint8_t>(i / 400 % 8);
    segs.push_back(blkif::segment{r.ref(i % 400), sect, sect});
    fill(r.page(i % 400) + sect * 512, 512, i);
  }
  REQUIRE(r.roundtrip(r.indirect_segs(op_write, 11, 0, segs, {500, 501})).status == blkif::rsp_okay);
  for (unsigned i = 0; i < 1024; ++i)
    REQUIRE(std::memcmp(img.data.data() + i * 512, r.page(i % 400) + (i / 400 % 8) * 512, 512) == 0);
  auto too_many = segs;
  too_many.push_back(segs[0]);
  CHECK(r.roundtrip(r.indirect_segs(op_write, 12, 0, too_many, {500, 501, 502})).status == blkif::rsp_error);
}

/// Runs `bad` in copy mode: answered BLKIF_RSP_ERROR as a grant failure, the image not
/// written, and a good request on the same ring still answered OKAY.
void expect_copy_failure(rig<>& r, ram_image& img, const blkif::request& bad) {
  const auto before = img.data;
  const unsigned writes = img.writes;
  const auto bad_grants = r.dev->stats().bad_grants;
  auto rsp = r.roundtrip(bad);
  CHECK(rsp.id == bad.id);
  CHECK(rsp.status == blkif::rsp_error);
  CHECK(r.dev->stats().bad_grants == bad_grants + 1);
  CHECK(img.data == before);
  CHECK(img.writes == writes);
  CHECK(img.out_of_range == 0);
  CHECK_FALSE(r.fe->queue_at(0).ring->broken().has_value());
  CHECK_FALSE(r.dev->driver().queue_at(0).ring->broken().has_value());
  fill(r.page(0), 4096, 77);
  CHECK(r.roundtrip(r.rw(op_write, bad.id + 1, 2000, {r.full(0)})).status == blkif::rsp_okay);
  CHECK(std::memcmp(img.data.data() + 2000 * 512, r.page(0), 4096) == 0);
  img.data = before;  // that good write was ours: the next check starts from the same image
  CHECK(r.fe->connected());
  CHECK(r.dev->connected());
}

TEST_CASE("copy mode: a bad grant answers BLKIF_RSP_ERROR, writes nothing and leaves the ring working") {
  ram_image img{image_bytes};
  for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<std::byte>(i * 31);
  rig r{img};
  REQUIRE_MESSAGE(r.up(copy_mode()), r.dump());
  for (unsigned p = 0; p < 16; ++p) fill(r.page(p), 4096, p);

  SUBCASE("a write naming a never-granted reference, alone or after good segments") {
    expect_copy_failure(r, img, r.rw(op_write, 60, 0, {blkif::segment{2000, 0, 7}}));
    expect_copy_failure(r, img, r.rw(op_write, 62, 0, {r.full(0), r.full(1), blkif::segment{2000, 0, 7}}));
    expect_copy_failure(r, img, r.rw(op_write, 64, 0, {blkif::segment{0xfffffff0u, 0, 7}, r.full(1)}));
  }
  SUBCASE("a write from a page granted to another domain") {
    std::array<grant_ref, 1> other{};
    auto other_page = r.fgr.share(3, other, true);
    REQUIRE(other_page);
    expect_copy_failure(r, img, r.rw(op_write, 68, 0, {blkif::segment{other[0], 0, 7}}));
  }
  SUBCASE(
      "a read into a read-only grant, or a never-granted one: the guest's other pages get the data, "
      "the answer is an error") {
    std::array<grant_ref, 1> ro{};
    auto ro_page = r.fgr.share(back_dom, ro, false);
    REQUIRE(ro_page);
    expect_copy_failure(r, img, r.rw(op_read, 66, 0, {blkif::segment{ro[0], 0, 7}}));
    CHECK(std::all_of(static_cast<std::byte*>(ro_page->data()), static_cast<std::byte*>(ro_page->data()) + 4096,
                      [](std::byte b) { return b == std::byte{0}; }));
    expect_copy_failure(r, img, r.rw(op_read, 70, 0, {r.full(2), blkif::segment{2000, 0, 7}}));
  }
  SUBCASE("a write from a read-only grant is fine: the page is only read") {
    std::array<grant_ref, 1> ro{};
    auto ro_page = r.fgr.share(back_dom, ro, false);
    REQUIRE(ro_page);
    CHECK(r.roundtrip(r.rw(op_write, 72, 8, {blkif::segment{ro[0], 0, 7}})).status == blkif::rsp_okay);
    CHECK(std::all_of(img.data.begin() + 8 * 512, img.data.begin() + 16 * 512,
                      [](std::byte b) { return b == std::byte{0}; }));
  }
  SUBCASE("a bad indirect page, and a bad data page named inside a good one") {
    auto in = r.indirect(op_write, 80, 0, {0, 1}, {500});
    blkif::request_indirect view;
    std::memcpy(&view, &in, sizeof view);
    view.indirect_grefs[0] = 2000;
    std::memcpy(&in, &view, sizeof view);
    expect_copy_failure(r, img, in);
    expect_copy_failure(r, img, r.indirect_segs(op_write, 82, 0, {r.full(0), blkif::segment{2001, 0, 7}}, {500}));
    expect_copy_failure(r, img, r.indirect_segs(op_read, 84, 0, {r.full(0), blkif::segment{2001, 0, 7}}, {500}));
  }
  SUBCASE("segments are still checked before any copy: bad sectors are refused, not copied") {
    const auto copies = r.dev->stats().grant_copies;
    CHECK(r.roundtrip(r.rw(op_write, 90, 0, {blkif::segment{r.ref(0), 5, 4}})).status == blkif::rsp_error);
    CHECK(r.roundtrip(r.rw(op_write, 92, 0, {blkif::segment{r.ref(0), 0, 8}})).status == blkif::rsp_error);
    CHECK(r.roundtrip(r.indirect_segs(op_write, 94, 0, {r.full(0), blkif::segment{r.ref(1), 3, 2}}, {500})).status ==
          blkif::rsp_error);
    CHECK(r.dev->stats().refused == 3);
    CHECK(r.dev->stats().grant_copies == copies + 1);  // only the indirect page was copied
    CHECK(img.writes == 0);
  }
  CHECK(r.dev->connected());
}

}  // namespace
