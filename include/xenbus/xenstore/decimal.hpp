// [freestanding] The one strict decimal parser and formatter for xenstore text (domids, ports, grant refs, offsets).
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// Digits of the largest 64-bit value (18446744073709551615): the bound of every scan and buffer here.
inline constexpr std::size_t decimal_max_digits = 20;

/// Why a decimal text was refused.
enum class decimal_error : std::uint8_t {
  empty,         ///< no digits at all
  not_a_digit,   ///< a sign, a space, a letter, a NUL...: anything but '0'-'9'
  leading_zero,  ///< "07": "%u" never writes it, and "07" and "7" must not name the same thing
  too_large,     ///< above the caller's maximum (or beyond 64 bits)
};

constexpr std::string_view to_string(decimal_error e) noexcept {
  switch (e) {
    case decimal_error::empty:
      return "empty";
    case decimal_error::not_a_digit:
      return "not a digit";
    case decimal_error::leading_zero:
      return "leading zero";
    case decimal_error::too_large:
      return "too large";
  }
  return "?";
}

/// Parses exactly what "%u" (or "%llu") writes for a value <= `max`: one or more digits,
/// no sign, no space, no leading zero except "0" itself. Peer text is never trusted
/// further: at most decimal_max_digits + 1 characters are looked at.
constexpr result<std::uint64_t, decimal_error> parse_decimal(std::string_view t,
                                                             std::uint64_t max = ~std::uint64_t{0}) noexcept {
  if (t.empty()) return unexpected{decimal_error::empty};
  const std::size_t scan = t.size() < decimal_max_digits + 1 ? t.size() : decimal_max_digits + 1;
  for (std::size_t i = 0; i < scan; ++i)
    if (t[i] < '0' || t[i] > '9') return unexpected{decimal_error::not_a_digit};
  if (t.size() > 1 && t[0] == '0') return unexpected{decimal_error::leading_zero};
  if (t.size() > decimal_max_digits) return unexpected{decimal_error::too_large};
  std::uint64_t v = 0;
  for (char c : t) {
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (d > max || v > (max - d) / 10) return unexpected{decimal_error::too_large};
    v = v * 10 + d;
  }
  return v;
}

/// Writes the decimal digits of `v` (as "%llu" does) into `out`; returns how many.
constexpr std::size_t format_decimal(std::uint64_t v, char (&out)[decimal_max_digits]) noexcept {
  char rev[decimal_max_digits] = {};
  std::size_t n = 0;
  do {
    rev[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (std::size_t i = 0; i < n; ++i) out[i] = rev[n - 1 - i];
  return n;
}

/// The decimal text of a value, held in place (no heap): `decimal(5).view() == "5"`.
class decimal {
 public:
  constexpr explicit decimal(std::uint64_t v) noexcept : n_{format_decimal(v, digits_)} {}
  constexpr std::string_view view() const noexcept { return {digits_, n_}; }
  constexpr operator std::string_view() const noexcept { return view(); }

 private:
  char digits_[decimal_max_digits] = {};
  std::size_t n_;
};

}  // namespace xenstore
XENBUS_END_NAMESPACE
