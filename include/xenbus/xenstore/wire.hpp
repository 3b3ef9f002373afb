// [freestanding] Xenstore wire protocol (xen/io/xs_wire.h): message types, header codec, an incremental decoder and
// strict request/reply validation.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/decimal.hpp>
#include <xenbus/xenstore/errors.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

// ---- Message types ----------------------------------------------------------------------

/// Message type of struct xsd_sockmsg, numbered as enum xsd_sockmsg_type.
enum class msg_type : std::uint32_t {
  control = 0,  ///< XS_CONTROL (formerly XS_DEBUG)
  directory = 1,
  read = 2,
  get_perms = 3,
  watch = 4,
  unwatch = 5,
  transaction_start = 6,
  transaction_end = 7,
  introduce = 8,
  release = 9,
  get_domain_path = 10,
  write = 11,
  mkdir = 12,
  rm = 13,
  set_perms = 14,
  watch_event = 15,  ///< server to client only
  error = 16,        ///< server to client only
  is_domain_introduced = 17,
  resume = 18,
  set_target = 19,
  // 20 was XS_RESTRICT, removed from the protocol: it is an unknown type now.
  reset_watches = 21,
  directory_part = 22,
  type_count = 23,   ///< number of type values (not all valid)
  invalid = 0xffff,  ///< XS_INVALID: guaranteed never to be a valid type
};

/// True for the values Xen defines as messages today (excludes the removed 20).
constexpr bool is_known(msg_type t) noexcept {
  const auto v = static_cast<std::uint32_t>(t);
  return v < static_cast<std::uint32_t>(msg_type::type_count) && v != 20;
}

/// Xen's name without the XS_ prefix ("READ", "TRANSACTION_START", ...).
constexpr std::string_view to_string(msg_type t) noexcept {
  switch (t) {
    case msg_type::control:
      return "CONTROL";
    case msg_type::directory:
      return "DIRECTORY";
    case msg_type::read:
      return "READ";
    case msg_type::get_perms:
      return "GET_PERMS";
    case msg_type::watch:
      return "WATCH";
    case msg_type::unwatch:
      return "UNWATCH";
    case msg_type::transaction_start:
      return "TRANSACTION_START";
    case msg_type::transaction_end:
      return "TRANSACTION_END";
    case msg_type::introduce:
      return "INTRODUCE";
    case msg_type::release:
      return "RELEASE";
    case msg_type::get_domain_path:
      return "GET_DOMAIN_PATH";
    case msg_type::write:
      return "WRITE";
    case msg_type::mkdir:
      return "MKDIR";
    case msg_type::rm:
      return "RM";
    case msg_type::set_perms:
      return "SET_PERMS";
    case msg_type::watch_event:
      return "WATCH_EVENT";
    case msg_type::error:
      return "ERROR";
    case msg_type::is_domain_introduced:
      return "IS_DOMAIN_INTRODUCED";
    case msg_type::resume:
      return "RESUME";
    case msg_type::set_target:
      return "SET_TARGET";
    case msg_type::reset_watches:
      return "RESET_WATCHES";
    case msg_type::directory_part:
      return "DIRECTORY_PART";
    case msg_type::type_count:
      break;
    case msg_type::invalid:
      return "INVALID";
  }
  return "(unknown)";
}

// ---- Limits -----------------------------------------------------------------------------

inline constexpr std::size_t header_size = 16;
inline constexpr std::size_t payload_max = 4096;   ///< XENSTORE_PAYLOAD_MAX
inline constexpr std::size_t abs_path_max = 3072;  ///< XENSTORE_ABS_PATH_MAX
inline constexpr std::size_t rel_path_max = 2048;  ///< XENSTORE_REL_PATH_MAX
inline constexpr std::size_t ring_size = 1024;     ///< XENSTORE_RING_SIZE

// ---- Header -----------------------------------------------------------------------------

