// Tests include/xenbus/protocol/state.hpp: numbering, names and strict parsing of state text.
#include <xenbus/protocol/state.hpp>

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace std::string_view_literals;
using xenbus::parse_state;
using xenbus::state;
using xenbus::state_parse_error;

static_assert(parse_state("4").value() == state::connected);
static_assert(!parse_state("").has_value());
static_assert(noexcept(parse_state("1")));

TEST_CASE("every state round-trips through the text \"%d\" writes") {
  for (state s : xenbus::all_states) {
    const auto text = xenbus::to_node_text(s);
    CHECK(text == std::to_string(static_cast<int>(s)));
    auto parsed = parse_state(text);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == s);
  }
}

TEST_CASE("state text that \"%d\" would not write is refused with a reason") {
  auto err = [](std::string_view t) {
    auto r = parse_state(t);
    REQUIRE_FALSE(r.has_value());
    return r.error();
  };
  CHECK(err("") == state_parse_error::empty);
  CHECK(err("9") == state_parse_error::out_of_range);
  CHECK(err("10") == state_parse_error::out_of_range);
  CHECK(err("4294967300") == state_parse_error::out_of_range);
  CHECK(err("12345678901234567890") == state_parse_error::too_long);
  CHECK(err("-1") == state_parse_error::not_a_digit);
  CHECK(err("+4") == state_parse_error::not_a_digit);
  CHECK(err(" 4") == state_parse_error::not_a_digit);
  CHECK(err("4 ") == state_parse_error::not_a_digit);
  CHECK(err("4\n") == state_parse_error::not_a_digit);
  CHECK(err("4\0"sv) == state_parse_error::not_a_digit);
  CHECK(err("\0"sv) == state_parse_error::not_a_digit);
  CHECK(err("04") == state_parse_error::leading_zero);
  CHECK(err("00") == state_parse_error::leading_zero);
  CHECK(err("Connected") == state_parse_error::not_a_digit);
  CHECK(err(std::string(5000, '4')) == state_parse_error::too_long);
  CHECK(xenbus::to_string(state_parse_error::leading_zero).find("leading zero") != std::string_view::npos);
}

TEST_CASE("names follow Xen's XenbusState names") {
  CHECK(xenbus::to_string(state::init_wait) == "InitWait");
  CHECK(xenbus::to_string(state::reconfigured) == "Reconfigured");
  CHECK(xenbus::to_string(xenbus::role::toolstack) == "toolstack");
  CHECK(xenbus::to_string(static_cast<state>(42)) == "(invalid)");
}
