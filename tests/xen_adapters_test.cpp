// Tests include/xenbus/xen/evtchn.hpp, xen/grant.hpp and xen/xs_store.hpp: they build and link against
// libxenevtchn/libxengnttab/libxenstore; off a Xen host opening them fails cleanly, and on one (the lab runs this
// program in dom0 and in a domU) they loop an event channel and a grant back to our own domain.
#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <optional>

#include <poll.h>
#include <unistd.h>

namespace {

bool on_xen() { return ::access("/dev/xen/evtchn", F_OK) == 0; }

// Our own domain id: xenstore resolves the relative path against our home, /local/domain/<id>.
xenbus::domid_t own_domid(xenbus::xen::xs_store& xs) {
  auto text = xs.read(xenbus::no_tx, "domid");
  REQUIRE(text.has_value());
  auto id = xenbus::xenstore::parse_decimal(*text, 0x7fef);
  REQUIRE(id.has_value());
  return static_cast<xenbus::domid_t>(*id);
}

// The next port raised on `ev` within `ms`, unmasked again; nullopt if none came.
std::optional<xenbus::evtchn_port> next_raised(xenbus::xen::evtchn_handle& ev, int ms) {
  pollfd p{ev.fd(), POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return std::nullopt;
  auto port = ev.pending();
  if (!port) return std::nullopt;
  CHECK(ev.unmask(*port).has_value());
  return *port;
}

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
  // On Xen, dom0 or a domU: every device is there, and so is xenstore.
  REQUIRE(ev.has_value());
  REQUIRE(gt.has_value());
  REQUIRE(gs.has_value());
  CHECK(ev->fd() >= 0);
  CHECK(ev->pending().error().code == xenbus::evtchn_errc::would_block);
  auto xs = xenbus::xen::xs_store::open();
  REQUIRE(xs.has_value());
  const xenbus::domid_t self = own_domid(*xs);

  SUBCASE("an event channel offered to our own domain loops back, both ways") {
    auto offered = ev->bind_unbound(self);
    REQUIRE(offered.has_value());
    auto bound = ev->bind_interdomain(self, *offered);
    REQUIRE(bound.has_value());
    CHECK(*bound != *offered);
    // Xen raises the newly bound port at bind time (a notification sent to the unbound port
    // would be lost otherwise): take it before looking for ours.
    while (next_raised(*ev, 500)) {
    }
    REQUIRE(ev->notify(*bound).has_value());
    CHECK(next_raised(*ev, 5000) == *offered);
    REQUIRE(ev->notify(*offered).has_value());
    CHECK(next_raised(*ev, 5000) == *bound);
    CHECK(ev->pending().error().code == xenbus::evtchn_errc::would_block);
    CHECK(ev->unbind(*bound).has_value());
    CHECK(ev->unbind(*offered).has_value());
    auto twice = ev->unbind(*offered);
    REQUIRE_FALSE(twice.has_value());
    CHECK(twice.error().code == xenbus::evtchn_errc::system);
  }

  SUBCASE("pages granted to our own domain map, and writes show on both sides") {
    std::array<xenbus::grant_ref, 2> refs{};
    auto pages = gs->share(self, refs, true);
    REQUIRE(pages.has_value());
    REQUIRE(pages->size() == 2 * xenbus::xen_page_size);
    auto* shared = static_cast<unsigned char*>(pages->data());
    for (std::size_t i = 0; i < pages->size(); ++i) shared[i] = static_cast<unsigned char>(i * 7);
    auto mapped = gt->map(self, refs, true);
    REQUIRE(mapped.has_value());
    REQUIRE(mapped->size() == pages->size());
    auto* view = static_cast<unsigned char*>(mapped->data());
    CHECK(std::memcmp(view, shared, pages->size()) == 0);
    view[xenbus::xen_page_size + 5] = 0xa5;  // the second page, through the mapping
    CHECK(shared[xenbus::xen_page_size + 5] == 0xa5);
    auto read_only = gt->map(self, std::span<const xenbus::grant_ref>(refs).first(1), false);
    REQUIRE(read_only.has_value());
    CHECK(static_cast<const unsigned char*>(read_only->data())[7] == shared[7]);
    CHECK(gt->map(self, std::span<const xenbus::grant_ref>{}, false).error().code == xenbus::grant_errc::bad_count);
  }

  SUBCASE("a reference nobody granted does not map") {
    const std::array<xenbus::grant_ref, 1> bogus{0x7ffffu};
    auto mapped = gt->map(self, bogus, false);
    REQUIRE_FALSE(mapped.has_value());
    CHECK(mapped.error().code == xenbus::grant_errc::system);
  }

  SUBCASE("xs_store writes, reads back, removes, and maps ENOENT") {
    const std::string node = "data/xenbus-adapter-test";  // relative: under our own home
    REQUIRE(xs->write(xenbus::no_tx, node, "round-trip").has_value());
    auto back = xs->read(xenbus::no_tx, node);
    REQUIRE(back.has_value());
    CHECK(*back == "round-trip");
    REQUIRE(xs->remove(xenbus::no_tx, node).has_value());
    auto gone = xs->read(xenbus::no_tx, node);
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code == xenbus::store_errc::enoent);
  }
}
