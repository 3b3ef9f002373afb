// Tests include/xenbus/xenstore/wire.hpp: numbering against xs_wire.h, header codec, the
// incremental decoder, and strict request/reply validation.
#include <cerrno>  // before wire.hpp: xs_wire.h defines xsd_errors[] only when EINVAL exists

#include <xenbus/xenstore/wire.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace std::string_view_literals;
namespace xs = xenbus::xenstore;

static_assert(xs::parse_errc("EAGAIN").value() == xs::errc::eagain);
static_assert(xs::check_path("/local/domain/0", false).value() == xs::path_kind::absolute);
static_assert(!xs::check_path("/a/", false).has_value());
static_assert(noexcept(xs::parse_request(xs::message{})));

namespace {

std::string msg(xs::msg_type t, std::string_view payload, std::uint32_t req = 1, std::uint32_t tx = 0) {
  std::string out(xs::header_size + payload.size(), '\0');
  const auto n = xs::encode_message(t, req, tx, {payload}, std::span<char>{out.data(), out.size()});
  REQUIRE(n == out.size());
  return out;
}

xs::message as_message(xs::msg_type t, std::string_view payload) {
  return xs::message{xs::header{static_cast<std::uint32_t>(t), 1, 0, static_cast<std::uint32_t>(payload.size())},
                     payload};
}

xs::errc request_error(xs::msg_type t, std::string_view payload) {
  auto r = xs::parse_request(as_message(t, payload));
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

}  // namespace

TEST_CASE("error names follow xsd_errors[] in order and spelling") {
  constexpr std::size_t n = sizeof(xsd_errors) / sizeof(xsd_errors[0]);
  REQUIRE(n == xs::errc_count);
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(xs::to_string(static_cast<xs::errc>(i)) == std::string_view{xsd_errors[i].errstring});
    auto parsed = xs::parse_errc(xsd_errors[i].errstring);
    REQUIRE(parsed.has_value());
    CHECK(static_cast<std::size_t>(*parsed) == i);
  }
  CHECK_FALSE(xs::parse_errc("EWHATEVER").has_value());
  CHECK_FALSE(xs::parse_errc("einval").has_value());
}

TEST_CASE("message types: known values, the removed XS_RESTRICT and out of range") {
  CHECK(xs::is_known(xs::msg_type::read));
  CHECK(xs::is_known(xs::msg_type::directory_part));
  CHECK_FALSE(xs::is_known(static_cast<xs::msg_type>(20)));
  CHECK_FALSE(xs::is_known(xs::msg_type::type_count));
  CHECK_FALSE(xs::is_known(xs::msg_type::invalid));
  CHECK(xs::to_string(xs::msg_type::transaction_start) == "TRANSACTION_START");
}

TEST_CASE("header encodes to xsd_sockmsg bytes and back") {
  const xs::header h{static_cast<std::uint32_t>(xs::msg_type::write), 0xdeadbeef, 42, 4096};
  char bytes[xs::header_size];
  xs::encode_header(h, std::span<char, xs::header_size>{bytes, xs::header_size});
  xsd_sockmsg raw;
  std::memcpy(&raw, bytes, sizeof raw);
  CHECK(raw.type == XS_WRITE);
  CHECK(raw.req_id == 0xdeadbeef);
  CHECK(raw.tx_id == 42);
  CHECK(raw.len == 4096);
  CHECK(xs::decode_header(std::span<const char, xs::header_size>{bytes, xs::header_size}) == h);
}

TEST_CASE("encode_message refuses payloads over 4096 bytes and small buffers") {
  std::string big(4097, 'x');
  std::vector<char> out(xs::header_size + big.size());
  CHECK(xs::encode_message(xs::msg_type::write, 1, 0, {big}, out) == 0);
  std::string ok(4096, 'x');
  CHECK(xs::encode_message(xs::msg_type::write, 1, 0, {ok}, out) == xs::header_size + 4096);
  char small[20];
  CHECK(xs::encode_message(xs::msg_type::write, 1, 0, {"hello"}, small) == 0);
}

