// xenbus-blkback's engine (include/xenbus/hosted/blk/, protocol/blkif.hpp) against our own
// blkif frontend over the POSIX machine: what it publishes, read/write/flush/discard,
// multi-page rings, queues, indirect segments, persistent grants, every kind of bad
// request, hostile ring indices, and a frontend that vanishes mid-I/O.
#include "blkback_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>

namespace {

using namespace blktest;
using blkif::op_read;
using blkif::op_write;

constexpr std::size_t image_bytes = 4 << 20;  // 8192 sectors
constexpr std::uint64_t image_sectors = image_bytes / 512;

std::string node(rig<>& r, std::string_view key) {
  auto v = r.ts.read(no_tx, r.tk.address().backend_dir() + "/" + std::string(key));
  return v ? *v : std::string("(absent)");
}

TEST_CASE("the backend publishes the nodes Linux blkfront reads, as Linux blkback writes them") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  CHECK(node(r, "sectors") == "8192");
  CHECK(node(r, "info") == "0");
  CHECK(node(r, "sector-size") == "512");
  CHECK(node(r, "physical-sector-size") == "512");
  CHECK(node(r, "feature-flush-cache") == "1");
  CHECK(node(r, "feature-barrier") == "1");
  CHECK(node(r, "feature-discard") == "1");
  CHECK(node(r, "discard-granularity") == "4096");
  CHECK(node(r, "discard-alignment") == "0");
  CHECK(node(r, "discard-secure") == "0");
  CHECK(node(r, "feature-max-indirect-segments") == "256");
  CHECK(node(r, "feature-persistent") == "1");
  CHECK(node(r, "max-ring-page-order") == "4");
  CHECK(node(r, "multi-queue-max-queues") == "4");
  CHECK(node(r, "state") == "4");
}

TEST_CASE("a read-only image: info has VDISK_READONLY, no flush or discard is offered, writes fail") {
  ram_image img{image_bytes, true};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  CHECK(node(r, "info") == "4");
  CHECK(node(r, "feature-flush-cache") == "0");
  CHECK(node(r, "feature-discard") == "0");
  fill(r.page(0), 4096, 1);
  CHECK(r.roundtrip(r.rw(op_write, 1, 0, {r.full(0)})).status == blkif::rsp_error);
  CHECK(r.roundtrip(r.rw(blkif::op_flush_diskcache, 2, 0, {})).status == blkif::rsp_eopnotsupp);
  CHECK(r.roundtrip(r.rw(op_read, 3, 0, {r.full(0)})).status == blkif::rsp_okay);
  CHECK(img.writes == 0);
}

TEST_CASE("discard-enable = 0 from the toolstack: nothing about discard is written, discards are refused") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE(r.tk.create());
  REQUIRE(r.ts.write(no_tx, r.tk.address().backend_dir() + "/discard-enable", "0"));
  r.dev.emplace(r.bs, r.bev, r.bgr, img, back_dom, front_dom, vdev);
  REQUIRE(r.dev->start());
  REQUIRE_MESSAGE(r.start_frontend(), r.dump());
  CHECK(node(r, "feature-discard") == "(absent)");
  CHECK(node(r, "discard-granularity") == "(absent)");
  blkif::request d{};
  blkif::request_discard dd{blkif::op_discard, 0, 0, 5, 0, 8};
  std::memcpy(&d, &dd, sizeof dd);
  CHECK(r.roundtrip(d).status == blkif::rsp_eopnotsupp);
  CHECK(img.discards == 0);
}

