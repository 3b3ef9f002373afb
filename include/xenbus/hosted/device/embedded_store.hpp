// [hosted] device_store over the embedded xenstore::store, for drivers that share a process with it.
#pragma once

#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

XENBUS_BEGIN_NAMESPACE

/// One connection to an in-process xenstore::store, as a device_store. Calls are typed
/// (no wire round trip); watch events are taken from the connection's queued wire output,
/// as a socket client would read them. Single-threaded: next_watch_event() never waits
/// (nothing can change the store while we wait), so its timeout only means "poll".
class embedded_store {
 public:
  embedded_store(xenstore::store& s, domid_t domid, bool privileged = true)
      : s_{&s}, id_{s.connect(domid, privileged)}, dec_{std::make_unique<xenstore::decoder>()} {}
  embedded_store(embedded_store&& o) noexcept
      : s_{o.s_}, id_{o.id_}, dec_{std::move(o.dec_)}, early_{std::move(o.early_)} {
    o.s_ = nullptr;
  }
  embedded_store& operator=(embedded_store&&) = delete;
  ~embedded_store() {
    if (s_) s_->disconnect(id_);
  }

  xenstore::conn_id connection() const noexcept { return id_; }

  result<std::string, store_error> read(store_tx tx, std::string_view path) { return wrap(s_->read(id_, tx, path)); }
  result<void, store_error> write(store_tx tx, std::string_view path, std::string_view value) {
    return wrap(s_->write(id_, tx, path, value));
  }
  result<void, store_error> remove(store_tx tx, std::string_view path) { return wrap(s_->rm(id_, tx, path)); }
  result<std::vector<std::string>, store_error> directory(store_tx tx, std::string_view path) {
    auto d = s_->directory(id_, tx, path);
    if (!d) return unexpected{store_error{d.error()}};
    std::vector<std::string> out;
    for (auto name : xenstore::string_list{*d}) out.emplace_back(name);
    return out;
  }
  result<void, store_error> set_perms(store_tx tx, std::string_view path, std::span<const xenstore::perm> perms) {
    return wrap(s_->set_perms(id_, tx, path, std::vector<xenstore::perm>(perms.begin(), perms.end())));
  }
  result<store_tx, store_error> transaction_start() { return wrap(s_->transaction_start(id_)); }
  result<void, store_error> transaction_end(store_tx tx, bool commit) {
    return wrap(s_->transaction_end(id_, tx, commit));
  }
  result<void, store_error> watch(std::string_view path, std::string_view token) {
    auto r = wrap(s_->watch(id_, path, token));
    // XS_WATCH fires once when set; the typed call leaves that to its caller.
    if (r) early_.push_back(watch_event{std::string(path), std::string(token), 0});
    return r;
  }
  result<void, store_error> unwatch(std::string_view path, std::string_view token) {
    return wrap(s_->unwatch(id_, path, token));
  }
  /// XS_RESET_WATCHES: the store drops every watch and transaction of this connection;
  /// registration events not yet taken are dropped too.
  result<void, store_error> reset_watches() {
    early_.clear();
    return wrap(s_->reset_watches(id_));
  }

  result<watch_event, store_error> next_watch_event(int /*timeout_ms*/) {
    if (!early_.empty()) {
      watch_event ev = std::move(early_.front());
      early_.pop_front();
      return ev;
    }
    for (;;) {
      const std::string_view out = s_->output(id_);
      if (out.empty()) return unexpected{store_error{store_errc::timeout}};
      const std::size_t used = dec_->feed(out);
      s_->consume(id_, used);
      if (dec_->broken()) return unexpected{store_error{store_errc::broken}};
      if (!dec_->ready()) continue;
      const xenstore::message m = dec_->current();
      std::string_view parts[2];
      const bool ok = m.hdr.kind() == xenstore::msg_type::watch_event && xenstore::split_exact(m.payload, parts);
      watch_event ev;
      if (ok) ev = watch_event{std::string(parts[0]), std::string(parts[1]), 0};
      dec_->next();
      if (ok) return ev;  // anything else on an event-only connection is skipped
    }
  }

 private:
  template <class T>
  static result<T, store_error> wrap(result<T, xenstore::errc>&& r) {
    if (!r) return unexpected{store_error{r.error()}};
    return std::move(*r);
  }
  static result<void, store_error> wrap(result<void, xenstore::errc>&& r) {
    if (!r) return unexpected{store_error{r.error()}};
    return {};
  }

  xenstore::store* s_;
  xenstore::conn_id id_;
  std::unique_ptr<xenstore::decoder> dec_;
  std::deque<watch_event> early_;
};

static_assert(permission_store<embedded_store>, "embedded_store must model xenbus::permission_store");

XENBUS_END_NAMESPACE
