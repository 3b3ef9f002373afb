// Tests include/xenbus/xen/evtchn.hpp and xen/grant.hpp: they build and link against
// libxenevtchn/libxengnttab, and off a Xen host opening them fails cleanly.
#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>

#include <doctest/doctest.h>

#include <array>

#include <unistd.h>

namespace {
bool on_xen() { return ::access("/dev/xen/evtchn", F_OK) == 0; }
}  // namespace

TEST_CASE("the Xen adapters open on a Xen host and fail with 'unavailable' elsewhere") {
  auto ev = xenbus::xen::evtchn_handle::open();
  auto gt = xenbus::xen::gnttab::open();
  auto gs = xenbus::xen::gntshr::open();
  if (!on_xen()) {
    REQUIRE_FALSE(ev.has_value());
    CHECK(ev.error().code == xenbus::evtchn_errc::unavailable);
    REQUIRE_FALSE(gt.has_value());
    CHECK(gt.error().code == xenbus::grant_errc::unavailable);
    REQUIRE_FALSE(gs.has_value());
    CHECK(gs.error().code == xenbus::grant_errc::unavailable);
    return;
  }
  // On Xen (dom0 or a driver domain): a port offered to ourselves and bound back loops.
  REQUIRE(ev.has_value());
  CHECK(ev->fd() >= 0);
  CHECK(ev->pending().error().code == xenbus::evtchn_errc::would_block);
  if (gs && gt) {
    std::array<xenbus::grant_ref, 1> refs{};
    auto pages = gs->share(0, refs, true);
    if (pages) CHECK(pages->size() == xenbus::xen_page_size);
  }
}