TEST_CASE("writes then reads move exactly the sectors named, across partial pages") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  // Three segments: sectors 2..7 of page 0, all of page 1, sectors 0..3 of page 2: 6+8+4 = 18 sectors.
  for (unsigned p = 0; p < 3; ++p) fill(r.page(p), 4096, p + 10);
  const std::vector<blkif::segment> segs{{r.ref(0), 2, 7}, r.full(1), {r.ref(2), 0, 3}};
  auto w = r.roundtrip(r.rw(op_write, 7, 100, segs));
  CHECK(w.id == 7);
  CHECK(w.operation == op_write);
  CHECK(w.status == blkif::rsp_okay);
  std::vector<std::byte> want;
  want.insert(want.end(), r.page(0) + 2 * 512, r.page(0) + 4096);
  want.insert(want.end(), r.page(1), r.page(1) + 4096);
  want.insert(want.end(), r.page(2), r.page(2) + 4 * 512);
  REQUIRE(want.size() == 18 * 512);
  CHECK(std::memcmp(img.data.data() + 100 * 512, want.data(), want.size()) == 0);
  CHECK(std::all_of(img.data.begin(), img.data.begin() + 100 * 512, [](std::byte b) { return b == std::byte{0}; }));
  CHECK(std::all_of(img.data.begin() + 118 * 512, img.data.end(), [](std::byte b) { return b == std::byte{0}; }));

  // Read them back into other pages, at other offsets within the pages.
  for (unsigned p = 3; p < 6; ++p) std::memset(r.page(p), 0xee, 4096);
  const std::vector<blkif::segment> back{{r.ref(3), 0, 5}, r.full(4), {r.ref(5), 4, 7}};
  auto rd = r.roundtrip(r.rw(op_read, 8, 100, back));
  CHECK(rd.status == blkif::rsp_okay);
  CHECK(std::memcmp(r.page(3), want.data(), 6 * 512) == 0);
  CHECK(std::memcmp(r.page(3) + 6 * 512, std::vector<std::byte>(1024, std::byte{0xee}).data(), 1024) == 0);
  CHECK(std::memcmp(r.page(4), want.data() + 6 * 512, 4096) == 0);
  CHECK(std::memcmp(r.page(5) + 4 * 512, want.data() + 14 * 512, 4 * 512) == 0);
  CHECK(img.out_of_range == 0);
}

TEST_CASE("the last sector of the image can be read and written, one past it cannot") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  fill(r.page(0), 4096, 3);
  CHECK(r.roundtrip(r.rw(op_write, 1, image_sectors - 8, {r.full(0)})).status == blkif::rsp_okay);
  CHECK(std::memcmp(img.data.data() + image_bytes - 4096, r.page(0), 4096) == 0);
  CHECK(r.roundtrip(r.rw(op_write, 2, image_sectors - 7, {r.full(0)})).status == blkif::rsp_error);
  CHECK(r.roundtrip(r.rw(op_write, 3, image_sectors - 1, {blkif::segment{r.ref(0), 7, 7}})).status == blkif::rsp_okay);
  CHECK(img.out_of_range == 0);
}

TEST_CASE("flush and barrier: the answer comes only once the data is durable") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  fill(r.page(0), 4096, 5);
  CHECK(r.roundtrip(r.rw(op_write, 1, 0, {r.full(0)})).status == blkif::rsp_okay);
  // Written, visible, not yet durable: that is what feature-flush-cache = 1 announces.
  CHECK(std::memcmp(img.data.data(), r.page(0), 4096) == 0);
  CHECK(std::memcmp(img.durable.data(), r.page(0), 4096) != 0);
  SUBCASE("a flush with no data") {
    auto f = r.roundtrip(r.rw(blkif::op_flush_diskcache, 2, 0, {}));
    CHECK(f.status == blkif::rsp_okay);
    CHECK(f.operation == blkif::op_flush_diskcache);
    CHECK(std::memcmp(img.durable.data(), r.page(0), 4096) == 0);
  }
  SUBCASE("a flush carrying data: written, then flushed") {
    fill(r.page(1), 4096, 6);
    CHECK(r.roundtrip(r.rw(blkif::op_flush_diskcache, 2, 8, {r.full(1)})).status == blkif::rsp_okay);
    CHECK(std::memcmp(img.durable.data(), r.page(0), 4096) == 0);
    CHECK(std::memcmp(img.durable.data() + 4096, r.page(1), 4096) == 0);
  }
  SUBCASE("a barrier write") {
    fill(r.page(1), 4096, 7);
    auto b = r.roundtrip(r.rw(blkif::op_write_barrier, 2, 8, {r.full(1)}));
    CHECK(b.status == blkif::rsp_okay);
    CHECK(b.operation == blkif::op_write_barrier);
    CHECK(std::memcmp(img.durable.data() + 4096, r.page(1), 4096) == 0);
  }
  CHECK(img.flushes == 1);
}