/// struct xsd_sockmsg, in host byte order (xenstore peers share one machine).
struct header {
  std::uint32_t type = 0;
  std::uint32_t req_id = 0;
  std::uint32_t tx_id = 0;
  std::uint32_t len = 0;  ///< payload bytes that follow; unsigned 32-bit on the wire
  constexpr msg_type kind() const noexcept { return static_cast<msg_type>(type); }
  friend constexpr bool operator==(const header&, const header&) = default;
};
static_assert(sizeof(header) == header_size);

/// Writes the 16 header bytes.
constexpr void encode_header(const header& h, std::span<char, header_size> out) noexcept {
  struct raw {
    char b[header_size];
  };
  const auto r = std::bit_cast<raw>(h);
  for (std::size_t i = 0; i < header_size; ++i) out[i] = r.b[i];
}

/// Reads 16 header bytes; no validation (see check_header).
constexpr header decode_header(std::span<const char, header_size> in) noexcept {
  struct raw {
    char b[header_size];
  };
  raw r{};
  for (std::size_t i = 0; i < header_size; ++i) r.b[i] = in[i];
  return std::bit_cast<header>(r);
}

/// Why a byte stream cannot go on: the peer broke framing, and nothing after this point
/// can be trusted to start on a message boundary.
enum class stream_error : std::uint8_t {
  payload_too_long,  ///< len > XENSTORE_PAYLOAD_MAX (len is unsigned: no negative values)
};

constexpr std::string_view to_string(stream_error e) noexcept {
  switch (e) {
    case stream_error::payload_too_long:
      return "message len exceeds XENSTORE_PAYLOAD_MAX (4096)";
  }
  return "(invalid)";
}

/// Framing check of a header: only len matters for framing; type and ids are checked
/// per message, where an error answer (not a disconnect) is the right response.
constexpr result<void, stream_error> check_header(const header& h) noexcept {
  if (h.len > payload_max) return unexpected{stream_error::payload_too_long};
  return {};
}

/// Writes header and payload parts into `out`; returns bytes written, or 0 if the parts
/// exceed XENSTORE_PAYLOAD_MAX or do not fit in `out`.
constexpr std::size_t encode_message(msg_type type, std::uint32_t req_id, std::uint32_t tx_id,
                                     std::initializer_list<std::string_view> parts, std::span<char> out) noexcept {
  std::size_t len = 0;
  for (auto p : parts) {
    if (p.size() > payload_max - len) return 0;
    len += p.size();
  }
  if (out.size() < header_size + len) return 0;
  encode_header(header{static_cast<std::uint32_t>(type), req_id, tx_id, static_cast<std::uint32_t>(len)},
                out.first<header_size>());
  std::size_t at = header_size;
  for (auto p : parts)
    for (char c : p) out[at++] = c;
  return at;
}

// ---- Incremental decoder ----------------------------------------------------------------

/// A complete message: its header and a view of its payload (valid until the decoder is
/// fed again or reset).
struct message {
  header hdr;
  std::string_view payload;
};

/// Reassembles messages from a byte stream or ring in arbitrary chunks. It copies what it
/// is given into its own fixed buffer (no heap), never reads beyond the span passed, and
/// latches an error when the framing breaks. Usage: feed(), and when ready(), take
/// current(), then next().
class decoder {
 public:
  /// Consumes bytes from `in` up to the end of the current message; returns how many it
  /// took. Stops early when a message is complete (ready()) or the stream is broken.
  constexpr std::size_t feed(std::span<const char> in) noexcept {
    std::size_t used = 0;
    while (used < in.size() && !ready_ && !broken_) {
      if (have_ < header_size) {
        const std::size_t n = take(in.subspan(used), header_size - have_, hdr_bytes_ + have_);
        used += n;
        have_ += n;
        if (have_ == header_size) {
          hdr_ = decode_header(std::span<const char, header_size>{hdr_bytes_, header_size});
          if (!check_header(hdr_)) {
            broken_ = true;
            error_ = stream_error::payload_too_long;
          } else if (hdr_.len == 0) {
            ready_ = true;
          }
        }
      } else {
        const std::size_t got = have_ - header_size;
        const std::size_t n = take(in.subspan(used), hdr_.len - got, payload_ + got);
        used += n;
        have_ += n;
        if (have_ - header_size == hdr_.len) ready_ = true;
      }
    }
    return used;
  }

