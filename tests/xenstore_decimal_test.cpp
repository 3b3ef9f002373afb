// Tests include/xenbus/xenstore/decimal.hpp: the one strict decimal parser and formatter,
// and that every former parser (parse_domid, parse_uint, the client's reply checks) now
// answers as it does.
#include <xenbus/hosted/device/negotiation.hpp>
#include <xenbus/xenstore/decimal.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace xs = xenbus::xenstore;
using xs::decimal_error;

namespace {
constexpr decimal_error refusal(std::string_view t, std::uint64_t max = ~std::uint64_t{0}) {
  auto r = xs::parse_decimal(t, max);
  return r ? decimal_error{0xff} : r.error();
}
}  // namespace

// The edge cases hold at compile time too.
static_assert(*xs::parse_decimal("0") == 0);
static_assert(refusal("01") == decimal_error::leading_zero);
static_assert(xs::decimal{18446744073709551615u}.view() == "18446744073709551615");

TEST_CASE("parse_decimal accepts exactly what %u writes") {
  CHECK(*xs::parse_decimal("0") == 0);
  CHECK(*xs::parse_decimal("7") == 7);
  CHECK(*xs::parse_decimal("65535", 0xffff) == 65535);
  CHECK(*xs::parse_decimal("18446744073709551615") == ~std::uint64_t{0});
}

TEST_CASE("parse_decimal refuses everything else, with a reason") {
  SUBCASE("empty") { CHECK(refusal("") == decimal_error::empty); }
  SUBCASE("leading zero") {
    CHECK(refusal("00") == decimal_error::leading_zero);
    CHECK(refusal("007") == decimal_error::leading_zero);
  }
  SUBCASE("sign") {
    CHECK(refusal("+1") == decimal_error::not_a_digit);
    CHECK(refusal("-1") == decimal_error::not_a_digit);
    CHECK(refusal("-0") == decimal_error::not_a_digit);
  }
  SUBCASE("space, NUL and other characters") {
    CHECK(refusal(" 1") == decimal_error::not_a_digit);
    CHECK(refusal("1 ") == decimal_error::not_a_digit);
    CHECK(refusal("1\n") == decimal_error::not_a_digit);
    CHECK(refusal(std::string_view{"1\0", 2}) == decimal_error::not_a_digit);
    CHECK(refusal("0x10") == decimal_error::not_a_digit);
    CHECK(refusal("1e3") == decimal_error::not_a_digit);
  }
  SUBCASE("overflow of 64 bits and of the caller's maximum") {
    CHECK(refusal("18446744073709551616") == decimal_error::too_large);
    CHECK(refusal("99999999999999999999") == decimal_error::too_large);
    CHECK(refusal("100000000000000000000") == decimal_error::too_large);
    CHECK(refusal(std::string(4096, '9')) == decimal_error::too_large);
    CHECK(refusal("65536", 0xffff) == decimal_error::too_large);
    CHECK(refusal("4294967296", 0xffffffffu) == decimal_error::too_large);
    CHECK(refusal("1", 0) == decimal_error::too_large);
    CHECK(*xs::parse_decimal("0", 0) == 0);
  }
}

TEST_CASE("decimal formats as %llu does, and parses back") {
  for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{9}, std::uint64_t{10}, std::uint64_t{65535},
                          std::uint64_t{4294967296u}, ~std::uint64_t{0}}) {
    CAPTURE(v);
    CHECK(xs::decimal{v}.view() == std::to_string(v));
    CHECK(*xs::parse_decimal(xs::decimal{v}) == v);
  }
}

TEST_CASE("every former parser follows the one rule") {
  CHECK(!xs::parse_domid("00"));
  CHECK(!xs::parse_domid("+5"));
  CHECK(!xs::parse_domid("65536"));
  CHECK(*xs::parse_domid("65535") == 65535);
  CHECK(!xenbus::parse_uint("007", 100));
  CHECK(!xenbus::parse_uint("", 100));
  CHECK(!xenbus::parse_uint("101", 100));
  CHECK(*xenbus::parse_uint("100", 100) == 100);
  CHECK(xenbus::to_decimal(51712) == "51712");
}
