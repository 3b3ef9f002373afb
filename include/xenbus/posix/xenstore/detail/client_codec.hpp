// [posix] The client's side of the xenstore wire on top of wire.hpp: request encoding and the stricter per-type reply
// checks.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/errors.hpp>
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

/// A node name as a DIRECTORY or DIRECTORY_PART reply lists it: one path component, so
/// [A-Za-z0-9_@-] without '/' (xenstore.txt: a path is names separated by '/', each of
/// those characters). '@' may stand anywhere in a name ("x@y", "@x"): only a whole
/// *path* starting with '@' is special. wire.hpp checks paths, not names, so the client
/// keeps this check here. Bounded by abs_path_max (no name is longer than a path).
constexpr bool xs_valid_node_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > xenstore::abs_path_max) return false;
  for (char c : n) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '@';
    if (!ok) return false;
  }
  return true;
}

/// The path of an XS_WATCH_EVENT. Unlike a path the client sends, a relative event path
/// (the server strips "/local/domain/<domid>/" for a relative watch) may be as long as an
/// absolute one less that prefix: the node may have been written by its absolute path, up
/// to XENSTORE_ABS_PATH_MAX. So the syntax of check_path, with abs_path_max for both kinds,
/// and the two special paths as themselves.
constexpr bool xs_valid_event_path(std::string_view p) noexcept {
  if (p.empty() || p.size() > xenstore::abs_path_max) return false;
  if (p[0] == '@') return p == xenstore::introduce_domain_path || p == xenstore::release_domain_path;
  char prev = '\0';
  for (char c : p) {
    if (c != '/' && !xs_valid_node_name(std::string_view(&c, 1))) return false;
    if (c == '/' && prev == '/') return false;
    prev = c;
  }
  return p.back() != '/' || p == "/";
}

/// An XS_WATCH_EVENT payload: exactly "path\0token\0" with a valid path (the token is ours
/// to match; any text without NUL).
constexpr bool xs_parse_event(std::string_view payload, std::string_view& path, std::string_view& token) noexcept {
  std::string_view a[2];
  if (!xenstore::split_exact(payload, a) || !xs_valid_event_path(a[0])) return false;
  path = a[0];
  token = a[1];
  return true;
}

/// Builds a request: header then the parts, each followed by a NUL except a raw last part
/// (WRITE's value). Fails with bad_request when the payload exceeds 4096 bytes.
inline result<std::string, xenstore::error> xs_encode(xs_type type, std::uint32_t req_id, std::uint32_t tx_id,
                                                      std::initializer_list<std::string_view> parts,
                                                      bool raw_last = false) {
  std::size_t len = 0;
  std::size_t i = 0;
  for (auto p : parts) len += p.size() + ((raw_last && ++i == parts.size()) ? 0 : 1);
  if (len > xenstore::payload_max) return unexpected{xenstore::error{xenstore::errc::bad_request}};
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
constexpr result<xenstore::errc, xenstore::fault> xs_parse_error_reply(std::string_view payload) noexcept {
  if (payload.size() < 2 || payload.back() != '\0') return unexpected{xenstore::fault::bad_error_name};
  const auto name = payload.substr(0, payload.size() - 1);
  if (!xs_errno_like(name)) return unexpected{xenstore::fault::bad_error_name};
  if (auto e = xenstore::parse_errc(name)) return *e;
  return xenstore::errc::eother;
}

/// The stricter checks behind the client's typed results, on a reply that wire.hpp's
/// parse_reply accepted and whose type matches the request.
constexpr bool xs_reply_payload_ok(xs_type type, std::string_view p) noexcept {
  switch (type) {
    case xs_type::read:
      return true;  // node data: any bytes
    case xs_type::write:
    case xs_type::mkdir:
    case xs_type::rm:
    case xs_type::set_perms:
    case xs_type::watch:
    case xs_type::unwatch:
    case xs_type::transaction_end:
    case xs_type::reset_watches:
      return p == std::string_view("OK\0", 3);
    case xs_type::directory: {
      if (p == std::string_view("\0", 1)) return true;  // some servers send one NUL for none
      if (!p.empty() && p.back() != '\0') return false;
      for (auto n : xenstore::string_list{p})
        if (!xs_valid_node_name(n)) return false;  // names, not paths: "x@y" and "@x" are legal
      return true;
    }
    case xs_type::directory_part: {
      // "<generation>\0" then whole names, each with its NUL, then one more NUL when the
      // list ends in this part (xenstore.txt DIRECTORY_PART; libxenstore's
      // xs_directory_part stops at that empty string).
      if (p.empty() || p.back() != '\0') return false;
      const auto gen_end = p.find('\0');
      if (!xenstore::parse_decimal(p.substr(0, gen_end))) return false;
      auto rest = p.substr(gen_end + 1);
      if (!rest.empty() && rest.back() == '\0' && (rest.size() == 1 || rest[rest.size() - 2] == '\0'))
        rest.remove_suffix(1);  // the end marker
      for (auto n : xenstore::string_list{rest})
        if (!xs_valid_node_name(n)) return false;
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
      auto id = xenstore::parse_decimal(p.substr(0, p.size() - 1), 0xffffffffu);
      return id && *id != 0;
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

/// One DIRECTORY_PART reply, already checked by xs_reply_payload_ok: its generation text,
/// its names (each with its NUL, as XS_DIRECTORY lists them) and whether the list ends here.
struct xs_dir_part {
  std::string_view generation;
  std::string_view names;
  bool last{false};
};
constexpr xs_dir_part xs_split_dir_part(std::string_view p) noexcept {
  xs_dir_part out;
  const auto gen_end = p.find('\0');
  out.generation = p.substr(0, gen_end);
  out.names = p.substr(gen_end + 1);
  if (!out.names.empty() && (out.names.size() == 1 || out.names[out.names.size() - 2] == '\0')) {
    out.names.remove_suffix(1);
    out.last = true;
  }
  return out;
}

/// Maps wire.hpp's refusal of a server message to the client's fault.
constexpr xenstore::fault xs_fault_of(xenstore::reply_error e) noexcept {
  switch (e) {
    case xenstore::reply_error::unknown_type:
      return xenstore::fault::bad_type;
    case xenstore::reply_error::bad_error_text:
      return xenstore::fault::bad_error_name;
    case xenstore::reply_error::bad_watch_event:
      return xenstore::fault::malformed_event;
    case xenstore::reply_error::missing_nul:
      return xenstore::fault::malformed_payload;
  }
  return xenstore::fault::malformed_payload;
}

}  // namespace detail
XENBUS_END_NAMESPACE