  /// A whole message is waiting in current().
  constexpr bool ready() const noexcept { return ready_; }
  /// The stream broke (see error()); the connection should be dropped.
  constexpr bool broken() const noexcept { return broken_; }
  constexpr stream_error error() const noexcept { return error_; }
  /// Bytes of a partial message held (0 between messages): a peer that disconnects with
  /// this non-zero left a message unfinished.
  constexpr std::size_t pending() const noexcept { return ready_ ? 0 : have_; }
  /// Header of the message being assembled, once its 16 bytes are in.
  constexpr bool have_header() const noexcept { return have_ >= header_size; }
  constexpr const header& current_header() const noexcept { return hdr_; }

  /// The complete message; only meaningful when ready().
  constexpr message current() const noexcept { return message{hdr_, std::string_view{payload_, hdr_.len}}; }
  /// Drops the current message and starts on the next one.
  constexpr void next() noexcept {
    ready_ = false;
    have_ = 0;
  }
  /// Forgets everything, including a latched error (a ring reconnection).
  constexpr void reset() noexcept {
    next();
    broken_ = false;
    error_ = {};
  }

 private:
  static constexpr std::size_t take(std::span<const char> in, std::size_t want, char* to) noexcept {
    const std::size_t n = in.size() < want ? in.size() : want;
    for (std::size_t i = 0; i < n; ++i) to[i] = in[i];
    return n;
  }

  char hdr_bytes_[header_size] = {};
  char payload_[payload_max] = {};
  header hdr_{};
  std::size_t have_ = 0;
  bool ready_ = false;
  bool broken_ = false;
  stream_error error_{};
};

// ---- Text fields --------------------------------------------------------------------------

/// Iterates NUL-terminated strings packed in a payload ("a\0bc\0" -> "a", "bc").
/// A trailing unterminated fragment is not a string (see count_strings).
class string_list {
 public:
  constexpr explicit string_list(std::string_view payload) noexcept : p_{payload} {}
  class iterator {
   public:
    constexpr iterator(std::string_view p, std::size_t at) noexcept : p_{p}, at_{at} { find(); }
    constexpr std::string_view operator*() const noexcept { return p_.substr(at_, end_ - at_); }
    constexpr iterator& operator++() noexcept {
      at_ = end_ + 1;
      find();
      return *this;
    }
    constexpr bool operator==(const iterator& o) const noexcept { return at_ == o.at_; }

   private:
    constexpr void find() noexcept {
      end_ = p_.find('\0', at_);
      if (end_ == std::string_view::npos) at_ = end_ = p_.size();
    }
    std::string_view p_;
    std::size_t at_;
    std::size_t end_ = 0;
  };
  constexpr iterator begin() const noexcept { return iterator{p_, 0}; }
  constexpr iterator end() const noexcept { return iterator{p_, p_.size()}; }

 private:
  std::string_view p_;
};

/// Number of NUL-terminated strings in `payload` (an unterminated tail does not count).
constexpr std::size_t count_strings(std::string_view payload) noexcept {
  std::size_t n = 0;
  for (char c : payload) n += (c == '\0');
  return n;
}

/// Splits exactly `N` NUL-terminated strings filling the whole payload; false otherwise.
template <std::size_t N>
constexpr bool split_exact(std::string_view payload, std::string_view (&out)[N]) noexcept {
  if (payload.empty() || payload.back() != '\0' || count_strings(payload) != N) return false;
  std::size_t i = 0;
  for (auto s : string_list{payload}) out[i++] = s;
  return true;
}

