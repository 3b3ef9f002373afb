// posix::grant_table::copy (include/xenbus/posix/grant.hpp): the POSIX machine's grant copy
// moves exactly the bytes asked, and refuses each bad op on its own with the error map()
// would give (never granted, granted to someone else, read-only as the destination, ended)
// or bad_range for a range that leaves the page, never touching anything else.
#include <xenbus/grant.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/machine.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <vector>

namespace {

using namespace xenbus;

constexpr domid_t owner = 1, copier = 0, stranger = 2;

posix::machine make_machine() {
  auto m = posix::machine::create({.frames = 256, .domains = 4, .grants_per_domain = 128, .ports_per_domain = 8});
  REQUIRE(m);
  return std::move(*m);
}

/// A machine, the granting domain's table and the copying domain's.
struct world {
  posix::machine m = make_machine();
  posix::grant_table own{m, owner}, back{m, copier};
};

void fill(std::byte* p, std::size_t n, unsigned seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((i * 37 + seed * 101) & 0xff);
}

grant_copy_op op(std::byte* local, grant_ref ref, std::size_t offset, std::size_t length, copy_dir dir,
                 domid_t dom = owner) {
  return grant_copy_op{local, dom, ref, static_cast<std::uint16_t>(offset), static_cast<std::uint16_t>(length), dir};
}

TEST_CASE("grant copy moves exactly the bytes named, both ways, at offsets within the page") {
  world w;
  auto& [m, own, back] = w;
  std::array<grant_ref, 2> refs{};
  auto pages = own.share(copier, refs, true);
  REQUIRE(pages);
  auto* page0 = static_cast<std::byte*>(pages->data());
  auto* page1 = page0 + 4096;
  fill(page0, 4096, 1);

  std::vector<std::byte> local(8192, std::byte{0xaa});
  std::array<grant_copy_op, 3> ops{op(local.data(), refs[0], 0, 4096, copy_dir::from_grant),
                                   op(local.data() + 4096, refs[0], 512, 1024, copy_dir::from_grant),
                                   op(local.data() + 5120, refs[1], 4095, 1, copy_dir::from_grant)};
  REQUIRE(back.copy(ops));
  for (const auto& o : ops) CHECK(o.status);
  CHECK(std::memcmp(local.data(), page0, 4096) == 0);
  CHECK(std::memcmp(local.data() + 4096, page0 + 512, 1024) == 0);
  CHECK(local[5120] == std::byte{0});  // page 1 is still zero
  CHECK(local[5121] == std::byte{0xaa});

  fill(local.data(), 8192, 2);
  std::array<grant_copy_op, 2> out{op(local.data(), refs[1], 0, 4096, copy_dir::to_grant),
                                   op(local.data() + 100, refs[0], 2048, 512, copy_dir::to_grant)};
  REQUIRE(back.copy(out));
  CHECK(out[0].status);
  CHECK(out[1].status);
  CHECK(std::memcmp(page1, local.data(), 4096) == 0);
  CHECK(std::memcmp(page0 + 2048, local.data() + 100, 512) == 0);
  std::vector<std::byte> untouched(4096);
  fill(untouched.data(), 4096, 1);
  CHECK(std::memcmp(page0, untouched.data(), 2048) == 0);
  CHECK(std::memcmp(page0 + 2560, untouched.data() + 2560, 4096 - 2560) == 0);
}

TEST_CASE("grant copy: each bad op gets its own error, the good ones around it are done") {
  world w;
  auto& [m, own, back] = w;
  std::array<grant_ref, 1> rw{}, ro{}, elsewhere{};
  auto rw_page = own.share(copier, rw, true);
  auto ro_page = own.share(copier, ro, false);
  auto other = own.share(stranger, elsewhere, true);
  REQUIRE(rw_page);
  REQUIRE(ro_page);
  REQUIRE(other);
  fill(static_cast<std::byte*>(rw_page->data()), 4096, 3);
  fill(static_cast<std::byte*>(ro_page->data()), 4096, 4);
  const std::vector<std::byte> ro_before(static_cast<std::byte*>(ro_page->data()),
                                         static_cast<std::byte*>(ro_page->data()) + 4096);

  std::vector<std::byte> local(4096 * 10, std::byte{0x55});
  auto at = [&](unsigned i) { return local.data() + i * 4096; };
  std::array<grant_copy_op, 10> ops{
      op(at(0), rw[0], 0, 4096, copy_dir::from_grant),           // good
      op(at(1), 100, 0, 4096, copy_dir::from_grant),             // never granted
      op(at(2), 0xfffffff0u, 0, 4096, copy_dir::from_grant),     // beyond the table
      op(at(3), elsewhere[0], 0, 4096, copy_dir::from_grant),    // granted to another domain
      op(at(4), ro[0], 0, 4096, copy_dir::to_grant),             // read-only grant as the destination
      op(at(5), ro[0], 0, 4096, copy_dir::from_grant),           // read-only grant as the source: fine
      op(at(6), rw[0], 4000, 97, copy_dir::from_grant),          // runs past the page
      op(at(7), rw[0], 0xffff, 0xffff, copy_dir::to_grant),      // far past it
      op(at(8), rw[0], 0, 4096, copy_dir::from_grant, 200),      // no such domain
      op(at(9), rw[0], 0, 4096, copy_dir::from_grant, stranger)  // the right ref, the wrong granter
  };
  REQUIRE(back.copy(ops));
  CHECK(ops[0].status);
  CHECK(std::memcmp(at(0), rw_page->data(), 4096) == 0);
  auto err = [&](unsigned i) { return ops[i].status ? grant_errc::unavailable : ops[i].status.error().code; };
  CHECK(err(1) == grant_errc::bad_ref);
  CHECK(err(2) == grant_errc::bad_ref);
  CHECK(err(3) == grant_errc::bad_ref);
  CHECK(err(4) == grant_errc::read_only);
  CHECK(ops[5].status);
  CHECK(std::memcmp(at(5), ro_page->data(), 4096) == 0);
  CHECK(err(6) == grant_errc::bad_range);
  CHECK(err(7) == grant_errc::bad_range);
  CHECK(err(8) == grant_errc::bad_ref);
  CHECK(err(9) == grant_errc::bad_ref);
  // Nothing moved for a failed op, in either direction.
  for (unsigned i : {1u, 2u, 3u, 6u, 8u, 9u})
    CHECK(std::all_of(at(i), at(i) + 4096, [](std::byte b) { return b == std::byte{0x55}; }));
  CHECK(std::memcmp(ro_page->data(), ro_before.data(), 4096) == 0);
  // No op left a page counted as mapped: ending the grants frees every frame.
  const auto leaked = m.leaked_frames();
  { auto gone = std::move(*rw_page); }
  { auto gone = std::move(*ro_page); }
  CHECK(m.leaked_frames() == leaked);
}

TEST_CASE("grant copy of an ended grant is refused") {
  world w;
  auto& [m, own, back] = w;
  std::array<grant_ref, 1> refs{};
  {
    auto pages = own.share(copier, refs, true);
    REQUIRE(pages);
  }
  std::vector<std::byte> local(4096);
  std::array<grant_copy_op, 2> ops{op(local.data(), refs[0], 0, 4096, copy_dir::from_grant),
                                   op(local.data(), refs[0], 0, 4096, copy_dir::to_grant)};
  REQUIRE(back.copy(ops));
  for (const auto& o : ops) {
    REQUIRE_FALSE(o.status);
    CHECK(o.status.error().code == grant_errc::bad_ref);
  }
}

TEST_CASE("grant copy takes any number of ops in one call") {
  world w;
  auto& [m, own, back] = w;
  std::array<grant_ref, 64> refs{};
  auto pages = own.share(copier, refs, true);
  REQUIRE(pages);
  fill(static_cast<std::byte*>(pages->data()), 64 * 4096, 9);
  // 200 ops of 512 bytes: more than one batch of the Xen adapter, pages reused.
  std::vector<std::byte> local(200 * 512);
  std::vector<grant_copy_op> ops;
  for (unsigned i = 0; i < 200; ++i)
    ops.push_back(op(local.data() + i * 512, refs[i % 64], (i % 8) * 512, 512, copy_dir::from_grant));
  REQUIRE(back.copy(ops));
  for (unsigned i = 0; i < 200; ++i) {
    REQUIRE(ops[i].status);
    REQUIRE(std::memcmp(local.data() + i * 512,
                        static_cast<std::byte*>(pages->data()) + (i % 64) * 4096 + (i % 8) * 512, 512) == 0);
  }
}

}  // namespace
