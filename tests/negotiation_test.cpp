// Tests include/xenbus/hosted/device/negotiation.hpp: strict numbers, the key layouts, and refusal
// of every transport a hostile frontend can publish.
#include <xenbus/hosted/device/embedded_store.hpp>
#include <xenbus/hosted/device/negotiation.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace xenbus;

static_assert(parse_uint("0", 10).value() == 0);
static_assert(parse_uint("4294967295", 0xffffffffu).value() == 0xffffffffu);
static_assert(!parse_uint("4294967296", 0xffffffffu).has_value());

TEST_CASE("numbers are read exactly as \"%u\" writes them") {
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "01", "0x10", "1e3", "12345678901"})
    CHECK_FALSE(parse_uint(bad, 0xffffffffu).has_value());
  CHECK(parse_uint("7", 6).error() == negotiation_errc::not_a_number);  // above the bound
  CHECK(parse_uint("65535", 0xffff).value() == 65535);
}

namespace {
struct fixture {
  xenstore::store st;
  embedded_store s{st, 0};
  const std::string dir = "/local/domain/1/device/vif/0";
  void put(const std::string& k, const std::string& v) { REQUIRE(s.write(no_tx, dir + "/" + k, v).has_value()); }
  result<transport, negotiation_error> read(unsigned max_order = 2, unsigned max_queues = 4) {
    return read_transport(s, no_tx, dir, max_order, max_queues, "x86_64-abi");
  }
};
}  // namespace

TEST_CASE("a published transport reads back as written") {
  fixture f;
  transport t;
  t.ring_page_order = 1;
  t.queues = 2;
  t.protocol = "x86_64-abi";
  t.queue[0].refs[0] = 8, t.queue[0].refs[1] = 9, t.queue[0].port = 3;
  t.queue[1].refs[0] = 10, t.queue[1].refs[1] = 11, t.queue[1].port = 4;
  REQUIRE(publish_transport(f.s, no_tx, f.dir, t).has_value());
  CHECK(f.s.read(no_tx, f.dir + "/queue-1/ring-ref1").value() == "11");
  auto back = f.read();
  REQUIRE(back.has_value());
  CHECK(back->ring_page_order == 1);
  CHECK(back->queues == 2);
  CHECK(back->queue[1].refs[1] == 11);
  CHECK(back->queue[1].port == 4);
  SUBCASE("a single page and queue use the plain keys") {
    fixture g;
    transport one;
    one.queue[0].refs[0] = 5;
    one.queue[0].port = 1;
    REQUIRE(publish_transport(g.s, no_tx, g.dir, one, "port").has_value());
    CHECK(g.s.read(no_tx, g.dir + "/ring-ref").value() == "5");
    CHECK(g.s.read(no_tx, g.dir + "/port").value() == "1");
    CHECK_FALSE(g.s.read(no_tx, g.dir + "/ring-page-order").has_value());
  }
}

TEST_CASE("a hostile frontend's keys are refused with the reason") {
  fixture f;
  f.put("ring-ref", "8");
  f.put("event-channel", "3");
  REQUIRE(f.read().has_value());
  SUBCASE("order above the offer") {
    f.put("ring-page-order", "3");
    CHECK(f.read().error().code == negotiation_errc::order_too_large);
  }
  SUBCASE("order 1 without ring-ref1") {
    f.put("ring-page-order", "1");
    f.put("ring-ref0", "8");
    CHECK(f.read().error().code == negotiation_errc::missing_key);
  }
  SUBCASE("zero or too many queues") {
    f.put("multi-queue-num-queues", "0");
    CHECK(f.read().error().code == negotiation_errc::too_many_queues);
    f.put("multi-queue-num-queues", "5");
    CHECK(f.read().error().code == negotiation_errc::too_many_queues);
  }
  SUBCASE("a port that is not a number") {
    f.put("event-channel", "3;rm -rf");
    CHECK(f.read().error().code == negotiation_errc::not_a_number);
  }
  SUBCASE("another ABI") {
    f.put("protocol", "x86_32-abi");
    CHECK(f.read().error().code == negotiation_errc::wrong_protocol);
  }
  SUBCASE("no event channel") {
    REQUIRE(f.s.remove(no_tx, f.dir + "/event-channel").has_value());
    CHECK(f.read().error().code == negotiation_errc::missing_key);
  }
}