TEST_CASE("discard zeroes the range, an image that refuses answers EOPNOTSUPP") {
  ram_image img{image_bytes};
  std::fill(img.data.begin(), img.data.end(), std::byte{0x5a});
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  auto discard = [&](std::uint64_t id, std::uint64_t sector, std::uint64_t n, std::uint8_t flag = 0) {
    blkif::request_discard d{blkif::op_discard, flag, 0, id, sector, n};
    blkif::request q{};
    std::memcpy(&q, &d, sizeof d);
    return r.roundtrip(q);
  };
  auto d = discard(1, 16, 32);
  CHECK(d.status == blkif::rsp_okay);
  CHECK(d.operation == blkif::op_discard);
  CHECK(img.data[16 * 512 - 1] == std::byte{0x5a});
  CHECK(std::all_of(img.data.begin() + 16 * 512, img.data.begin() + 48 * 512,
                    [](std::byte b) { return b == std::byte{0}; }));
  CHECK(img.data[48 * 512] == std::byte{0x5a});
  CHECK(discard(2, image_sectors - 4, 8).status == blkif::rsp_error);        // past the end
  CHECK(discard(3, ~std::uint64_t{0} - 2, 8).status == blkif::rsp_error);    // wraps around
  CHECK(discard(4, 0, 8, blkif::discard_secure).status == blkif::rsp_okay);  // secure ignored: not offered
  img.discard_unsupported = true;
  CHECK(discard(5, 0, 8).status == blkif::rsp_eopnotsupp);
  CHECK(img.out_of_range == 0);
}

TEST_CASE("multi-page rings: every order up to the maximum, filled and wrapped") {
  for (unsigned order = 0; order <= 4; ++order) {
    CAPTURE(order);
    ram_image img{image_bytes};
    rig r{img};
    REQUIRE_MESSAGE(r.up({}, frontend_options{.ring_page_order = order}), r.dump());
    CHECK(r.fe->ring_page_order() == order);
    auto& ring = *r.fe->queue_at(0).ring;
    const unsigned size = ring.size();
    CHECK(size == ring_size_for_order<blkif::request, blkif::response>(order));
    // Three ring-fulls: each slot a one-sector write of its own sector, answered in a batch.
    unsigned next = 0;
    for (int lap = 0; lap < 3; ++lap) {
      for (unsigned i = 0; i < size; ++i, ++next) {
        const unsigned pg = next % pool_pages;
        fill(r.page(pg), 512, next);
        REQUIRE(ring.produce(r.rw(op_write, next, next % image_sectors, {blkif::segment{r.ref(pg), 0, 0}})));
        if (i % pool_pages == pool_pages - 1 || i + 1 == size) {
          REQUIRE(r.fe->push(0));
          r.run_backend();
        }
      }
      auto rs = r.responses();
      REQUIRE(rs.size() == size);
      for (unsigned i = 0; i < size; ++i) CHECK(rs[i].status == blkif::rsp_okay);
    }
    std::vector<std::byte> expect(512);
    fill(expect.data(), 512, next - 1);
    CHECK(std::memcmp(img.data.data() + ((next - 1) % image_sectors) * 512, expect.data(), 512) == 0);
  }
}