TEST_CASE("decoder reassembles messages from any chunking") {
  const std::string stream = msg(xs::msg_type::read, "/a\0"sv, 1) + msg(xs::msg_type::transaction_start, "", 2) +
                             msg(xs::msg_type::write, "/b\0value"sv, 3);
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{16}, std::size_t{17}, stream.size()}) {
    CAPTURE(chunk);
    auto dec = std::make_unique<xs::decoder>();
    std::vector<xs::header> seen;
    std::vector<std::string> payloads;
    std::size_t at = 0;
    while (at < stream.size()) {
      const std::size_t n = std::min(chunk, stream.size() - at);
      // An exact-size heap copy: ASan reports any read past what the decoder was given.
      std::vector<char> piece(stream.begin() + static_cast<std::ptrdiff_t>(at),
                              stream.begin() + static_cast<std::ptrdiff_t>(at + n));
      std::size_t used = 0;
      while (used < piece.size()) {
        used += dec->feed(std::span<const char>{piece}.subspan(used));
        if (dec->ready()) {
          seen.push_back(dec->current().hdr);
          payloads.emplace_back(dec->current().payload);
          dec->next();
        }
      }
      at += n;
    }
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].req_id == 1);
    CHECK(payloads[0] == "/a\0"sv);
    CHECK(seen[1].kind() == xs::msg_type::transaction_start);
    CHECK(payloads[1].empty());
    CHECK(payloads[2] == "/b\0value"sv);
    CHECK(dec->pending() == 0);
  }
}

TEST_CASE("decoder stops at the end of a message and reports partial input") {
  auto dec = std::make_unique<xs::decoder>();
  const std::string two = msg(xs::msg_type::read, "/a"sv) + msg(xs::msg_type::read, "/bb"sv);
  const auto used = dec->feed(two);
  CHECK(used == xs::header_size + 2);
  REQUIRE(dec->ready());
  CHECK(dec->feed(std::string_view{two}.substr(used)) == 0);  // nothing taken while ready
  dec->next();
  CHECK(dec->feed(std::string_view{two}.substr(used, 5)) == 5);
  CHECK(dec->pending() == 5);
  CHECK_FALSE(dec->ready());
}

TEST_CASE("decoder breaks the stream on len over XENSTORE_PAYLOAD_MAX, never reads on") {
  SUBCASE("4097") {
    auto dec = std::make_unique<xs::decoder>();
    xs::header h{static_cast<std::uint32_t>(xs::msg_type::write), 1, 0, 4097};
    char b[xs::header_size + 4];
    xs::encode_header(h, std::span<char, xs::header_size>{b, xs::header_size});
    CHECK(dec->feed(std::span<const char>{b, sizeof b}) == xs::header_size);
    CHECK(dec->broken());
    CHECK(dec->error() == xs::stream_error::payload_too_long);
    CHECK(dec->feed(std::span<const char>{b, sizeof b}) == 0);
    dec->reset();
    CHECK_FALSE(dec->broken());
  }
  SUBCASE("len with the top bit set is huge, not negative") {
    auto dec = std::make_unique<xs::decoder>();
    xs::header h{static_cast<std::uint32_t>(xs::msg_type::write), 1, 0, 0xffffffffu};
    char b[xs::header_size];
    xs::encode_header(h, std::span<char, xs::header_size>{b, xs::header_size});
    dec->feed(std::span<const char>{b, sizeof b});
    CHECK(dec->broken());
  }
  SUBCASE("exactly 4096 is fine") {
    auto dec = std::make_unique<xs::decoder>();
    const auto m = msg(xs::msg_type::write, std::string{"/a\0"sv} + std::string(4093, 'v'));
    CHECK(dec->feed(m) == m.size());
    CHECK(dec->ready());
    CHECK(dec->current().payload.size() == 4096);
  }
}

