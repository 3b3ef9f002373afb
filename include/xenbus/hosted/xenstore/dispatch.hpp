// [hosted] The xenstore wire dispatcher: takes each request that parse_request validated to the store's data model and
// queues its reply.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace xenstore {

/// The wire side of a store: validates a message (wire.hpp's parse_request), calls the
/// typed operation it asks for, and queues the reply (XS_ERROR with the errno name, or
/// the type's answer) on the connection's output. Holds no state of its own.
class dispatcher {
 public:
  explicit dispatcher(store& s) noexcept : s_{s} {}

  /// Validates and executes one request, queueing its reply (and any watch events).
  void handle(conn_id id, const message& m) {
    auto* c = s_.lookup(id);
    if (!c) return;
    ++s_.stats_.requests;
    auto req = parse_request(m);
    if (!req) return send_error(*c, m.hdr, req.error());
    execute(id, *c, *req);
  }

 private:
  void send_reply(store::connection& c, const header& req, std::initializer_list<std::string_view> parts) {
    std::size_t len = 0;
    for (auto p : parts) len += p.size();
    if (len > payload_max) return send_error(c, req, errc::e2big);
    ++c.queued_replies;
    s_.append_message(c, req.kind(), req.req_id, req.tx_id, parts);
  }

  void send_ok(store::connection& c, const header& req) { send_reply(c, req, {detail::with_nul("OK")}); }

  void send_error(store::connection& c, const header& req, errc e) {
    ++s_.stats_.errors;
    ++c.queued_replies;
    s_.append_message(c, msg_type::error, req.req_id, req.tx_id, {to_string(e), detail::with_nul("")});
  }

  template <class R>
  void ack(store::connection& c, const header& h, const R& r) {
    if (r)
      send_ok(c, h);
    else
      send_error(c, h, r.error());
  }

  void execute(conn_id id, store::connection& c, const request& r) {
    const header h{static_cast<std::uint32_t>(r.type), r.req_id, r.tx_id, 0};
    switch (r.type) {
      case msg_type::read: {
        auto v = s_.read(id, r.tx_id, node_path::checked(r));
        if (v)
          send_reply(c, h, {*v});
        else
          send_error(c, h, v.error());
        return;
      }
      case msg_type::write:
        return ack(c, h, s_.write(id, r.tx_id, node_path::checked(r), r.data));
      case msg_type::mkdir:
        return ack(c, h, s_.mkdir(id, r.tx_id, node_path::checked(r)));
      case msg_type::rm:
        return ack(c, h, s_.rm(id, r.tx_id, node_path::checked(r)));
      case msg_type::directory: {
        auto v = s_.directory(id, r.tx_id, node_path::checked(r));
        if (v)
          send_reply(c, h, {*v});
        else
          send_error(c, h, v.error());
        return;
      }
      case msg_type::directory_part: {
        auto v = s_.directory_part(id, r.tx_id, node_path::checked(r), r.number);
        if (v)
          send_reply(c, h, {*v});
        else
          send_error(c, h, v.error());
        return;
      }
      case msg_type::get_perms: {
        auto v = s_.get_perms(id, r.tx_id, node_path::checked(r));
        if (!v) return send_error(c, h, v.error());
        std::string text;
        for (const auto& p : *v) {
          char b[6];
          text.append(b, format_perm(p, b));
          text += '\0';
        }
        return send_reply(c, h, {text});
      }
      case msg_type::set_perms: {
        std::vector<perm> perms;
        for (auto s : string_list{r.list}) perms.push_back(*parse_perm(s));
        return ack(c, h, s_.set_perms(id, r.tx_id, node_path::checked(r), perms));
      }
      case msg_type::transaction_start: {
        if (r.tx_id != 0) return send_error(c, h, errc::ebusy);
        auto t = s_.transaction_start(id);
        if (!t) return send_error(c, h, t.error());
        std::string text;
        detail::append_u64(text, *t);
        text += '\0';
        return send_reply(c, h, {text});
      }
      case msg_type::transaction_end:
        return ack(c, h, s_.transaction_end(id, r.tx_id, r.number != 0));
      case msg_type::watch: {
        auto w = s_.watch(id, node_path::checked(r), r.data);
        if (!w) return send_error(c, h, w.error());
        send_ok(c, h);
        // A watch fires once when set, with the path as the caller wrote it.
        s_.queue_event(c, r.path, r.data);
        return;
      }
      case msg_type::unwatch:
        return ack(c, h, s_.unwatch(id, node_path::checked(r), r.data));
      case msg_type::reset_watches:
        return ack(c, h, s_.reset_watches(id));
      case msg_type::get_domain_path: {
        std::string p = "/local/domain/";
        detail::append_u64(p, r.domid);
        p += '\0';
        return send_reply(c, h, {p});
      }
      case msg_type::introduce:
        return ack(c, h, s_.introduce(id, r.domid, r.mfn, r.domid2));
      case msg_type::release:
        return ack(c, h, s_.release(id, r.domid));
      case msg_type::is_domain_introduced: {
        auto v = s_.is_domain_introduced(id, r.domid);
        if (!v) return send_error(c, h, v.error());
        return send_reply(c, h, {*v ? detail::with_nul("T") : detail::with_nul("F")});
      }
      case msg_type::resume:
        return ack(c, h, s_.resume(id, r.domid));
      case msg_type::set_target:
        return ack(c, h, s_.set_target(id, r.domid, r.domid2));
      case msg_type::control:
        return control(c, h, r.list);
      case msg_type::watch_event:
      case msg_type::error:
      case msg_type::type_count:
      case msg_type::invalid:
        break;
    }
    send_error(c, h, errc::enosys);
  }

  /// XS_CONTROL, minimal: "help", "print <text>", "check" (privileged only).
  void control(store::connection& c, const header& h, std::string_view args) {
    if (!c.privileged) return send_error(c, h, errc::eacces);
    string_list l{args};
    auto it = l.begin();
    const std::string_view cmd = *it;
    if (cmd == "help") return send_reply(c, h, {detail::with_nul("check\nhelp\nprint <text>\n")});
    if (cmd == "check" || cmd == "print") return send_ok(c, h);
    send_error(c, h, errc::einval);
  }

  store& s_;
};

inline void store::handle(conn_id id, const message& m) { dispatcher{*this}.handle(id, m); }

}  // namespace xenstore
XENBUS_END_NAMESPACE