TEST_CASE("multi-queue: each queue is served on its own ring and event channel") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({}, frontend_options{.ring_page_order = 1, .queues = 4}), r.dump());
  REQUIRE(r.fe->queue_count() == 4);
  CHECK(r.dev->ports().size() == 4);
  for (unsigned q = 0; q < 4; ++q) {
    fill(r.page(q), 4096, 40 + q);
    REQUIRE(r.submit(r.rw(op_write, 100 + q, 8 * q, {r.full(q)}), q));
  }
  r.run_backend();
  for (unsigned q = 0; q < 4; ++q) {
    auto rs = r.responses(q);
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].id == 100 + q);
    CHECK(std::memcmp(img.data.data() + 4096 * q, r.page(q), 4096) == 0);
  }
  CHECK(r.dev->stats().writes == 4);
}

TEST_CASE("indirect requests: 256 segments in one page, more over two pages when offered") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({.max_indirect_segments = 1024}), r.dump());
  CHECK(node(r, "feature-max-indirect-segments") == "1024");
  for (unsigned nseg : {1u, 11u, 12u, 256u, 300u}) {
    CAPTURE(nseg);
    std::vector<unsigned> data;
    for (unsigned i = 0; i < nseg; ++i) {
      data.push_back(i);
      fill(r.page(i), 4096, i + nseg);
    }
    const std::vector<unsigned> ind = nseg > 512 ? std::vector<unsigned>{500, 501} : std::vector<unsigned>{500};
    auto w = r.roundtrip(r.indirect(op_write, 9, 16, data, ind));
    CHECK(w.status == blkif::rsp_okay);
    CHECK(w.operation == op_write);  // blkfront expects the indirect_op back
    for (unsigned i = 0; i < nseg; ++i)
      REQUIRE(std::memcmp(img.data.data() + 16 * 512 + i * 4096, r.page(i), 4096) == 0);
    for (unsigned i = 0; i < nseg; ++i) std::memset(r.page(i), 0, 4096);
    auto rd = r.roundtrip(r.indirect(op_read, 10, 16, data, ind));
    CHECK(rd.status == blkif::rsp_okay);
    CHECK(rd.operation == op_read);
    for (unsigned i = 0; i < nseg; ++i)
      REQUIRE(std::memcmp(img.data.data() + 16 * 512 + i * 4096, r.page(i), 4096) == 0);
  }
  // 600 segments need two indirect pages; the pool reuses pages, which is allowed.
  std::vector<blkif::segment> segs;
  for (unsigned i = 0; i < 600; ++i) segs.push_back(blkif::segment{r.ref(i % 400), 0, 0});
  CHECK(r.roundtrip(r.indirect_segs(op_write, 11, 0, segs, {500, 501})).status == blkif::rsp_okay);
}

TEST_CASE("indirect requests are refused with EOPNOTSUPP when not offered") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({.max_indirect_segments = 0}), r.dump());
  CHECK(node(r, "feature-max-indirect-segments") == "(absent)");
  auto rs = r.roundtrip(r.indirect(op_write, 1, 0, {0, 1}, {500}));
  CHECK(rs.status == blkif::rsp_eopnotsupp);
  CHECK(img.writes == 0);
}

/// Runs `bad` against a device with a patterned image: it must be answered with `status`,
/// and neither the image nor anything outside it touched; a good request still works after.
void expect_refused(rig<>& r, ram_image& img, const blkif::request& bad, std::int16_t status) {
  const auto before = img.data;
  const unsigned writes = img.writes, discards = img.discards;
  auto rsp = r.roundtrip(bad);
  CHECK(rsp.id == bad.id);
  CHECK(rsp.status == status);
  CHECK(img.data == before);
  CHECK(img.writes == writes);
  CHECK(img.discards == discards);
  CHECK(img.out_of_range == 0);
  fill(r.page(0), 4096, 77);
  CHECK(r.roundtrip(r.rw(op_read, bad.id + 1, 0, {r.full(0)})).status == blkif::rsp_okay);
  CHECK(r.fe->connected());
  CHECK(r.dev->connected());
}

