// The client's side of the xenstore wire on top of wire.hpp: request encoding and the stricter per-type reply checks.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/client_error.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace detail {

using xs_type = xenstore::msg_type;

// The client's error codes start with the protocol's, in the same order.
static_assert(static_cast<std::size_t>(xs_errc::eother) == xenstore::errc_count);
static_assert([] {
  for (std::size_t i = 0; i < xenstore::errc_count; ++i)
    if (xenstore::to_string(static_cast<xenstore::errc>(i)) != xs_errno_names[i]) return false;
  return true;
}(), "xs_errc must name the errors in the order of xenstore::errc (xsd_errors[])");

// Header fields travel in host byte order (xenstore peers share one machine).
inline void xs_put_u32(char* p, std::uint32_t v) noexcept { std::memcpy(p, &v, sizeof v); }
inline std::uint32_t xs_get_u32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// A path the client may send: wire.hpp's check_path; special paths only for watches.
constexpr bool xs_valid_path(std::string_view p, bool allow_special = false) noexcept {
  return xenstore::check_path(p, allow_special).has_value();
}

/// Builds a request: header then the parts, each followed by a NUL except a raw last part
/// (WRITE's value). Fails with bad_request when the payload exceeds 4096 bytes.
inline result<std::string, xs_error> xs_encode(xs_type type, std::uint32_t req_id,
                                               std::uint32_t tx_id,
                                               std::initializer_list<std::string_view> parts,
                                               bool raw_last = false) {
  std::size_t len = 0;
  std::size_t i = 0;
  for (auto p : parts) len += p.size() + ((raw_last && ++i == parts.size()) ? 0 : 1);
  if (len > xenstore::payload_max) return unexpected{xs_error{xs_errc::bad_request}};
  std::string out(xenstore::header_size, '\0');
  xenstore::encode_header(
      xenstore::header{static_cast<std::uint32_t>(type), req_id, tx_id, static_cast<std::uint32_t>(len)},
      std::span<char, xenstore::header_size>{out.data(), xenstore::header_size});
  out.reserve(xenstore::header_size + len);
  i = 0;
  for (auto p : parts) {
    out.append(p);
    if (!(raw_last && ++i == parts.size())) out.push_back('\0');
  }
  return out;
}

/// An errno name as servers spell them: 'E' then capitals and digits, at most 15 chars.
constexpr bool xs_errno_like(std::string_view s) noexcept {
  if (s.size() < 2 || s.size() > 15 || s[0] != 'E') return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

/// Maps an XS_ERROR payload "NAME\0" to a code: a known name, eother for a well-formed
/// name newer than this client (xsd_errors[] grows at its end), else a fault.
constexpr result<xs_errc, xs_fault> xs_parse_error_reply(std::string_view payload) noexcept {
  if (payload.size() < 2 || payload.back() != '\0') return unexpected{xs_fault::bad_error_name};
  const auto name = payload.substr(0, payload.size() - 1);
  if (!xs_errno_like(name)) return unexpected{xs_fault::bad_error_name};
  if (auto e = xenstore::parse_errc(name)) return static_cast<xs_errc>(*e);
  return xs_errc::eother;
}

/// The stricter checks behind the client's typed results, on a reply that wire.hpp's
/// parse_reply accepted and whose type matches the request.
constexpr bool xs_reply_payload_ok(xs_type type, std::string_view p) noexcept {
  switch (type) {
    case xs_type::read:
      return true;  // node data: any bytes
    case xs_type::write: case xs_type::mkdir: case xs_type::rm: case xs_type::set_perms:
    case xs_type::watch: case xs_type::unwatch: case xs_type::transaction_end:
    case xs_type::reset_watches:
      return p == std::string_view("OK\0", 3);
    case xs_type::directory: {
      if (p == std::string_view("\0", 1)) return true;  // some servers send one NUL for none
      if (!p.empty() && p.back() != '\0') return false;
      for (auto n : xenstore::string_list{p}) {
        if (n.empty()) return false;
        for (char c : n)
          if (c == '/' || !xs_valid_path(std::string_view(&c, 1))) return false;
      }
      return true;
    }
    case xs_type::get_perms: {
      if (p.empty() || p.back() != '\0') return false;
      for (auto s : xenstore::string_list{p})
        if (!xenstore::parse_perm(s)) return false;
      return true;
    }
    case xs_type::transaction_start: {
      if (p.size() < 2 || p.back() != '\0') return false;
      auto id = xenstore::parse_u64(p.substr(0, p.size() - 1));
      return id && *id != 0 && *id <= 0xffffffffu;
    }
    case xs_type::get_domain_path: {
      if (p.size() < 2 || p.back() != '\0') return false;
      const auto path = p.substr(0, p.size() - 1);
      return path[0] == '/' && xs_valid_path(path);
    }
    default:
      return false;  // the client never sends other types
  }
}

/// Maps wire.hpp's refusal of a server message to the client's fault.
constexpr xs_fault xs_fault_of(xenstore::reply_error e) noexcept {
  switch (e) {
    case xenstore::reply_error::unknown_type: return xs_fault::bad_type;
    case xenstore::reply_error::bad_error_text: return xs_fault::bad_error_name;
    case xenstore::reply_error::bad_watch_event: return xs_fault::malformed_event;
    case xenstore::reply_error::missing_nul: return xs_fault::malformed_payload;
  }
  return xs_fault::malformed_payload;
}

}  // namespace detail
XENBUS_END_NAMESPACE