/// Strict decimal domain id as in GET_DOMAIN_PATH/INTRODUCE: decimal.hpp's rules (no sign,
/// no space, no leading zero), at most 65535 (domid_t is 16 bits).
constexpr result<std::uint32_t, errc> parse_domid(std::string_view t) noexcept {
  auto v = parse_decimal(t, 0xffff);
  if (!v) return unexpected{errc::einval};
  return static_cast<std::uint32_t>(*v);
}

// ---- Paths ------------------------------------------------------------------------------

inline constexpr std::string_view introduce_domain_path = "@introduceDomain";
inline constexpr std::string_view release_domain_path = "@releaseDomain";

/// What kind of path a request names.
enum class path_kind : std::uint8_t {
  absolute,  ///< starts with '/'
  relative,  ///< resolved under /local/domain/<caller domid>/
  special,   ///< @introduceDomain or @releaseDomain (watches only)
};

/// Checks node path syntax: characters [A-Za-z0-9-/_@], no trailing '/' except "/",
/// no "//", absolute <= 3072 and relative <= 2048 characters; a relative path may not
/// be empty nor start with '@'. Special watch paths only when `allow_special`.
constexpr result<path_kind, errc> check_path(std::string_view p, bool allow_special) noexcept {
  if (p.empty()) return unexpected{errc::einval};
  if (p[0] == '@') {
    if (allow_special && (p == introduce_domain_path || p == release_domain_path)) return path_kind::special;
    return unexpected{errc::einval};
  }
  const bool abs = p[0] == '/';
  if (p.size() > (abs ? abs_path_max : rel_path_max)) return unexpected{errc::einval};
  char prev = '\0';
  for (char c : p) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '/' || c == '_' || c == '@';
    if (!ok) return unexpected{errc::einval};
    if (c == '/' && prev == '/') return unexpected{errc::einval};
    prev = c;
  }
  if (p.back() == '/' && p != "/") return unexpected{errc::einval};
  return abs ? path_kind::absolute : path_kind::relative;
}

// ---- Permissions --------------------------------------------------------------------------

/// Access letter of a permission entry: "n" none, "r" read, "w" write, "b" both.
enum class access : std::uint8_t { none = 0, read = 1, write = 2, both = 3 };

/// One permission entry as XS_GET_PERMS/XS_SET_PERMS spell it: letter then domid ("r5").
/// The first entry of a list names the owner; its letter is the access of every domain
/// not listed.
struct perm {
  access acc = access::none;
  std::uint16_t domid = 0;
  friend constexpr bool operator==(const perm&, const perm&) = default;
};

constexpr char to_char(access a) noexcept {
  switch (a) {
    case access::none:
      return 'n';
    case access::read:
      return 'r';
    case access::write:
      return 'w';
    case access::both:
      return 'b';
  }
  return 'n';
}

constexpr result<perm, errc> parse_perm(std::string_view t) noexcept {
  if (t.size() < 2) return unexpected{errc::einval};
  access a{};
  switch (t[0]) {
    case 'n':
      a = access::none;
      break;
    case 'r':
      a = access::read;
      break;
    case 'w':
      a = access::write;
      break;
    case 'b':
      a = access::both;
      break;
    default:
      return unexpected{errc::einval};
  }
  auto d = parse_domid(t.substr(1));
  if (!d) return unexpected{d.error()};
  return perm{a, static_cast<std::uint16_t>(*d)};
}

/// Writes "<letter><domid>" into `out` (at least 6 chars); returns chars written.
constexpr std::size_t format_perm(perm p, std::span<char, 6> out) noexcept {
  out[0] = to_char(p.acc);
  const decimal d{p.domid};
  for (std::size_t i = 0; i < d.view().size(); ++i) out[1 + i] = d.view()[i];
  return 1 + d.view().size();
}

// ---- Requests ---------------------------------------------------------------------------