TEST_CASE("every kind of bad request gets an error and leaves the image untouched") {
  ram_image img{image_bytes};
  for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<std::byte>(i * 31);
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  for (unsigned p = 0; p < 16; ++p) fill(r.page(p), 4096, p);
  const auto err = blkif::rsp_error, unsupported = blkif::rsp_eopnotsupp;

  SUBCASE("sector range") {
    expect_refused(r, img, r.rw(op_write, 10, image_sectors, {r.full(0)}), err);
    expect_refused(r, img, r.rw(op_write, 12, image_sectors - 4, {r.full(0)}), err);
    expect_refused(r, img, r.rw(op_write, 14, ~std::uint64_t{0} - 3, {r.full(0)}), err);
    expect_refused(r, img, r.rw(op_read, 16, image_sectors + 1000, {r.full(0)}), err);
  }
  SUBCASE("segment counts") {
    expect_refused(r, img, r.rw(op_write, 20, 0, {}), err);
    expect_refused(r, img, r.rw(op_read, 22, 0, {}), err);
    auto twelve = r.rw(op_write, 24, 0, {r.full(0)});
    twelve.nr_segments = 12;
    expect_refused(r, img, twelve, err);
    twelve.nr_segments = 255;
    expect_refused(r, img, twelve, err);
    std::vector<blkif::segment> many(257, r.full(0));
    expect_refused(r, img, r.indirect_segs(op_write, 26, 0, many, {500}), err);  // over the 256 offered
    auto none = r.indirect(op_write, 28, 0, {}, {500});
    expect_refused(r, img, none, err);
  }
  SUBCASE("first_sect and last_sect") {
    expect_refused(r, img, r.rw(op_write, 30, 0, {blkif::segment{r.ref(0), 5, 4}}), err);
    expect_refused(r, img, r.rw(op_write, 32, 0, {blkif::segment{r.ref(0), 0, 8}}), err);
    expect_refused(r, img, r.rw(op_write, 34, 0, {r.full(0), blkif::segment{r.ref(1), 9, 200}}), err);
    expect_refused(r, img, r.indirect_segs(op_write, 36, 0, {r.full(0), blkif::segment{r.ref(1), 3, 2}}, {500}), err);
    expect_refused(r, img, r.indirect_segs(op_write, 38, 0, {blkif::segment{r.ref(1), 0, 255}}, {500}), err);
  }
  SUBCASE("operations") {
    for (std::uint8_t op : {blkif::op_reserved_1, std::uint8_t{7}, std::uint8_t{100}, std::uint8_t{255}}) {
      auto q = r.rw(op_write, 40 + op, 0, {r.full(0)});
      q.operation = op;
      expect_refused(r, img, q, unsupported);
    }
    auto in = r.indirect(blkif::op_discard, 50, 0, {0}, {500});  // indirect_op must be read or write
    expect_refused(r, img, in, err);
    in = r.indirect(blkif::op_indirect, 52, 0, {0}, {500});
    expect_refused(r, img, in, err);
  }
  SUBCASE("grant references") {
    // Never granted, beyond the table, granted read-only for a read, granted to nobody we know.
    expect_refused(r, img, r.rw(op_write, 60, 0, {blkif::segment{2000, 0, 7}}), err);
    expect_refused(r, img, r.rw(op_write, 62, 0, {blkif::segment{0xfffffff0u, 0, 7}}), err);
    expect_refused(r, img, r.rw(op_write, 64, 0, {r.full(0), r.full(1), blkif::segment{2000, 0, 7}}), err);
    std::array<grant_ref, 1> ro{};
    auto ro_page = r.fgr.share(back_dom, ro, false);
    REQUIRE(ro_page);
    expect_refused(r, img, r.rw(op_read, 66, 0, {blkif::segment{ro[0], 0, 7}}), err);
    std::array<grant_ref, 1> other{};
    auto other_page = r.fgr.share(3, other, true);  // granted to domain 3, not to the backend
    REQUIRE(other_page);
    expect_refused(r, img, r.rw(op_write, 68, 0, {blkif::segment{other[0], 0, 7}}), err);
    // A bad indirect page, and a bad data page named inside a good one.
    auto in = r.indirect(op_write, 70, 0, {0, 1}, {500});
    blkif::request_indirect view;
    std::memcpy(&view, &in, sizeof view);
    view.indirect_grefs[0] = 2000;
    std::memcpy(&in, &view, sizeof view);
    expect_refused(r, img, in, err);
    expect_refused(r, img, r.indirect_segs(op_write, 72, 0, {r.full(0), blkif::segment{2001, 0, 7}}, {500}), err);
  }
  SUBCASE("discard out of range") {
    blkif::request_discard d{blkif::op_discard, 0, 0, 80, image_sectors - 1, 2};
    blkif::request q{};
    std::memcpy(&q, &d, sizeof d);
    expect_refused(r, img, q, err);
  }
  CHECK(r.dev->stats().refused + r.dev->stats().bad_grants > 0);
}