TEST_CASE("path syntax") {
  using xs::check_path;
  CHECK(check_path("/", false).value() == xs::path_kind::absolute);
  CHECK(check_path("/local/domain/0/device/vif/0", false).value() == xs::path_kind::absolute);
  CHECK(check_path("device/vbd/768", false).value() == xs::path_kind::relative);
  CHECK(check_path("/a-b_c@d/E9", false).has_value());
  CHECK(check_path("@introduceDomain", true).value() == xs::path_kind::special);
  CHECK(check_path("@releaseDomain", true).value() == xs::path_kind::special);
  for (auto bad : {""sv, "/a/"sv, "a/"sv, "//"sv, "/a//b"sv, "/a b"sv, "/a.b"sv, "/a\nb"sv, "/a:b"sv, "/\xc3\xa9"sv,
                   "@introduceDomain"sv, "@other"sv, "@"sv, "/a\0b"sv}) {
    CAPTURE(bad);
    CHECK_FALSE(check_path(bad, false).has_value());
  }
  CHECK_FALSE(check_path("@other", true).has_value());
  const std::string abs_ok = "/" + std::string(xs::abs_path_max - 1, 'a');
  CHECK(check_path(abs_ok, false).has_value());
  CHECK_FALSE(check_path(abs_ok + "a", false).has_value());
  const std::string rel_ok(xs::rel_path_max, 'a');
  CHECK(check_path(rel_ok, false).has_value());
  CHECK_FALSE(check_path(rel_ok + "a", false).has_value());
}

TEST_CASE("requests: NUL rules and argument counts per type") {
  using T = xs::msg_type;
  SUBCASE("one path, NUL-terminated, nothing after") {
    for (auto t : {T::read, T::directory, T::get_perms, T::mkdir, T::rm}) {
      CAPTURE(xs::to_string(t));
      auto r = xs::parse_request(as_message(t, "/a/b\0"sv));
      REQUIRE(r.has_value());
      CHECK(r->path == "/a/b");
      CHECK(request_error(t, "/a/b"sv) == xs::errc::einval);       // missing NUL
      CHECK(request_error(t, "/a/b\0x\0"sv) == xs::errc::einval);  // extra argument
      CHECK(request_error(t, ""sv) == xs::errc::einval);
      CHECK(request_error(t, "/a/\0"sv) == xs::errc::einval);  // bad path
    }
  }
  SUBCASE("write: path NUL then raw bytes") {
    auto r = xs::parse_request(as_message(T::write, "/a\0x\0y"sv));
    REQUIRE(r.has_value());
    CHECK(r->data == "x\0y"sv);
    auto empty = xs::parse_request(as_message(T::write, "/a\0"sv));
    REQUIRE(empty.has_value());
    CHECK(empty->data.empty());
    CHECK(request_error(T::write, "/a"sv) == xs::errc::einval);
  }
  SUBCASE("watch: path and token, special paths allowed") {
    auto r = xs::parse_request(as_message(T::watch, "@releaseDomain\0tok\0"sv));
    REQUIRE(r.has_value());
    CHECK(r->kind == xs::path_kind::special);
    CHECK(r->data == "tok");
    CHECK(request_error(T::watch, "/a\0tok"sv) == xs::errc::einval);
    CHECK(request_error(T::watch, "/a\0"sv) == xs::errc::einval);
    CHECK(request_error(T::unwatch, "/a\0t\0x\0"sv) == xs::errc::einval);
    CHECK(request_error(T::read, "@releaseDomain\0"sv) == xs::errc::einval);
  }
  SUBCASE("transactions") {
    CHECK(xs::parse_request(as_message(T::transaction_start, "\0"sv)).has_value());
    CHECK(xs::parse_request(as_message(T::transaction_start, ""sv)).has_value());
    CHECK(request_error(T::transaction_start, "x\0"sv) == xs::errc::einval);
    CHECK(xs::parse_request(as_message(T::transaction_end, "T\0"sv))->number == 1);
    CHECK(xs::parse_request(as_message(T::transaction_end, "F\0"sv))->number == 0);
    CHECK(request_error(T::transaction_end, "T"sv) == xs::errc::einval);
    CHECK(request_error(T::transaction_end, "X\0"sv) == xs::errc::einval);
  }
  SUBCASE("set_perms: path then at least one valid perm") {
    auto r = xs::parse_request(as_message(T::set_perms, "/a\0n0\0r5\0"sv));
    REQUIRE(r.has_value());
    CHECK(r->list == "n0\0r5\0"sv);
    CHECK(request_error(T::set_perms, "/a\0"sv) == xs::errc::einval);
    CHECK(request_error(T::set_perms, "/a\0x0\0"sv) == xs::errc::einval);
    CHECK(request_error(T::set_perms, "/a\0r\0"sv) == xs::errc::einval);
    CHECK(request_error(T::set_perms, "/a\0r5"sv) == xs::errc::einval);
    CHECK(request_error(T::set_perms, "/a\0r99999\0"sv) == xs::errc::einval);
  }
  SUBCASE("domain operations take a strict domid") {
    CHECK(xs::parse_request(as_message(T::get_domain_path, "7\0"sv))->domid == 7);
    CHECK(request_error(T::get_domain_path, "-1\0"sv) == xs::errc::einval);
    CHECK(request_error(T::get_domain_path, "07\0"sv) == xs::errc::einval);
    CHECK(request_error(T::get_domain_path, "70000\0"sv) == xs::errc::einval);
    auto intro = xs::parse_request(as_message(T::introduce,
                                              "3\0"
                                              "1234\0"
                                              "9\0"sv));
    REQUIRE(intro.has_value());
    CHECK(intro->domid == 3);
    CHECK(intro->mfn == 1234);
    CHECK(intro->domid2 == 9);
  }
  SUBCASE("directory_part: path and decimal offset") {
    CHECK(xs::parse_request(as_message(T::directory_part,
                                       "/a\0"
                                       "12\0"sv))
              ->number == 12);
    CHECK(request_error(T::directory_part, "/a\0x\0"sv) == xs::errc::einval);
  }
  SUBCASE("unknown types and server-only types answer ENOSYS") {
    CHECK(request_error(static_cast<T>(20), "/a\0"sv) == xs::errc::enosys);
    CHECK(request_error(static_cast<T>(999), ""sv) == xs::errc::enosys);
    CHECK(request_error(T::watch_event, "/a\0t\0"sv) == xs::errc::enosys);
    CHECK(request_error(T::error, "EINVAL\0"sv) == xs::errc::enosys);
  }
}