/// A validated request. Fields not used by a type are empty. Views point into the payload.
struct request {
  msg_type type = msg_type::invalid;
  std::uint32_t req_id = 0;
  std::uint32_t tx_id = 0;
  std::string_view path;  ///< node path (as sent: absolute, relative or special)
  path_kind kind = path_kind::absolute;
  std::string_view data;     ///< WRITE: value bytes (any, NULs included); WATCH/UNWATCH: token
  std::uint64_t number = 0;  ///< DIRECTORY_PART: offset; TRANSACTION_END: 1 commit, 0 abort
  std::uint32_t domid = 0;   ///< domain operations: the domain; SET_TARGET: the domain
  std::uint32_t domid2 = 0;  ///< SET_TARGET: the target; INTRODUCE: event channel port
  std::uint64_t mfn = 0;     ///< INTRODUCE: ring frame
  std::string_view list;     ///< SET_PERMS: the perm strings, NUL-terminated each; CONTROL: command and args
};

/// Validates one client request, per type, as a server must before acting on it:
/// every text argument NUL-terminated, the exact number of arguments, paths well-formed.
/// Unknown types, and types only servers send, answer ENOSYS; malformed payloads EINVAL.
constexpr result<request, errc> parse_request(const message& m) noexcept {
  request r;
  r.type = m.hdr.kind();
  r.req_id = m.hdr.req_id;
  r.tx_id = m.hdr.tx_id;
  const std::string_view p = m.payload;
  if (p.size() > payload_max) return unexpected{errc::einval};
  auto path_arg = [&r](std::string_view s, bool special) -> result<void, errc> {
    auto k = check_path(s, special);
    if (!k) return unexpected{k.error()};
    r.path = s;
    r.kind = *k;
    return {};
  };
  auto empty_or_nul = [](std::string_view s) { return s.empty() || (s.size() == 1 && s[0] == '\0'); };
  switch (r.type) {
    case msg_type::directory:
    case msg_type::read:
    case msg_type::get_perms:
    case msg_type::mkdir:
    case msg_type::rm: {
      std::string_view a[1];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      // The special watch paths carry permissions (who may watch them), nothing else.
      if (auto ok = path_arg(a[0], r.type == msg_type::get_perms); !ok) return unexpected{ok.error()};
      return r;
    }
    case msg_type::write: {
      const auto nul = p.find('\0');
      if (nul == std::string_view::npos) return unexpected{errc::einval};
      if (auto ok = path_arg(p.substr(0, nul), false); !ok) return unexpected{ok.error()};
      r.data = p.substr(nul + 1);
      return r;
    }
    case msg_type::watch:
    case msg_type::unwatch: {
      std::string_view a[2];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      if (auto ok = path_arg(a[0], true); !ok) return unexpected{ok.error()};
      r.data = a[1];
      return r;
    }
    case msg_type::directory_part: {
      std::string_view a[2];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      if (auto ok = path_arg(a[0], false); !ok) return unexpected{ok.error()};
      auto off = parse_decimal(a[1]);
      if (!off) return unexpected{errc::einval};
      r.number = *off;
      return r;
    }
    case msg_type::set_perms: {
      const auto nul = p.find('\0');
      if (nul == std::string_view::npos || p.back() != '\0') return unexpected{errc::einval};
      if (auto ok = path_arg(p.substr(0, nul), true); !ok) return unexpected{ok.error()};
      r.list = p.substr(nul + 1);
      if (r.list.empty()) return unexpected{errc::einval};
      for (auto s : string_list{r.list})
        if (!parse_perm(s)) return unexpected{errc::einval};
      return r;
    }
    case msg_type::transaction_start:
    case msg_type::reset_watches:
      if (!empty_or_nul(p)) return unexpected{errc::einval};
      return r;
    case msg_type::transaction_end: {
      std::string_view a[1];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      if (a[0] == "T")
        r.number = 1;
      else if (a[0] == "F")
        r.number = 0;
      else
        return unexpected{errc::einval};
      return r;
    }
    case msg_type::get_domain_path:
    case msg_type::release:
    case msg_type::is_domain_introduced:
    case msg_type::resume: {
      std::string_view a[1];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      auto d = parse_domid(a[0]);
      if (!d) return unexpected{errc::einval};
      r.domid = *d;
      return r;
    }
    case msg_type::introduce: {
      std::string_view a[3];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      auto d = parse_domid(a[0]);
      auto mfn = parse_decimal(a[1]);
      auto port = parse_decimal(a[2], 0xffffffffu);
      if (!d || !mfn || !port) return unexpected{errc::einval};
      r.domid = *d;
      r.mfn = *mfn;
      r.domid2 = static_cast<std::uint32_t>(*port);
      return r;
    }
    case msg_type::set_target: {
      std::string_view a[2];
      if (!split_exact(p, a)) return unexpected{errc::einval};
      auto d = parse_domid(a[0]);
      auto t = parse_domid(a[1]);
      if (!d || !t) return unexpected{errc::einval};
      r.domid = *d;
      r.domid2 = *t;
      return r;
    }
    case msg_type::control:
      if (p.empty() || p.back() != '\0' || p[0] == '\0') return unexpected{errc::einval};
      r.list = p;
      return r;
    case msg_type::watch_event:
    case msg_type::error:
    case msg_type::type_count:
    case msg_type::invalid:
      break;
  }
  return unexpected{errc::enosys};
}