TEST_CASE("a logical sector size above 512: misaligned requests are refused") {
  ram_image img{image_bytes};
  img.g.sector_size = img.g.physical_sector_size = 4096;
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  CHECK(node(r, "sector-size") == "4096");
  CHECK(node(r, "sectors") == "8192");  // 512-byte units, as Linux blkback writes them
  fill(r.page(0), 4096, 1);
  expect_refused(r, img, r.rw(op_write, 1, 4, {r.full(0)}), blkif::rsp_error);
  expect_refused(r, img, r.rw(op_write, 3, 8, {blkif::segment{r.ref(0), 0, 3}}), blkif::rsp_error);
  CHECK(r.roundtrip(r.rw(op_write, 5, 8, {r.full(0)})).status == blkif::rsp_okay);
}

TEST_CASE("an image that fails a write answers BLKIF_RSP_ERROR and stays connected") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  img.fail_writes = true;
  CHECK(r.roundtrip(r.rw(op_write, 1, 0, {r.full(0)})).status == blkif::rsp_error);
  img.fail_writes = false;
  CHECK(r.roundtrip(r.rw(op_write, 2, 0, {r.full(0)})).status == blkif::rsp_okay);
  CHECK(r.dev->stats().io_errors == 1);
}

TEST_CASE("hostile ring indices latch the ring broken, the device closes and the image is untouched") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  const auto before = img.data;
  auto* page = static_cast<std::uint32_t*>(r.fe->queue_at(0).pages->data());
  SUBCASE("req_prod more than a ring ahead") { page[0] = 33; }  // req_prod (32 slots)
  SUBCASE("req_prod behind the consumer") { page[0] = 0xfffffff0u; }
  (void)r.fev.notify(r.fe->queue_at(0).port);
  r.run_backend();
  r.pump();
  CHECK(r.dev->driver().reason() == close_reason::ring_broken);
  CHECK(r.dev->driver().own() != state::connected);
  CHECK_FALSE(r.dev->connected());
  auto err = r.ts.read(no_tx, r.dev->driver().error_path());
  REQUIRE(err);
  CHECK(err->find("ring") != std::string::npos);
  CHECK(img.data == before);
  CHECK(img.writes == 0);
}

TEST_CASE("persistent grants: pages stay mapped across requests, within the bound") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({.persistent_grants = 8}, {}, true), r.dump());
  CHECK(r.dev->persistent());
  for (unsigned round = 0; round < 3; ++round)
    for (unsigned p = 0; p < 10; ++p) {
      fill(r.page(p), 4096, p + round);
      REQUIRE(r.roundtrip(r.rw(op_write, p, p * 8, {r.full(p)})).status == blkif::rsp_okay);
      REQUIRE(std::memcmp(img.data.data() + p * 4096, r.page(p), 4096) == 0);
    }
  const auto s = r.dev->stats();
  CHECK(s.persistent_maps == 8);      // the bound
  CHECK(s.persistent_hits == 2 * 8);  // rounds 2 and 3 find them
  // A read-only grant cannot join the cache; it is mapped for its request alone.
  std::array<grant_ref, 1> ro{};
  auto ro_page = r.fgr.share(back_dom, ro, false);
  REQUIRE(ro_page);
  CHECK(r.roundtrip(r.rw(op_write, 50, 0, {blkif::segment{ro[0], 0, 7}})).status == blkif::rsp_okay);
}

