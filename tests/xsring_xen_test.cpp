// Tests include/xenbus/xen/xenstored.hpp: what it reads from libxenctrl's domain list matches <xenctrl.h>, and
// off a Xen host (or without privilege) each piece fails to open with an errno instead of crashing. On Xen, the lab
// (tests/xenlab) exercises them for real.
#include <xenbus/xen/xenstored.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

extern "C" {
std::size_t xsring_xc_domaininfo_size(void);
std::size_t xsring_xc_domain_offset(void);
std::size_t xsring_xc_domain_size(void);
std::size_t xsring_xc_flags_offset(void);
std::size_t xsring_xc_flags_size(void);
unsigned xsring_xen_dominf_dying(void);
unsigned xsring_xen_dominf_shutdown(void);
}

namespace xen = xenbus::xen;

TEST_CASE("the fields read from xc_domaininfo_t are where <xenctrl.h> puts them") {
  CHECK(xsring_xc_domain_offset() == xen::xc_domaininfo_domain_offset);
  CHECK(xsring_xc_domain_size() == sizeof(xenbus::domid_t));
  CHECK(xsring_xc_flags_offset() == xen::xc_domaininfo_flags_offset);
  CHECK(xsring_xc_flags_size() == sizeof(std::uint32_t));
  CHECK(xsring_xc_domaininfo_size() <= xen::xc_domaininfo_bytes);
  CHECK(xsring_xen_dominf_dying() == xen::xen_dominf_dying);
  CHECK(xsring_xen_dominf_shutdown() == xen::xen_dominf_shutdown);
}

TEST_CASE("off Xen, the dom0 xenstored's pieces fail to open cleanly") {
  if (::access("/dev/xen/evtchn", F_OK) == 0) {
    MESSAGE("on a Xen host: the lab covers these");
    return;
  }
  auto mapper = xen::ring_mapper::open();
  CHECK_FALSE(mapper.has_value());
  auto info = xen::domain_info::open();
  CHECK_FALSE(info.has_value());
  CHECK_FALSE(xen::local_ring::present());
  auto local = xen::local_ring::open();
  REQUIRE_FALSE(local.has_value());
  CHECK(local.error() == ENOENT);
  // A port file with garbage, or a missing page file, is an error too.
  char dir[] = "/tmp/xenbus-xsring-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string port = std::string{dir} + "/port", kva = std::string{dir} + "/kva";
  for (const char* text : {"", "x", "0", "99999999999"}) {
    FILE* f = std::fopen(port.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(text, f);
    std::fclose(f);
    auto r = xen::local_ring::open(kva.c_str(), port.c_str());
    CHECK_FALSE(r.has_value());
  }
  std::remove(port.c_str());
  ::rmdir(dir);
}