// ---- Replies ----------------------------------------------------------------------------

/// Why a reply from a server was refused (a client should drop such a connection).
enum class reply_error : std::uint8_t {
  unknown_type,     ///< not a type a server sends
  bad_error_text,   ///< XS_ERROR without a known errno name and its NUL
  bad_watch_event,  ///< XS_WATCH_EVENT not exactly "path\0token\0", or a bad path
  missing_nul,      ///< a text reply that does not end in NUL
};

constexpr std::string_view to_string(reply_error e) noexcept {
  switch (e) {
    case reply_error::unknown_type:
      return "reply type is not one a server sends";
    case reply_error::bad_error_text:
      return "XS_ERROR payload is not a known errno name with its NUL";
    case reply_error::bad_watch_event:
      return "XS_WATCH_EVENT payload is not path NUL token NUL";
    case reply_error::missing_nul:
      return "text reply is not NUL-terminated";
  }
  return "(invalid)";
}

/// A reply checked for shape. For XS_ERROR, `error` holds the server's answer; for
/// XS_WATCH_EVENT, path and token; otherwise `payload` (READ data has no NUL).
struct reply {
  header hdr;
  std::string_view payload;
  errc error = errc::einval;
  std::string_view path;
  std::string_view token;
  constexpr bool is_error() const noexcept { return hdr.kind() == msg_type::error; }
};

/// Checks a server's message: errno names, watch events, NUL rules of text replies.
constexpr result<reply, reply_error> parse_reply(const message& m) noexcept {
  reply r;
  r.hdr = m.hdr;
  r.payload = m.payload;
  const std::string_view p = m.payload;
  switch (m.hdr.kind()) {
    case msg_type::error: {
      if (p.empty() || p.back() != '\0') return unexpected{reply_error::bad_error_text};
      auto e = parse_errc(p.substr(0, p.size() - 1));
      if (!e) return unexpected{reply_error::bad_error_text};
      r.error = *e;
      return r;
    }
    case msg_type::watch_event: {
      std::string_view a[2];
      if (!split_exact(p, a) || !check_path(a[0], true)) return unexpected{reply_error::bad_watch_event};
      r.path = a[0];
      r.token = a[1];
      return r;
    }
    case msg_type::read:
      return r;  // raw bytes
    case msg_type::directory:
    case msg_type::directory_part:
    case msg_type::get_perms:
    case msg_type::control:
      // Lists of strings; an empty directory is an empty payload.
      if (!p.empty() && p.back() != '\0') return unexpected{reply_error::missing_nul};
      return r;
    case msg_type::watch:
    case msg_type::unwatch:
    case msg_type::transaction_start:
    case msg_type::transaction_end:
    case msg_type::introduce:
    case msg_type::release:
    case msg_type::get_domain_path:
    case msg_type::write:
    case msg_type::mkdir:
    case msg_type::rm:
    case msg_type::set_perms:
    case msg_type::is_domain_introduced:
    case msg_type::resume:
    case msg_type::set_target:
    case msg_type::reset_watches:
      if (p.empty() || p.back() != '\0') return unexpected{reply_error::missing_nul};
      return r;
    case msg_type::type_count:
    case msg_type::invalid:
      break;
  }
  return unexpected{reply_error::unknown_type};
}