TEST_CASE("without feature-persistent from the frontend, nothing is cached") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({}, {}, false), r.dump());
  CHECK_FALSE(r.dev->persistent());
  for (unsigned p = 0; p < 4; ++p) CHECK(r.roundtrip(r.rw(op_write, p, 0, {r.full(p)})).status == blkif::rsp_okay);
  CHECK(r.dev->stats().persistent_maps == 0);
}

TEST_CASE("a frontend that vanishes mid-I/O loses nothing that was acknowledged") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  // Eight writes answered, then eight more put on the ring, and the guest is gone.
  for (unsigned i = 0; i < 8; ++i) fill(r.page(i), 4096, 200 + i);
  for (unsigned i = 0; i < 8; ++i) REQUIRE(r.submit(r.rw(op_write, i, i * 8, {r.full(i)})));
  r.run_backend();
  auto acked = r.responses();
  REQUIRE(acked.size() == 8);
  for (unsigned i = 8; i < 16; ++i) REQUIRE(r.submit(r.rw(op_write, i, i * 8, {r.full(i)})));
  r.fe.reset();  // the guest's kernel is gone; its grants stay where they were
  REQUIRE(r.fs.remove(no_tx, r.tk.address().frontend_dir()));  // the toolstack cleans up after it
  r.pump();
  r.run_backend();
  CHECK(r.dev->driver().own() != state::connected);
  for (const auto& a : acked) {
    CHECK(a.status == blkif::rsp_okay);
    CHECK(std::memcmp(img.data.data() + a.id * 4096, r.page(static_cast<unsigned>(a.id)), 4096) == 0);
  }
  CHECK(img.out_of_range == 0);
}

TEST_CASE("a new frontend instance (reset by rebind) is served with the data intact") {
  ram_image img{image_bytes};
  rig r{img};
  REQUIRE_MESSAGE(r.up({}, {}, true), r.dump());
  fill(r.page(0), 4096, 9);
  REQUIRE(r.roundtrip(r.rw(op_write, 1, 0, {r.full(0)})).status == blkif::rsp_okay);
  // Linux's rebind: the frontend closes, the backend follows to Closed, a new frontend
  // instance starts from Initialising.
  r.fe->close();
  r.pump();
  CHECK(r.dev->driver().own() == state::closed);
  CHECK_FALSE(r.dev->connected());
  r.fe.reset();
  REQUIRE(r.fs.write(no_tx, r.tk.address().frontend_dir() + "/state", "1"));
  REQUIRE_MESSAGE(r.start_frontend({.ring_page_order = 2}), r.dump());
  std::memset(r.page(1), 0, 4096);
  REQUIRE(r.roundtrip(r.rw(op_read, 2, 0, {r.full(1)})).status == blkif::rsp_okay);
  CHECK(std::memcmp(r.page(1), r.page(0), 4096) == 0);
  CHECK(r.dev->lifetime_stats().writes == 1);
}

}  // namespace

namespace {

TEST_CASE("serve_polling answers what is on the ring without re-arming req_event, serve() re-arms") {
  blktest::ram_image img{1 << 20};
  blktest::rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  auto* idx = static_cast<std::uint32_t*>(r.fe->queue_at(0).pages->data());  // req_prod, req_event, ...
  blktest::fill(r.page(0), 4096, 1);
  REQUIRE(r.submit(r.rw(xenbus::blkif::op_write, 1, 0, {r.full(0)})));
  const std::uint32_t event_before = idx[1];
  CHECK(r.dev->serve_polling() == 1);
  CHECK(idx[1] == event_before);
  CHECK(r.responses().size() == 1);
  CHECK(r.dev->serve_polling() == 0);
  CHECK_FALSE(r.dev->serve());
  CHECK(idx[1] == idx[0] + 1);  // the next request will kick us
}

}  // namespace
