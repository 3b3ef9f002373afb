// Tests include/xenbus/xenbus.hpp: every hosted header compiles together in one unit.
#include <xenbus/xenbus.hpp>

#include <doctest/doctest.h>

TEST_CASE("the umbrella header brings the core and the hosted parts together") {
  xenbus::xenstore::store store;
  xenbus::backend_machine back;
  CHECK(back.request(xenbus::state::init_wait));
  CHECK(xenbus::to_string(xenbus::state::closed) == "Closed");
}