// ---- Checks against the real header ---------------------------------------------------------

#if XENBUS_HAVE_XS_WIRE_H
// The numbers are the protocol: a mismatch means a message would be misread by Xen.
static_assert(static_cast<int>(msg_type::control) == XS_CONTROL);
static_assert(static_cast<int>(msg_type::directory) == XS_DIRECTORY);
static_assert(static_cast<int>(msg_type::read) == XS_READ);
static_assert(static_cast<int>(msg_type::get_perms) == XS_GET_PERMS);
static_assert(static_cast<int>(msg_type::watch) == XS_WATCH);
static_assert(static_cast<int>(msg_type::unwatch) == XS_UNWATCH);
static_assert(static_cast<int>(msg_type::transaction_start) == XS_TRANSACTION_START);
static_assert(static_cast<int>(msg_type::transaction_end) == XS_TRANSACTION_END);
static_assert(static_cast<int>(msg_type::introduce) == XS_INTRODUCE);
static_assert(static_cast<int>(msg_type::release) == XS_RELEASE);
static_assert(static_cast<int>(msg_type::get_domain_path) == XS_GET_DOMAIN_PATH);
static_assert(static_cast<int>(msg_type::write) == XS_WRITE);
static_assert(static_cast<int>(msg_type::mkdir) == XS_MKDIR);
static_assert(static_cast<int>(msg_type::rm) == XS_RM);
static_assert(static_cast<int>(msg_type::set_perms) == XS_SET_PERMS);
static_assert(static_cast<int>(msg_type::watch_event) == XS_WATCH_EVENT);
static_assert(static_cast<int>(msg_type::error) == XS_ERROR);
static_assert(static_cast<int>(msg_type::is_domain_introduced) == XS_IS_DOMAIN_INTRODUCED);
static_assert(static_cast<int>(msg_type::resume) == XS_RESUME);
static_assert(static_cast<int>(msg_type::set_target) == XS_SET_TARGET);
static_assert(static_cast<int>(msg_type::reset_watches) == XS_RESET_WATCHES);
static_assert(static_cast<int>(msg_type::directory_part) == XS_DIRECTORY_PART);
static_assert(static_cast<int>(msg_type::type_count) == XS_TYPE_COUNT);
static_assert(static_cast<int>(msg_type::invalid) == XS_INVALID);
static_assert(payload_max == XENSTORE_PAYLOAD_MAX);
static_assert(abs_path_max == XENSTORE_ABS_PATH_MAX);
static_assert(rel_path_max == XENSTORE_REL_PATH_MAX);
static_assert(ring_size == XENSTORE_RING_SIZE);
static_assert(sizeof(header) == sizeof(xsd_sockmsg));
static_assert(offsetof(header, type) == offsetof(xsd_sockmsg, type));
static_assert(offsetof(header, req_id) == offsetof(xsd_sockmsg, req_id));
static_assert(offsetof(header, tx_id) == offsetof(xsd_sockmsg, tx_id));
static_assert(offsetof(header, len) == offsetof(xsd_sockmsg, len));
#endif

}  // namespace xenstore
XENBUS_END_NAMESPACE
