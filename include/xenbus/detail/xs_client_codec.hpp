// The client's side of the xenstore wire: request encoding, frame reassembly, reply checks.
#pragma once

#include <xenbus/version.hpp>
#include <xenbus/xenstore/client_error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace detail {

/// Message types of <xen/io/xs_wire.h> that the client sends or receives.
enum class xs_type : std::uint32_t {
  control = 0, directory = 1, read = 2, get_perms = 3, watch = 4, unwatch = 5,
  transaction_start = 6, transaction_end = 7, introduce = 8, release = 9,
  get_domain_path = 10, write = 11, mkdir = 12, rm = 13, set_perms = 14,
  watch_event = 15, error = 16, is_domain_introduced = 17, resume = 18, set_target = 19,
  reset_watches = 21, directory_part = 22,
};
inline constexpr std::uint32_t xs_type_count = 23;   // XS_TYPE_COUNT
inline constexpr std::size_t xs_header_size = 16;     // sizeof(struct xsd_sockmsg)
inline constexpr std::size_t xs_payload_max = 4096;   // XENSTORE_PAYLOAD_MAX
inline constexpr std::size_t xs_abs_path_max = 3072;  // XENSTORE_ABS_PATH_MAX

/// One message as it came off the wire, header fields in host order.
struct xs_frame {
  std::uint32_t type{};
  std::uint32_t req_id{};
  std::uint32_t tx_id{};
  std::string payload;
};

// The header travels in the host's byte order (xenstore peers share a machine).
inline void xs_put_u32(char* p, std::uint32_t v) noexcept { std::memcpy(p, &v, 4); }
inline std::uint32_t xs_get_u32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/// Characters xenstore allows in a path (xs_lib's valid chars); '@' starts special paths.
constexpr bool xs_path_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '/' || c == '_' || c == '@';
}

/// A path a client may send: absolute or relative, no "//", no trailing '/', or "@name".
constexpr bool xs_valid_path(std::string_view p) noexcept {
  if (p.empty() || p.size() > xs_abs_path_max) return false;
  if (p == "/") return true;
  if (p.back() == '/') return false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (!xs_path_char(p[i])) return false;
    if (p[i] == '/' && i + 1 < p.size() && p[i + 1] == '/') return false;
    if (p[i] == '@' && i != 0) return false;
  }
  return true;
}

/// Builds a request: header then the NUL-terminated parts, the last one raw if `raw_last`.
/// Fails with bad_request when the payload exceeds 4096 bytes.
inline result<std::string, xs_error> xs_encode(xs_type type, std::uint32_t req_id,
                                               std::uint32_t tx_id,
                                               std::initializer_list<std::string_view> parts,
                                               bool raw_last = false) {
  std::size_t len = 0;
  std::size_t i = 0;
  for (auto p : parts) len += p.size() + ((raw_last && ++i == parts.size()) ? 0 : 1);
  if (len > xs_payload_max) return unexpected{xs_error{xs_errc::bad_request}};
  std::string out(xs_header_size, '\0');
  xs_put_u32(out.data(), static_cast<std::uint32_t>(type));
  xs_put_u32(out.data() + 4, req_id);
  xs_put_u32(out.data() + 8, tx_id);
  xs_put_u32(out.data() + 12, static_cast<std::uint32_t>(len));
  out.reserve(xs_header_size + len);
  i = 0;
  for (auto p : parts) {
    out.append(p);
    if (!(raw_last && ++i == parts.size())) out.push_back('\0');
  }
  return out;
}

/// Reassembles frames from a byte stream the server sends. The header is checked as soon
/// as its 16 bytes are in (type the server may send, len <= 4096), so memory stays bounded.
class xs_frame_reader {
 public:
  /// Appends bytes received from the transport.
  void push(std::string_view bytes) { buf_.append(bytes); }

  /// Takes the next complete frame into `out`: true if one was complete, false if more
  /// bytes are needed, or the fault that makes the stream unusable.
  result<bool, xs_fault> next(xs_frame& out) {
    const std::size_t have = buf_.size() - pos_;
    if (have < xs_header_size) return compact(false);
    const char* h = buf_.data() + pos_;
    const std::uint32_t type = xs_get_u32(h);
    const std::uint32_t len = xs_get_u32(h + 12);
    if (!server_may_send(type)) return unexpected{xs_fault::bad_type};
    if (len > xs_payload_max) return unexpected{xs_fault::oversized_len};
    if (have < xs_header_size + len) return compact(false);
    out.type = type;
    out.req_id = xs_get_u32(h + 4);
    out.tx_id = xs_get_u32(h + 8);
    out.payload.assign(h + xs_header_size, len);
    pos_ += xs_header_size + len;
    return compact(true);
  }

