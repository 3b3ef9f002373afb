// [hosted] In-memory xenstore data model: nodes, permissions, transactions, watches, quotas and connection output.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// Per-connection limits. The defaults for unprivileged callers are cxenstored's; the
/// privileged domain (dom0, and every socket connection) is exempt from the quotas but
/// still bounded in what it may make the store queue for it.
struct limits {
  std::size_t nodes_per_domain = 1000;   ///< nodes a domain may own (ENOSPC beyond)
  std::size_t node_size = 2048;          ///< bytes of data in one node (ENOSPC beyond)
  std::size_t watches = 128;             ///< watches per connection (E2BIG beyond)
  std::size_t transactions = 10;         ///< open transactions per connection (ENOSPC)
  std::size_t perms_per_node = 5;        ///< ACL entries after the owner (ENOSPC)
  std::size_t outstanding = 20;          ///< replies queued before the server stops reading
  std::size_t transaction_nodes = 1024;  ///< nodes one transaction may touch (ENOSPC)
  std::size_t queued_events = 1024;      ///< watch events queued unread; more are dropped
  // Bounds for privileged connections (no quotas, but memory must stay bounded).
  std::size_t privileged_queued_events = 16384;
  /// Any connection: output bytes held (store::held_bytes) at which the store stops taking
  /// requests until some are sent (named for the privileged case, where it is the only
  /// bound on replies; unprivileged connections also have `outstanding`).
  std::size_t privileged_outstanding_bytes = 256 * 1024;
  std::size_t queued_event_bytes = 4 * 1024 * 1024;  ///< any connection: event bytes queued
  std::size_t privileged_watches = 4096;             ///< watches per privileged connection (E2BIG)
  /// Any connection: bytes its watches may hold together (2 x (path + token) + 128 each);
  /// E2BIG beyond. 128 unprivileged watches of the longest paths fit.
  std::size_t watch_bytes = 2 * 1024 * 1024;
  std::size_t privileged_transactions = 256;  ///< open per privileged connection (ENOSPC)
  /// Any connection: bytes its open transactions may hold together (node copies, paths,
  /// pending events, as store::transaction_bytes counts them); ENOSPC beyond.
  std::size_t transaction_bytes = 4 * 1024 * 1024;
};

/// A node path as the typed operations take it: text that the operation checks
/// (check_path), or a request's path that parse_request already checked, with the kind it
/// found. The dispatcher passes the latter, so no path is checked twice.
class node_path {
 public:
  /// Text the operation will check: anything a std::string_view can be made from.
  template <class T>
  requires std::convertible_to<const T&, std::string_view> node_path(const T& text)
  noexcept : text_{text} {}  // implicit, as the string_view it stands for
  /// The path of a request that parse_request accepted.
  static node_path checked(const request& r) noexcept {
    node_path p{r.path};
    p.kind_ = r.kind;
    p.checked_ = true;
    return p;
  }
  std::string_view text() const noexcept { return text_; }
  /// The path's kind: the one found before, or check_path's verdict now.
  result<path_kind, errc> check(bool allow_special) const noexcept {
    if (checked_) return kind_;
    return check_path(text_, allow_special);
  }

 private:
  std::string_view text_;
  path_kind kind_ = path_kind::absolute;
  bool checked_ = false;
};

/// Handle of one connection to the store (a socket client, a ring, an in-process user).
struct conn_id {
  std::uint32_t index = 0;
  std::uint32_t generation = 0;
  friend constexpr bool operator==(conn_id, conn_id) = default;
};

/// Kinds of request a store counts in its statistics.
struct store_stats {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t commits = 0;
  std::uint64_t conflicts = 0;       ///< TRANSACTION_END answered EAGAIN
  std::uint64_t events = 0;          ///< watch events queued
  std::uint64_t dropped_events = 0;  ///< watch events dropped at a connection's bound
};

namespace detail {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct node {
  std::string data;
  std::vector<perm> perms{perm{access::none, 0}};  ///< perms[0]: owner and default access
  std::string children;                            ///< names, each NUL-terminated, in creation order
  std::uint64_t gen = 0;                           ///< store generation of the last change
};

using node_map = std::unordered_map<std::string, node, string_hash, std::equal_to<>>;

inline std::string_view parent_of(std::string_view path) noexcept {
  const auto slash = path.rfind('/');
  return slash == 0 ? std::string_view{"/"} : path.substr(0, slash);
}
inline std::string_view basename_of(std::string_view path) noexcept { return path.substr(path.rfind('/') + 1); }
inline std::string join(std::string_view dir, std::string_view name) {
  std::string p;
  p.reserve(dir.size() + 1 + name.size());
  p += dir;
  if (dir != "/") p += '/';
  p += name;
  return p;
}
/// True when `path` is `dir` or below it.
inline bool is_within(std::string_view path, std::string_view dir) noexcept {
  if (dir == "/") return path.size() > 0 && path[0] == '/';
  return path.size() >= dir.size() && path.substr(0, dir.size()) == dir &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}
inline void remove_child(std::string& children, std::string_view name) {
  std::size_t at = 0;
  while (at < children.size()) {
    const auto end = children.find('\0', at);
    if (std::string_view{children}.substr(at, end - at) == name) {
      children.erase(at, end - at + 1);
      return;
    }
    at = end + 1;
  }
}
/// A literal's text and its terminating NUL, the length taken from the array itself: the
/// way every fixed reply is built (never a hand-counted length).
template <std::size_t N>
constexpr std::string_view with_nul(const char (&text)[N]) noexcept {
  return std::string_view{text, N};
}
inline void append_u64(std::string& out, std::uint64_t v) { out += decimal{v}.view(); }

/// The output of one connection: wire messages queued in fixed-size chunks, each chunk
/// freed as soon as its last byte is sent (a message may span chunks). Bound: held()
/// counts every chunk allocated, which is at most the unsent bytes plus two chunks (the
/// sent head of the first one, the free tail of the last one).
class out_queue {
 public:
  /// Bytes one chunk occupies (its header included): what held() counts per chunk.
  static constexpr std::size_t chunk_bytes = 4096;
  /// Bytes of messages one chunk carries.
  static constexpr std::size_t chunk_room = chunk_bytes - sizeof(void*) - sizeof(std::size_t);
  /// Most held() can be while `pending` bytes are unsent: their chunks, the sent head of
  /// the first and the free tail of the last.
  static constexpr std::size_t held_bound(std::size_t pending) noexcept {
    return (pending + chunk_room - 1) / chunk_room * chunk_bytes + 2 * chunk_bytes;
  }

  out_queue() = default;
  out_queue(const out_queue&) = delete;
  out_queue& operator=(const out_queue&) = delete;
  ~out_queue() { clear(); }