TEST_CASE("permission entries parse and format as letter + domid") {
  auto p = xs::parse_perm("b65535");
  REQUIRE(p.has_value());
  CHECK(p->acc == xs::access::both);
  CHECK(p->domid == 65535);
  char out[6];
  CHECK(std::string_view{out, xs::format_perm(*p, out)} == "b65535");
  CHECK(std::string_view{out, xs::format_perm({xs::access::none, 0}, out)} == "n0");
  for (auto bad : {""sv, "r"sv, "x1"sv, "r-1"sv, "r65536"sv, "R1"sv, "r 1"sv})
    CHECK_FALSE(xs::parse_perm(bad).has_value());
}

TEST_CASE("string_list walks NUL-terminated strings and ignores an unterminated tail") {
  std::vector<std::string_view> v;
  for (auto s : xs::string_list{"a\0\0bc\0tail"sv}) v.push_back(s);
  REQUIRE(v.size() == 3);
  CHECK(v[0] == "a");
  CHECK(v[1].empty());
  CHECK(v[2] == "bc");
  CHECK(xs::count_strings("a\0\0bc\0tail"sv) == 3);
}

TEST_CASE("replies: error names, watch events, NUL rules") {
  using T = xs::msg_type;
  auto err = xs::parse_reply(as_message(T::error, "EAGAIN\0"sv));
  REQUIRE(err.has_value());
  CHECK(err->is_error());
  CHECK(err->error == xs::errc::eagain);
  CHECK(xs::parse_reply(as_message(T::error, "EAGAIN"sv)).error() == xs::reply_error::bad_error_text);
  CHECK(xs::parse_reply(as_message(T::error, "EFOO\0"sv)).error() == xs::reply_error::bad_error_text);
  auto ev = xs::parse_reply(as_message(T::watch_event, "/a/b\0tok\0"sv));
  REQUIRE(ev.has_value());
  CHECK(ev->path == "/a/b");
  CHECK(ev->token == "tok");
  CHECK_FALSE(xs::parse_reply(as_message(T::watch_event, "/a/b\0"sv)).has_value());
  CHECK(xs::parse_reply(as_message(T::read, "raw"sv)).has_value());
  CHECK(xs::parse_reply(as_message(T::write, "OK\0"sv)).has_value());
  CHECK(xs::parse_reply(as_message(T::write, "OK"sv)).error() == xs::reply_error::missing_nul);
  CHECK(xs::parse_reply(as_message(T::directory, ""sv)).has_value());
  CHECK(xs::parse_reply(as_message(static_cast<T>(77), ""sv)).error() == xs::reply_error::unknown_type);
}