  /// Forgets partial input (after a ring reconnection).
  void clear() noexcept {
    buf_.clear();
    pos_ = 0;
  }
  /// Bytes held that do not yet form a complete frame.
  std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  static constexpr bool server_may_send(std::uint32_t t) noexcept {
    // Replies to what a client may ask, errors and watch events; never a request-only type.
    switch (static_cast<xs_type>(t)) {
      case xs_type::control: case xs_type::directory: case xs_type::read:
      case xs_type::get_perms: case xs_type::watch: case xs_type::unwatch:
      case xs_type::transaction_start: case xs_type::transaction_end:
      case xs_type::introduce: case xs_type::release: case xs_type::get_domain_path:
      case xs_type::write: case xs_type::mkdir: case xs_type::rm: case xs_type::set_perms:
      case xs_type::watch_event: case xs_type::error: case xs_type::is_domain_introduced:
      case xs_type::resume: case xs_type::set_target: case xs_type::reset_watches:
      case xs_type::directory_part:
        return true;
    }
    return false;
  }
  bool compact(bool r) {
    // Drop consumed bytes once they dominate, so the buffer never grows past ~2 frames.
    if (pos_ > 0 && pos_ >= buf_.size() / 2) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return r;
  }
  std::string buf_;
  std::size_t pos_ = 0;
};

/// Splits "a\0b\0" into {"a","b"}; false if the payload is non-empty and not NUL-terminated.
inline bool xs_split_nul(std::string_view payload, std::vector<std::string_view>& out) {
  out.clear();
  if (payload.empty()) return true;
  if (payload.back() != '\0') return false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < payload.size(); ++i) {
    if (payload[i] == '\0') {
      out.push_back(payload.substr(start, i - start));
      start = i + 1;
    }
  }
  return true;
}

/// Parses an unsigned decimal without sign, spaces or overflow beyond `max`.
constexpr bool xs_parse_uint(std::string_view s, std::uint64_t max, std::uint64_t& v) noexcept {
  if (s.empty() || s.size() > 10) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v <= max;
}

/// An errno name as servers spell them: 'E' then capitals and digits, at most 15 chars.
constexpr bool xs_errno_like(std::string_view s) noexcept {
  if (s.size() < 2 || s.size() > 15 || s[0] != 'E') return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

/// Checks an XS_ERROR payload and maps it to a code: "NAME\0".
inline result<xs_errc, xs_fault> xs_parse_error_reply(std::string_view payload) {
  if (payload.size() < 2 || payload.back() != '\0') return unexpected{xs_fault::bad_error_name};
  const auto name = payload.substr(0, payload.size() - 1);
  if (!xs_errno_like(name)) return unexpected{xs_fault::bad_error_name};
  return detail::xs_errc_from_name(name);
}

/// Checks that a reply of the request's own type is well formed for that type; the typed
/// accessors of the client rely on these rules.
inline bool xs_reply_payload_ok(xs_type type, std::string_view p) {
  std::vector<std::string_view> parts;
  switch (type) {
    case xs_type::read:
      return true;  // node data: any bytes
    case xs_type::write: case xs_type::mkdir: case xs_type::rm: case xs_type::set_perms:
    case xs_type::watch: case xs_type::unwatch: case xs_type::transaction_end:
    case xs_type::reset_watches:
      return p == std::string_view("OK\0", 3);
    case xs_type::directory: {
      if (p == std::string_view("\0", 1)) return true;  // some servers send one NUL for none
      if (!xs_split_nul(p, parts)) return false;
      for (auto n : parts) {
        if (n.empty()) return false;
        for (char c : n)
          if (!xs_path_char(c) || c == '/') return false;
      }
      return true;
    }
    case xs_type::get_perms: {
      if (!xs_split_nul(p, parts) || parts.empty()) return false;
      for (auto s : parts) {
        std::uint64_t d;
        if (s.size() < 2 || (s[0] != 'n' && s[0] != 'r' && s[0] != 'w' && s[0] != 'b'))
          return false;
        if (!xs_parse_uint(s.substr(1), 0xffff, d)) return false;
      }
      return true;
    }
    case xs_type::transaction_start: {
      std::uint64_t id;
      if (p.size() < 2 || p.back() != '\0') return false;
      return xs_parse_uint(p.substr(0, p.size() - 1), 0xffffffffu, id) && id != 0;
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

/// Splits and checks an XS_WATCH_EVENT payload "path\0token\0".
inline bool xs_parse_watch_event(std::string_view p, std::string_view& path,
                                 std::string_view& token) {
  std::vector<std::string_view> parts;
  if (!xs_split_nul(p, parts) || parts.size() != 2) return false;
  if (!xs_valid_path(parts[0]) || parts[1].empty()) return false;
  path = parts[0];
  token = parts[1];
  return true;
}

}  // namespace detail
XENBUS_END_NAMESPACE