  /// Appends bytes at the end (allocating chunks as needed).
  void append(std::string_view bytes) {
    while (!bytes.empty()) {
      if (!tail_ || tail_->used == chunk::room) {
        auto fresh = std::make_unique<chunk>();
        chunk* raw = fresh.get();
        if (tail_)
          tail_->next = std::move(fresh);
        else
          head_ = std::move(fresh);
        tail_ = raw;
        ++chunks_;
      }
      const std::size_t n = bytes.size() < chunk::room - tail_->used ? bytes.size() : chunk::room - tail_->used;
      std::memcpy(tail_->bytes + tail_->used, bytes.data(), n);
      tail_->used += n;
      unsent_ += n;
      bytes.remove_prefix(n);
    }
  }

  /// The first contiguous run of unsent bytes (empty when nothing is queued).
  std::string_view front() const noexcept {
    return head_ ? std::string_view{head_->bytes + sent_, head_->used - sent_} : std::string_view{};
  }
  /// Fills `out` with successive runs of unsent bytes (for a gathering write); returns how many.
  std::size_t fronts(std::span<std::string_view> out) const noexcept {
    std::size_t k = 0;
    std::size_t skip = sent_;
    for (const chunk* c = head_.get(); c && k < out.size(); c = c->next.get(), skip = 0)
      if (c->used > skip) out[k++] = std::string_view{c->bytes + skip, c->used - skip};
    return k;
  }

  /// Marks `n` bytes from the front sent (at most unsent()) and frees every chunk sent in
  /// full. Calls done(header) for each message whose last byte this sends.
  template <class Done>
  void consume(std::size_t n, Done&& done) {
    if (n > unsent_) n = unsent_;
    while (n > 0) {
      if (msg_left_ == 0) {  // at the start of a message: learn its type and length
        char h[header_size];
        copy_front(h, header_size);
        msg_ = decode_header(std::span<const char, header_size>{h, header_size});
        msg_left_ = header_size + msg_.len;
      }
      const std::size_t in_head = head_->used - sent_;
      std::size_t take = n < in_head ? n : in_head;
      if (take > msg_left_) take = msg_left_;
      sent_ += take;
      unsent_ -= take;
      msg_left_ -= take;
      n -= take;
      if (msg_left_ == 0) done(msg_);
      if (sent_ == head_->used) pop();  // sent in full (a partly filled chunk is the last)
    }
  }

  std::size_t unsent() const noexcept { return unsent_; }
  /// Bytes allocated for this queue (every chunk, sent parts included).
  std::size_t held() const noexcept { return chunks_ * chunk_bytes; }
  bool empty() const noexcept { return unsent_ == 0; }

  void clear() noexcept {
    while (head_) pop();  // iteratively: no deep recursion through unique_ptr
  }

 private:
  struct chunk {
    static constexpr std::size_t room = chunk_room;
    std::unique_ptr<chunk> next;
    std::size_t used = 0;
    char bytes[room];
  };
  static_assert(sizeof(chunk) == chunk_bytes);

  void pop() noexcept {
    std::unique_ptr<chunk> rest = std::move(head_->next);
    head_ = std::move(rest);
    if (!head_) tail_ = nullptr;
    sent_ = 0;
    --chunks_;
  }
  /// Copies the next `n` unsent bytes (n <= unsent) into `to`, across chunks.
  void copy_front(char* to, std::size_t n) const noexcept {
    std::size_t skip = sent_;
    for (const chunk* c = head_.get(); c && n > 0; c = c->next.get(), skip = 0) {
      std::size_t k = c->used - skip;
      if (k > n) k = n;
      std::memcpy(to, c->bytes + skip, k);
      to += k;
      n -= k;
    }
  }

  std::unique_ptr<chunk> head_;
  chunk* tail_ = nullptr;
  std::size_t sent_ = 0;  ///< bytes of the head chunk already sent
  std::size_t unsent_ = 0;
  std::size_t chunks_ = 0;
  header msg_{};              ///< the message being sent
  std::size_t msg_left_ = 0;  ///< its bytes not yet sent (0: at a message boundary)
};

}  // namespace detail

/// Domain ids from here up are reserved (DOMID_FIRST_RESERVED): never a guest.
inline constexpr std::uint32_t domid_first_reserved = 0x7ff0;
/// DOMID_SELF: "the caller's own domain" where a request takes a domid.
inline constexpr std::uint32_t domid_self = 0x7ff0;

/// What becomes of the nodes a domain owned once it is gone.
enum class orphan_policy : std::uint8_t {
  to_dom0,  ///< dom0 owns them from then on (C xenstored's --keep-orphans)
  remove,   ///< they are removed with their subtrees (C xenstored's default since Xen 4.17)
};

/// What store::domain_gone() did.
struct orphan_report {
  std::size_t handed = 0;       ///< nodes handed to dom0
  std::size_t removed = 0;      ///< nodes removed (orphan_policy::remove, subtrees included)
  std::size_t acl_entries = 0;  ///< permission entries naming the domain, dropped
};

/// Carries out the domain requests for a store served on a hypervisor: maps a guest's ring
/// and binds its event channel at XS_INTRODUCE, closes its connection at XS_RELEASE,
/// clears its shutdown at XS_RESUME, and reports back through store::domain_introduced()
/// and store::domain_gone(). The store has checked the caller's privilege and the domid.
class domain_hooks {
 public:
  virtual result<void, errc> introduce(std::uint32_t domid, std::uint64_t mfn, std::uint32_t port) = 0;
  virtual result<void, errc> release(std::uint32_t domid) = 0;
  virtual result<void, errc> resume(std::uint32_t domid) = 0;

 protected:
  domain_hooks() = default;
  domain_hooks(const domain_hooks&) = default;
  domain_hooks& operator=(const domain_hooks&) = default;
  ~domain_hooks() = default;
};

/// The store. Single-threaded: one event loop (or one test) drives it. Requests come in
/// as wire messages (handle) or typed calls; replies and watch events are queued as wire
/// bytes on each connection, to be taken with output()/consume().
class store {
 public:
  explicit store(limits l = {}) : limits_{l} {
    auto& root = nodes_["/"];
    root.gen = ++gen_;
    ++owned_[root.perms[0].domid];
    for (auto p : {"/local", "/local/domain", "/tool"}) create_global(p);
    introduced_.insert(0);
  }
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  const limits& get_limits() const noexcept { return limits_; }
  const store_stats& stats() const noexcept { return stats_; }

  // ---- Connections ------------------------------------------------------------------

  /// A new connection for domain `domid`. Privileged connections (dom0's socket and
  /// device) bypass permissions and quotas.
  conn_id connect(std::uint32_t domid, bool privileged) {
    std::uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      i = static_cast<std::uint32_t>(conns_.size());
      conns_.emplace_back();
    }
    auto& c = conns_[i];
    c = std::make_unique<connection>();
    c->domid = domid;
    c->privileged = privileged;
    c->generation = ++conn_gen_;
    c->index = i;
    c->prefix = "/local/domain/";
    detail::append_u64(c->prefix, domid);
    return conn_id{i, c->generation};
  }

  /// Ends a connection: its transactions are discarded, its watches removed.
  void disconnect(conn_id id) {
    auto* c = lookup(id);
    if (!c) return;
    drop_watches(*c, id.index);
    conns_[id.index].reset();
    free_.push_back(id.index);
  }

  bool connected(conn_id id) const noexcept { return lookup(id) != nullptr; }

  /// The first contiguous run of wire bytes queued for the connection (replies and watch
  /// events); empty when nothing is queued. Take it with consume(), then ask again: the
  /// queue is kept in chunks, so one call may not show everything queued.
  std::string_view output(conn_id id) const noexcept {
    const auto* c = lookup(id);
    return c ? c->out.front() : std::string_view{};
  }
  /// Fills `out` with successive runs of queued bytes (for a gathering write such as
  /// sendmsg); returns how many it filled.
  std::size_t output_spans(conn_id id, std::span<std::string_view> out) const noexcept {
    const auto* c = lookup(id);
    return c ? c->out.fronts(out) : 0;
  }
  /// The peer took `n` bytes from the front of the queue (at most what is queued). Chunks
  /// sent in full are freed, and each reply or event stops counting against the bounds
  /// once its last byte is sent.
  void consume(conn_id id, std::size_t n) noexcept {
    auto* c = lookup(id);
    if (!c) return;
    c->out.consume(n, [c](const header& h) noexcept {
      if (h.kind() == msg_type::watch_event) {
        --c->queued_events;
        c->queued_event_bytes -= header_size + h.len;
      } else {
        --c->queued_replies;
      }
    });
  }
  /// Bytes of memory the connection's output holds (queued and not yet freed), the
  /// figure flow control counts.
  std::size_t held_bytes(conn_id id) const noexcept {
    const auto* c = lookup(id);
    return c ? c->out.held() : 0;
  }
  /// Most output one connection can hold (held_bytes()): replies reach at most
  /// privileged_outstanding_bytes plus the one more a last request adds (header and
  /// payload_max), events queued_event_bytes; out_queue::held_bound() adds the chunking.
  static constexpr std::size_t output_bound(const limits& l) noexcept {
    return detail::out_queue::held_bound(l.privileged_outstanding_bytes + header_size + payload_max +
                                         l.queued_event_bytes);
  }

  /// False while the connection holds `privileged_outstanding_bytes` of output (replies and
  /// events, sent or not, until freed) or, unprivileged, has `outstanding` replies unsent:
  /// the transport should stop reading its requests until it drains (cxenstored's
  /// outstanding-requests quota, as flow control). Reading one more request adds at most
  /// one reply: see output_bound().
  bool accepting(conn_id id) const noexcept {
    const auto* c = lookup(id);
    if (!c) return false;
    if (c->out.held() >= limits_.privileged_outstanding_bytes) return false;
    return c->privileged || c->queued_replies < limits_.outstanding;
  }
  /// Moves into `out` the connections whose output went from empty to non-empty since the
  /// last call (watch events land on connections other than the one that asked).
  void take_writable(std::vector<conn_id>& out) {
    for (auto i : writable_) {
      auto* c = conns_[i].get();
      if (c && c->listed) {
        c->listed = false;
        out.push_back(conn_id{i, c->generation});
      }
    }
    writable_.clear();
  }

  /// Watch events dropped for this connection because it did not read them.
  std::uint64_t dropped_events(conn_id id) const noexcept {
    const auto* c = lookup(id);
    return c ? c->dropped_events : 0;
  }

  // ---- Wire entry point ---------------------------------------------------------------

  /// Validates and executes one request, queueing its reply (and any watch events): the
  /// wire dispatcher of hosted/xenstore/dispatch.hpp over this data model.
  void handle(conn_id id, const message& m);

  // ---- Typed operations (what the wire requests do) -----------------------------------

  result<std::string, errc> read(conn_id id, std::uint32_t tx, const node_path& path) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    auto& o = *ctx;
    const detail::node* n = get(o, o.path);
    if (!n) return unexpected{missing_error(o, o.path)};
    if (!can(*o.conn, *n, access::read)) return unexpected{errc::eacces};
    return n->data;
  }

  result<void, errc> write(conn_id id, std::uint32_t tx, const node_path& path, std::string_view data) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    return do_write(*ctx, data, false);
  }

  result<void, errc> mkdir(conn_id id, std::uint32_t tx, const node_path& path) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    return do_write(*ctx, {}, true);
  }

  result<void, errc> rm(conn_id id, std::uint32_t tx, const node_path& path) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    return do_rm(*ctx);
  }

  /// Child names, each followed by NUL, in creation order (the XS_DIRECTORY payload).
  result<std::string, errc> directory(conn_id id, std::uint32_t tx, const node_path& path) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    auto& o = *ctx;
    const detail::node* n = get(o, o.path);
    if (!n) return unexpected{missing_error(o, o.path)};
    if (!can(*o.conn, *n, access::read)) return unexpected{errc::eacces};
    return n->children;
  }

  /// The XS_DIRECTORY_PART payload: generation, NUL, the children from byte `offset` that
  /// fit, and one more NUL when the list ends there.
  result<std::string, errc> directory_part(conn_id id, std::uint32_t tx, const node_path& path, std::uint64_t offset) {
    auto ctx = begin_op(id, tx, path, false);
    if (!ctx) return unexpected{ctx.error()};
    auto& o = *ctx;
    const detail::node* n = get(o, o.path);
    if (!n) return unexpected{missing_error(o, o.path)};
    if (!can(*o.conn, *n, access::read)) return unexpected{errc::eacces};
    std::string out;
    detail::append_u64(out, n->gen);
    out += '\0';
    const std::string_view kids = n->children;
    if (offset >= kids.size()) {
      out += '\0';
      return out;
    }
    // Whole names only, never splitting one, within the payload limit.
    const std::size_t room = payload_max - out.size() - 1;
    std::size_t at = static_cast<std::size_t>(offset);
    // An offset inside a name starts at the next whole name.
    if (at > 0 && kids[at - 1] != '\0') {
      const auto nul = kids.find('\0', at);
      at = nul + 1;
    }
    std::size_t end = at;
    while (end < kids.size()) {
      const auto nul = kids.find('\0', end);
      if (nul + 1 - at > room) break;
      end = nul + 1;
    }
    out.append(kids.substr(at, end - at));
    if (end == kids.size()) out += '\0';
    return out;
  }

  /// Permission list of a node, e.g. {{none, 0}, {read, 5}}: owner first.
  result<std::vector<perm>, errc> get_perms(conn_id id, std::uint32_t tx, const node_path& path) {
    auto ctx = begin_op(id, tx, path, true);
    if (!ctx) return unexpected{ctx.error()};
    auto& o = *ctx;
    if (o.special) return special_perms(o.path);
    const detail::node* n = get(o, o.path);
    if (!n) return unexpected{missing_error(o, o.path)};
    if (!can(*o.conn, *n, access::read)) return unexpected{errc::eacces};
    return n->perms;
  }

  result<void, errc> set_perms(conn_id id, std::uint32_t tx, const node_path& path, const std::vector<perm>& perms) {
    auto ctx = begin_op(id, tx, path, true);
    if (!ctx) return unexpected{ctx.error()};
    auto& o = *ctx;
    if (perms.empty()) return unexpected{errc::einval};
    if (!o.conn->privileged && perms.size() - 1 > limits_.perms_per_node) return unexpected{errc::enospc};
    if (o.special) {
      if (!o.conn->privileged) return unexpected{errc::eacces};
      special_perms_[std::string{o.path}] = perms;
      return {};
    }
    const detail::node* cur = get(o, o.path);
    if (!cur) return unexpected{missing_error(o, o.path)};
    if (!is_owner(*o.conn, *cur)) return unexpected{errc::eacces};
    // Unprivileged owners may share, but not give away, what they own.
    if (!o.conn->privileged && perms[0].domid != cur->perms[0].domid) return unexpected{errc::eperm};
    if (auto q = check_owner_quota(o, perms[0].domid, cur->perms[0].domid, 1); !q) return unexpected{q.error()};
    detail::node copy = *cur;
    copy.perms = perms;
    if (auto r = put(o, o.path, std::move(copy)); !r) return r;
    fire(o, o.path, false, perms);
    return {};
  }

  result<std::uint32_t, errc> transaction_start(conn_id id) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (c->txs.size() >= (c->privileged ? limits_.privileged_transactions : limits_.transactions))
      return unexpected{errc::enospc};
    do {
      ++next_tx_;
    } while (next_tx_ == 0 || c->txs.count(next_tx_));
    auto t = std::make_unique<transaction>();
    t->id = next_tx_;
    c->txs.emplace(next_tx_, std::move(t));
    return next_tx_;
  }

  /// Commits (or aborts) a transaction; EAGAIN when a node it used changed meanwhile.
  result<void, errc> transaction_end(conn_id id, std::uint32_t tx, bool commit) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    auto it = c->txs.find(tx);
    if (tx == 0 || it == c->txs.end()) return unexpected{errc::enoent};
    std::unique_ptr<transaction> t = std::move(it->second);
    c->txs.erase(it);
    c->tx_bytes -= t->bytes;
    if (!commit) return {};
    if (t->failed) return unexpected{errc::enospc};
    for (auto& [path, e] : t->nodes) {
      auto g = nodes_.find(path);
      const std::uint64_t now = g == nodes_.end() ? 0 : g->second.gen;
      if (now != e.seen_gen) {
        ++stats_.conflicts;
        return unexpected{errc::eagain};
      }
    }
    // Each transaction checked the node quota against the committed count plus its own
    // changes; transactions open side by side may each have fit. Check again against what
    // is committed now, as C xenstored does when it ends a transaction (ENOSPC, nothing
    // committed): a domain only gaining nodes here must stay within its quota.
    if (!c->privileged)
      for (const auto& [dom, delta] : t->owned_delta) {
        if (delta <= 0) continue;
        const auto o = owned_.find(dom);
        const std::ptrdiff_t have = o == owned_.end() ? 0 : o->second;
        if (have + delta > static_cast<std::ptrdiff_t>(limits_.nodes_per_domain)) return unexpected{errc::enospc};
      }
    for (auto& [path, e] : t->nodes) {
      if (!e.modified) continue;
      if (e.value)
        set_global(path, std::move(*e.value));
      else
        erase_global(path);
    }
    ++stats_.commits;
    op o{id, c, nullptr, {}, false};
    for (auto& ev : t->events) fire_now(o, ev.path, ev.exact, ev.perms);
    return {};
  }

  result<void, errc> watch(conn_id id, const node_path& path, std::string_view token) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    auto kind = path.check(true);
    if (!kind) return unexpected{kind.error()};
    std::string canon = canonical(*c, path.text(), *kind);
    for (auto& w : c->watches)
      if (w.path == canon && w.token == token) return unexpected{errc::eexist};
    if (c->watches.size() >= (c->privileged ? limits_.privileged_watches : limits_.watches))
      return unexpected{errc::e2big};
    if (c->watch_bytes + watch_cost(canon, token) > limits_.watch_bytes) return unexpected{errc::e2big};
    c->watch_bytes += watch_cost(canon, token);
    c->watches.push_back(conn_watch{canon, std::string{token}, *kind == path_kind::relative});
    watch_index_[canon].push_back(watch_ref{id.index, c->generation, std::string{token}, *kind == path_kind::relative});
    return {};
  }

  result<void, errc> unwatch(conn_id id, const node_path& path, std::string_view token) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    auto kind = path.check(true);
    if (!kind) return unexpected{kind.error()};
    std::string canon = canonical(*c, path.text(), *kind);
    for (std::size_t i = 0; i < c->watches.size(); ++i) {
      if (c->watches[i].path == canon && c->watches[i].token == token) {
        c->watches.erase(c->watches.begin() + static_cast<std::ptrdiff_t>(i));
        unindex_watch(canon, id.index, c->generation, token);
        c->watch_bytes -= watch_cost(canon, token);
        return {};
      }
    }
    return unexpected{errc::enoent};
  }

  /// XS_RESET_WATCHES: drops every watch and transaction of the connection.
  result<void, errc> reset_watches(conn_id id) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    drop_watches(*c, id.index);
    c->txs.clear();
    c->tx_bytes = 0;
    return {};
  }

  // ---- Domains ----------------------------------------------------------------------

  /// XS_INTRODUCE: `port` is the guest's event channel, `mfn` its ring frame. With
  /// domain hooks (a server on a hypervisor) the hooks map the ring and bind the port, then
  /// call domain_introduced(); without, the domain is only recorded (a server with no
  /// hypervisor: tests, toolstack development). Privileged callers only.
  result<void, errc> introduce(conn_id id, std::uint32_t domid, std::uint64_t mfn = 0, std::uint32_t port = 1) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (!c->privileged) return unexpected{errc::eacces};
    if (domid == 0 || domid >= domid_first_reserved || port == 0) return unexpected{errc::einval};
    if (hooks_) return hooks_->introduce(domid, mfn, port);
    domain_introduced(domid);
    return {};
  }

  /// XS_RELEASE: the toolstack is done with the domain. Its connection ends (the hooks
  /// close it), the nodes it owned are handed on (see set_orphans) and @releaseDomain fires.
  result<void, errc> release(conn_id id, std::uint32_t domid) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (!c->privileged) return unexpected{errc::eacces};
    if (domid == 0) return unexpected{errc::einval};
    if (!introduced_.count(domid)) return unexpected{errc::enoent};
    if (hooks_) return hooks_->release(domid);
    domain_gone(domid);
    fire_release_domain();
    return {};
  }

  /// XS_RESUME: the domain runs again after a shutdown (suspend); its next shutdown fires
  /// @releaseDomain again.
  result<void, errc> resume(conn_id id, std::uint32_t domid) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (!c->privileged) return unexpected{errc::eacces};
    if (domid == 0) return unexpected{errc::einval};
    if (!introduced_.count(domid)) return unexpected{errc::enoent};
    if (hooks_) return hooks_->resume(domid);
    return {};
  }

  /// XS_SET_TARGET: `domid` (a device-model stub domain) may act as its `target`'s owner.
  result<void, errc> set_target(conn_id id, std::uint32_t domid, std::uint32_t target) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (!c->privileged) return unexpected{errc::eacces};
    if (!introduced_.count(domid) || !introduced_.count(target)) return unexpected{errc::enoent};
    targets_[domid] = target;
    return {};
  }

  /// XS_IS_DOMAIN_INTRODUCED (privileged callers only, as in C xenstored). DOMID_SELF
  /// is always introduced.
  result<bool, errc> is_domain_introduced(conn_id id, std::uint32_t domid) const {
    const auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    if (!c->privileged) return unexpected{errc::eacces};
    return domid == domid_self || introduced_.count(domid) != 0;
  }
  bool is_domain_introduced(std::uint32_t domid) const { return introduced_.count(domid) != 0; }

  /// Who carries out INTRODUCE, RELEASE and RESUME (nullptr: nobody, the store only records
  /// them). The hooks must outlive the store or be removed first.
  void set_domain_hooks(domain_hooks* h) noexcept { hooks_ = h; }

  /// What happens to the nodes a departed domain owned (default: handed to dom0).
  void set_orphans(orphan_policy p) noexcept { orphans_ = p; }
  orphan_policy orphans() const noexcept { return orphans_; }

  /// For the hooks: the domain is served now. Records it and, the first time, fires
  /// @introduceDomain. Returns whether it was new.
  bool domain_introduced(std::uint32_t domid) {
    if (!introduced_.insert(domid).second) return false;
    fire_special(introduce_domain_path);
    return true;
  }

  /// For the hooks, once the domain's connection is gone (released, or found dying or
  /// dead): forgets it. Nodes it owned go to dom0 or are removed (set_orphans), its node
  /// quota count drops to zero, and every permission entry naming it is dropped, so that a
  /// later domain with the same id inherits no access (XSA-419). Fires no @releaseDomain:
  /// the caller does, once per batch (fire_release_domain()). Work: one pass over all nodes.
  orphan_report domain_gone(std::uint32_t domid) {
    orphan_report rep;
    introduced_.erase(domid);
    targets_.erase(domid);
    for (auto it = targets_.begin(); it != targets_.end();)
      it = it->second == domid ? targets_.erase(it) : std::next(it);
    std::vector<std::string> owned_paths;
    std::vector<std::pair<std::string, detail::node>> rewrites;
    for (const auto& [path, n] : nodes_) {
      const bool owner = n.perms[0].domid == domid && path != "/";
      bool named = false;
      for (std::size_t i = 1; i < n.perms.size(); ++i) named = named || n.perms[i].domid == domid;
      if (owner && orphans_ == orphan_policy::remove) {
        owned_paths.push_back(path);
        continue;
      }
      if (!owner && !named) continue;
      detail::node copy = n;
      if (owner) {
        copy.perms[0].domid = 0;
        ++rep.handed;
      }
      rep.acl_entries += drop_acl_entries(copy.perms, domid);
      rewrites.emplace_back(path, std::move(copy));
    }
    for (auto& [path, n] : rewrites) set_global(path, std::move(n));
    // Removal, parents first: a subtree removed whole takes its owned descendants with it.
    std::sort(owned_paths.begin(), owned_paths.end());
    for (const auto& p : owned_paths) rep.removed += remove_global_subtree(p);
    for (auto& [path, perms] : special_perms_) {
      if (perms[0].domid == domid) perms[0].domid = 0;
      rep.acl_entries += drop_acl_entries(perms, domid);
    }
    if (auto o = owned_.find(domid); o != owned_.end() && o->second == 0) owned_.erase(o);
    return rep;
  }

  /// Fires @releaseDomain: a domain went away or shut down (watchers then look at every
  /// domain's state, as the event names none).
  void fire_release_domain() { fire_special(release_domain_path); }

  /// Nodes `domid` owns now (the node quota's count).
  std::size_t owned_nodes(std::uint32_t domid) const noexcept {
    const auto it = owned_.find(domid);
    return it == owned_.end() || it->second < 0 ? 0 : static_cast<std::size_t>(it->second);
  }

  // ---- Inspection (for tests and embedding) -------------------------------------------

  std::size_t node_count() const noexcept { return nodes_.size(); }

  /// Walks the whole tree: every node's parent lists it exactly once, every listed child
  /// exists, every node has an owner entry, ownership counts add up. For tests and fuzzing.
  bool consistent() const {
    std::unordered_map<std::uint32_t, std::ptrdiff_t> owned;
    for (const auto& [path, n] : nodes_) {
      if (n.perms.empty()) return false;
      ++owned[n.perms[0].domid];
      std::size_t listed_children = 0;
      for (auto name : string_list{n.children}) {
        if (name.empty() || nodes_.find(detail::join(path, name)) == nodes_.end()) return false;
        ++listed_children;
      }
      if (count_strings(n.children) != listed_children || (!n.children.empty() && n.children.back() != '\0'))
        return false;
      if (path == "/") continue;
      auto parent = nodes_.find(detail::parent_of(path));
      if (parent == nodes_.end()) return false;
      std::size_t seen = 0;
      for (auto name : string_list{parent->second.children}) seen += name == detail::basename_of(path);
      if (seen != 1) return false;
    }
    for (const auto& [dom, count] : owned_)
      if (count != (owned.count(dom) ? owned[dom] : 0)) return false;
    for (const auto& [dom, count] : owned)
      if (auto it = owned_.find(dom); it == owned_.end() || it->second != count) return false;
    return true;
  }
  bool exists(std::string_view abs_path) const { return nodes_.find(abs_path) != nodes_.end(); }
  /// The permissions of a node (owner first), or nullopt when it does not exist.
  std::optional<std::vector<perm>> perms_of(std::string_view abs_path) const {
    auto it = nodes_.find(abs_path);
    if (it == nodes_.end()) return std::nullopt;
    return it->second.perms;
  }

 private:
  friend class dispatcher;  // the wire side: replies go into a connection's output

  struct conn_watch {
    std::string path;  ///< canonical (absolute or special)
    std::string token;
    bool relative;  ///< registered relative: events carry relative paths
  };
  struct watch_ref {
    std::uint32_t index;
    std::uint32_t generation;
    std::string token;
    bool relative;
  };
  struct tx_entry {
    std::optional<detail::node> value;  ///< the node as this transaction sees it
    std::uint64_t seen_gen = 0;         ///< global generation when first touched (0: absent)
    bool modified = false;
  };
  struct pending_event {
    std::string path;
    bool exact;
    std::vector<perm> perms;
  };
  struct transaction {
    std::uint32_t id = 0;
    std::unordered_map<std::string, tx_entry, detail::string_hash, std::equal_to<>> nodes;
    std::vector<pending_event> events;
    std::unordered_map<std::uint32_t, std::ptrdiff_t> owned_delta;
    std::size_t bytes = 0;  ///< what this transaction holds, as tx_cost() counts it
    bool failed = false;    ///< an operation stopped halfway: committing answers ENOSPC
  };
  struct connection {
    std::uint32_t domid = 0;
    bool privileged = false;
    std::uint32_t generation = 0;
    std::string prefix;                  ///< /local/domain/<domid>
    detail::out_queue out;               ///< replies and events, freed as they are sent
    std::size_t queued_replies = 0;      ///< replies in `out` not sent in full
    std::size_t queued_events = 0;       ///< events in `out` not sent in full
    std::size_t queued_event_bytes = 0;  ///< their wire bytes
    std::uint64_t dropped_events = 0;
    std::uint32_t index = 0;
    bool listed = false;  ///< in writable_
    std::vector<conn_watch> watches;
    std::unordered_map<std::uint32_t, std::unique_ptr<transaction>> txs;
    std::size_t tx_bytes = 0;     ///< sum of txs' bytes (limit: transaction_bytes)
    std::size_t watch_bytes = 0;  ///< sum of watch_cost() over watches (limit: watch_bytes)
  };
  /// One operation in progress: who, in which transaction, on which canonical path.
  struct op {
    conn_id id;
    connection* conn;
    transaction* tx;
    std::string path;
    bool special;
    bool overflow = false;  ///< the transaction hit its touched-nodes quota
  };

  connection* lookup(conn_id id) const noexcept {
    if (id.index >= conns_.size()) return nullptr;
    auto* c = conns_[id.index].get();
    return c && c->generation == id.generation ? c : nullptr;
  }

  std::string canonical(const connection& c, std::string_view path, path_kind k) const {
    if (k != path_kind::relative) return std::string{path};
    std::string p;
    p.reserve(c.prefix.size() + 1 + path.size());
    p += c.prefix;
    p += '/';
    p += path;
    return p;
  }

  result<op, errc> begin_op(conn_id id, std::uint32_t tx, const node_path& path, bool allow_special) {
    auto* c = lookup(id);
    if (!c) return unexpected{errc::einval};
    auto kind = path.check(allow_special);
    if (!kind) return unexpected{kind.error()};
    transaction* t = nullptr;
    if (tx != 0) {
      auto it = c->txs.find(tx);
      if (it == c->txs.end()) return unexpected{errc::enoent};
      t = it->second.get();
    }
    return op{id, c, t, canonical(*c, path.text(), *kind), *kind == path_kind::special};
  }

  // ---- Node access through an optional transaction --------------------------------------

  const detail::node* get(op& o, std::string_view path) {
    if (!o.tx) {
      auto it = nodes_.find(path);
      return it == nodes_.end() ? nullptr : &it->second;
    }
    auto* e = touch(o, path);
    if (!e) o.overflow = true;
    return e && e->value ? &*e->value : nullptr;
  }

  /// What one node copy costs a transaction: its bytes plus a fixed allowance for the map
  /// entry and a pending event.
  static std::size_t tx_cost(std::string_view path, const std::optional<detail::node>& n) noexcept {
    constexpr std::size_t overhead = 256;
    std::size_t b = overhead + 2 * path.size();  // the entry's key, and an event's path
    if (n) b += n->data.size() + n->children.size() + n->perms.size() * sizeof(perm);
    return b;
  }
  /// Charges (or, negative, refunds) a transaction; false when it would pass transaction_bytes.
  bool charge(op& o, std::size_t add, std::size_t refund) {
    if (add > refund && o.conn->tx_bytes + (add - refund) > limits_.transaction_bytes) return false;
    o.conn->tx_bytes = o.conn->tx_bytes + add - refund;
    o.tx->bytes = o.tx->bytes + add - refund;
    return true;
  }

  /// The transaction's copy of a node, made on first access (records what it saw).
  tx_entry* touch(op& o, std::string_view path) {
    auto& m = o.tx->nodes;
    auto it = m.find(path);
    if (it != m.end()) return &it->second;
    if (!o.conn->privileged && m.size() >= limits_.transaction_nodes) return nullptr;
    tx_entry e;
    if (auto g = nodes_.find(path); g != nodes_.end()) {
      e.value = g->second;
      e.seen_gen = g->second.gen;
    }
    if (!charge(o, tx_cost(path, e.value), 0)) return nullptr;
    return &m.emplace(std::string{path}, std::move(e)).first->second;
  }

  /// Stores (or, with nullopt, removes) a node, in the transaction or globally.
  result<void, errc> put(op& o, std::string_view path, std::optional<detail::node> n) {
    if (!o.tx) {
      if (n)
        set_global(path, std::move(*n));
      else
        erase_global(path);
      return {};
    }
    auto* e = touch(o, path);
    if (!e) return unexpected{errc::enospc};
    const std::optional<std::uint32_t> old_owner =
        e->value ? std::optional<std::uint32_t>{e->value->perms[0].domid} : std::nullopt;
    if (!charge(o, tx_cost(path, n), tx_cost(path, e->value))) {
      // Possibly midway through an operation that puts several nodes: the transaction
      // may be left half-changed, so it can no longer commit (C xenstored's trans->fail).
      o.tx->failed = true;
      return unexpected{errc::enospc};
    }
    if (old_owner) --o.tx->owned_delta[*old_owner];
    if (n) {
      ++o.tx->owned_delta[n->perms[0].domid];
      n->gen = ++gen_;
    }
    e->value = std::move(n);
    e->modified = true;
    return {};
  }

  void set_global(std::string_view path, detail::node n) {
    n.gen = ++gen_;
    auto it = nodes_.find(path);
    if (it != nodes_.end()) {
      --owned_[it->second.perms[0].domid];
      it->second = std::move(n);
      ++owned_[it->second.perms[0].domid];
    } else {
      ++owned_[n.perms[0].domid];
      nodes_.emplace(std::string{path}, std::move(n));
    }
  }
  void erase_global(std::string_view path) {
    auto it = nodes_.find(path);
    if (it == nodes_.end()) return;
    --owned_[it->second.perms[0].domid];
    nodes_.erase(it);
  }
  /// Drops every entry after the owner's that names `domid`; returns how many.
  static std::size_t drop_acl_entries(std::vector<perm>& perms, std::uint32_t domid) {
    const auto before = perms.size();
    perms.erase(std::remove_if(perms.begin() + 1, perms.end(), [domid](const perm& p) { return p.domid == domid; }),
                perms.end());
    return before - perms.size();
  }
  /// Removes `path` and everything below it from the committed tree, no questions asked
  /// (the store's own cleanup), firing watches as XS_RM does. Returns the nodes removed.
  std::size_t remove_global_subtree(const std::string& path) {
    auto top = nodes_.find(path);
    if (top == nodes_.end() || path == "/") return 0;
    std::vector<std::pair<std::string, std::vector<perm>>> doomed;
    doomed.emplace_back(path, top->second.perms);
    for (std::size_t i = 0; i < doomed.size(); ++i) {
      auto it = nodes_.find(doomed[i].first);
      if (it == nodes_.end()) continue;
      doomed[i].second = it->second.perms;
      for (auto name : string_list{it->second.children})
        doomed.emplace_back(detail::join(doomed[i].first, name), std::vector<perm>{});
    }
    auto parent = nodes_.find(detail::parent_of(path));
    if (parent != nodes_.end()) {
      detail::node copy = parent->second;
      detail::remove_child(copy.children, detail::basename_of(path));
      set_global(parent->first, std::move(copy));
    }
    for (const auto& d : doomed) erase_global(d.first);
    op o{conn_id{}, nullptr, nullptr, {}, false};
    for (std::size_t i = 0; i < doomed.size(); ++i) fire_now(o, doomed[i].first, i != 0, doomed[i].second);
    return doomed.size();
  }

  void create_global(std::string_view path) {
    auto parent = nodes_.find(detail::parent_of(path));
    detail::node n;
    n.perms = parent->second.perms;
    parent->second.children.append(detail::basename_of(path));
    parent->second.children += '\0';
    parent->second.gen = ++gen_;
    set_global(path, std::move(n));
  }

  // ---- Permissions ------------------------------------------------------------------

  bool owns(const connection& c, std::uint32_t domid) const {
    if (domid == c.domid) return true;
    auto t = targets_.find(c.domid);
    return t != targets_.end() && t->second == domid;
  }
  bool is_owner(const connection& c, const detail::node& n) const { return c.privileged || owns(c, n.perms[0].domid); }
  bool can(const connection& c, const detail::node& n, access want) const {
    if (is_owner(c, n)) return true;
    access a = n.perms[0].acc;
    for (std::size_t i = 1; i < n.perms.size(); ++i)
      if (owns(c, n.perms[i].domid)) {
        a = n.perms[i].acc;
        break;
      }
    return (static_cast<unsigned>(a) & static_cast<unsigned>(want)) == static_cast<unsigned>(want);
  }
  bool can_perms(const connection& c, const std::vector<perm>& perms, access want) const {
    detail::node tmp;  // perms only; cheap enough for unprivileged watch checks
    tmp.perms = perms;
    return can(c, tmp, want);
  }

  /// ENOENT for a missing node, unless the caller may not even see its nearest existing
  /// ancestor: then EACCES, so that existence does not leak. Inside a transaction the
  /// ancestors up to that one are read even for a privileged caller, as C xenstored's
  /// errno_from_parents does: the transaction then keeps the copies it saw, and its commit
  /// fails (EAGAIN) when one changed meanwhile (docs/xenstore-differences.md).
  errc missing_error(op& o, std::string_view path) {
    if (o.overflow) return errc::enospc;
    if (o.conn->privileged && !o.tx) return errc::enoent;
    std::string_view p = path;
    while (p != "/") {
      p = detail::parent_of(p);
      if (const auto* n = get(o, p))
        return o.conn->privileged || can(*o.conn, *n, access::read) ? errc::enoent : errc::eacces;
      if (o.overflow) return errc::enospc;
    }
    return errc::enoent;
  }

  std::vector<perm> special_perms(std::string_view path) const {
    auto it = special_perms_.find(path);
    return it == special_perms_.end() ? std::vector<perm>{perm{access::none, 0}} : it->second;
  }

  result<void, errc> check_owner_quota(op& o, std::uint32_t new_owner, std::uint32_t old_owner, std::size_t count) {
    if (o.conn->privileged || new_owner == old_owner) return {};
    std::ptrdiff_t have = 0;
    if (auto it = owned_.find(new_owner); it != owned_.end()) have = it->second;
    if (o.tx)
      if (auto it = o.tx->owned_delta.find(new_owner); it != o.tx->owned_delta.end()) have += it->second;
    if (have + static_cast<std::ptrdiff_t>(count) > static_cast<std::ptrdiff_t>(limits_.nodes_per_domain))
      return unexpected{errc::enospc};
    return {};
  }

  // ---- Mutations --------------------------------------------------------------------

  result<void, errc> do_write(op& o, std::string_view data, bool mkdir) {
    if (!o.conn->privileged && data.size() > limits_.node_size) return unexpected{errc::enospc};
    const detail::node* existing = get(o, o.path);
    if (o.overflow) return unexpected{errc::enospc};
    if (const detail::node* cur = existing) {
      if (mkdir) return {};  // exists: nothing to do, nothing fires
      if (!can(*o.conn, *cur, access::write)) return unexpected{errc::eacces};
      detail::node copy;
      copy.perms = cur->perms;
      copy.children = cur->children;
      copy.data.assign(data);
      std::vector<perm> perms = copy.perms;
      if (auto r = put(o, o.path, std::move(copy)); !r) return r;
      fire(o, o.path, false, std::move(perms));
      return {};
    }
    // Find the nearest existing ancestor: it must be writable by the caller.
    std::vector<std::string_view> missing{o.path};
    std::string_view anc = detail::parent_of(o.path);
    const detail::node* top = nullptr;
    for (;;) {
      top = get(o, anc);
      if (top) break;
      if (o.overflow) return unexpected{errc::enospc};
      missing.push_back(anc);
      anc = detail::parent_of(anc);
    }
    if (!can(*o.conn, *top, access::write)) return unexpected{errc::eacces};
    // New nodes inherit the parent's permissions; an unprivileged creator owns them.
    std::vector<perm> perms = top->perms;
    if (!o.conn->privileged) perms[0].domid = static_cast<std::uint16_t>(o.conn->domid);
    if (auto q = check_owner_quota(o, perms[0].domid, ~std::uint32_t{0}, missing.size()); !q)
      return unexpected{q.error()};
    if (o.tx && !o.conn->privileged && o.tx->nodes.size() + missing.size() > limits_.transaction_nodes)
      return unexpected{errc::enospc};
    detail::node parent_copy = *top;
    parent_copy.children.append(detail::basename_of(missing.back()));
    parent_copy.children += '\0';
    if (auto r = put(o, anc, std::move(parent_copy)); !r) return r;
    for (std::size_t i = missing.size(); i-- > 0;) {
      detail::node n;
      n.perms = perms;
      if (i > 0) {
        n.children.append(detail::basename_of(missing[i - 1]));
        n.children += '\0';
      } else {
        n.data.assign(data);
      }
      if (auto r = put(o, missing[i], std::move(n)); !r) return r;
    }
    fire(o, o.path, false, std::move(perms));
    return {};
  }

  result<void, errc> do_rm(op& o) {
    if (o.path == "/") return unexpected{errc::einval};
    const detail::node* cur = get(o, o.path);
    if (o.overflow) return unexpected{errc::enospc};
    if (!cur) {
      // Removing what is already gone is fine while its parent exists.
      const auto parent = detail::parent_of(o.path);
      if (get(o, parent)) return {};
      return unexpected{missing_error(o, parent)};
    }
    if (!can(*o.conn, *cur, access::write)) return unexpected{errc::eacces};
    // Collect the subtree first (pre-order), with the permissions each node had.
    std::vector<std::pair<std::string, std::vector<perm>>> doomed;
    doomed.emplace_back(o.path, cur->perms);
    for (std::size_t i = 0; i < doomed.size(); ++i) {
      const detail::node* n = i == 0 ? cur : get(o, doomed[i].first);
      if (o.overflow) return unexpected{errc::enospc};
      if (!n) continue;
      if (i > 0) doomed[i].second = n->perms;
      const std::string kids = n->children;  // copy: get() may rehash a transaction map
      for (auto name : string_list{kids}) doomed.emplace_back(detail::join(doomed[i].first, name), std::vector<perm>{});
      cur = nullptr;
    }
    const auto parent_path = detail::parent_of(o.path);
    const detail::node* parent = get(o, parent_path);
    if (!parent) return unexpected{errc::enoent};  // cannot happen: the node exists
    detail::node parent_copy = *parent;
    detail::remove_child(parent_copy.children, detail::basename_of(o.path));
    if (auto r = put(o, std::string{parent_path}, std::move(parent_copy)); !r) return r;
    for (auto& d : doomed)
      if (auto r = put(o, d.first, std::nullopt); !r) return r;
    // The removed node fires like a write (its watchers and its ancestors' watchers);
    // each node below fires only for watches set exactly on it.
    for (std::size_t i = 0; i < doomed.size(); ++i) fire(o, doomed[i].first, i != 0, doomed[i].second);
    return {};
  }

  // ---- Watches ----------------------------------------------------------------------

  void fire(op& o, std::string_view path, bool exact, std::vector<perm> perms) {
    if (o.tx) {
      o.tx->events.push_back(pending_event{std::string{path}, exact, std::move(perms)});
      return;
    }
    fire_now(o, path, exact, perms);
  }

  void fire_now(op&, std::string_view path, bool exact, const std::vector<perm>& perms) {
    if (watch_index_.empty()) return;
    std::string_view p = path;
    for (;;) {
      if (auto it = watch_index_.find(p); it != watch_index_.end()) deliver(it->second, path, &perms);
      if (exact || p == "/") break;
      p = detail::parent_of(p);
    }
  }

  void fire_special(std::string_view special) {
    if (auto it = watch_index_.find(special); it != watch_index_.end()) {
      const auto perms = special_perms(special);
      deliver(it->second, special, &perms);
    }
  }

  void deliver(const std::vector<watch_ref>& refs, std::string_view path, const std::vector<perm>* perms) {
    for (const auto& r : refs) {
      auto* c = conns_[r.index].get();
      if (!c || c->generation != r.generation) continue;
      // Unprivileged watchers only hear about nodes they may read.
      if (!c->privileged && perms && !can_perms(*c, *perms, access::read)) continue;
      // Relative watches see relative paths: strip "/local/domain/<domid>/".
      const std::string_view p =
          r.relative && path.size() > c->prefix.size() ? path.substr(c->prefix.size() + 1) : path;
      queue_event(*c, p, r.token);
    }
  }

  void queue_event(connection& c, std::string_view path, std::string_view token) {
    const std::size_t bound = c.privileged ? limits_.privileged_queued_events : limits_.queued_events;
    const std::size_t bytes = header_size + path.size() + token.size() + 2;
    if (c.queued_events >= bound || c.queued_event_bytes + bytes > limits_.queued_event_bytes) {
      ++c.dropped_events;
      ++stats_.dropped_events;
      return;
    }
    ++c.queued_events;
    c.queued_event_bytes += bytes;
    ++stats_.events;
    append_message(c, msg_type::watch_event, 0, 0, {path, detail::with_nul(""), token, detail::with_nul("")});
  }

  void unindex_watch(const std::string& path, std::uint32_t index, std::uint32_t generation, std::string_view token) {
    auto it = watch_index_.find(path);
    if (it == watch_index_.end()) return;
    auto& v = it->second;
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].index == index && v[i].generation == generation && v[i].token == token) {
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    if (v.empty()) watch_index_.erase(it);
  }

  void drop_watches(connection& c, std::uint32_t index) {
    for (auto& w : c.watches) unindex_watch(w.path, index, c.generation, w.token);
    c.watches.clear();
    c.watch_bytes = 0;
  }

  /// What one watch costs its connection: its path and token, kept twice (the
  /// connection's list and the path index), and an allowance for the bookkeeping.
  static std::size_t watch_cost(std::string_view path, std::string_view token) noexcept {
    return 2 * (path.size() + token.size()) + 128;
  }

  // ---- Replies ----------------------------------------------------------------------

  void append_message(connection& c, msg_type t, std::uint32_t req_id, std::uint32_t tx_id,
                      std::initializer_list<std::string_view> parts) {
    std::size_t len = 0;
    for (auto p : parts) len += p.size();
    char h[header_size];
    encode_header(header{static_cast<std::uint32_t>(t), req_id, tx_id, static_cast<std::uint32_t>(len)},
                  std::span<char, header_size>{h, header_size});
    if (!c.listed) {
      c.listed = true;
      writable_.push_back(c.index);
    }
    c.out.append(std::string_view{h, header_size});
    for (auto p : parts) c.out.append(p);
  }

  limits limits_;
  store_stats stats_;
  detail::node_map nodes_;
  std::uint64_t gen_ = 0;
  std::unordered_map<std::uint32_t, std::ptrdiff_t> owned_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> writable_;
  std::uint32_t conn_gen_ = 0;
  std::uint32_t next_tx_ = 0;
  std::unordered_map<std::string, std::vector<watch_ref>, detail::string_hash, std::equal_to<>> watch_index_;
  std::unordered_map<std::string, std::vector<perm>, detail::string_hash, std::equal_to<>> special_perms_;
  std::unordered_set<std::uint32_t> introduced_;
  std::unordered_map<std::uint32_t, std::uint32_t> targets_;
  domain_hooks* hooks_ = nullptr;
  orphan_policy orphans_ = orphan_policy::to_dom0;
};

}  // namespace xenstore
XENBUS_END_NAMESPACE

// The wire dispatcher defines store::handle().
#include <xenbus/hosted/xenstore/dispatch.hpp>
