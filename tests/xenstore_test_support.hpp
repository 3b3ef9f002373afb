// Test-side helpers for the xenstore tests: a wire-level caller on an in-process store.
#pragma once

#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xstest {

namespace xs = xenbus::xenstore;
using namespace std::string_view_literals;

/// A reply as a test sees it: type and payload; `err` set for XS_ERROR.
struct answer {
  xs::msg_type type = xs::msg_type::invalid;
  std::string payload;
  std::uint32_t tx_id = 0;
  bool ok() const { return type != xs::msg_type::error; }
  std::string err() const { return ok() ? std::string{} : payload.substr(0, payload.size() - 1); }
};

struct event {
  std::string path;
  std::string token;
  friend bool operator==(const event&, const event&) = default;
};

/// One connection to an in-process store, speaking wire messages.
class caller {
 public:
  caller(xs::store& s, std::uint32_t domid, bool privileged)
      : s_{s}, id_{s.connect(domid, privileged)}, dec_{std::make_unique<xs::decoder>()} {}
  ~caller() { s_.disconnect(id_); }
  caller(const caller&) = delete;
  caller& operator=(const caller&) = delete;

  xs::conn_id id() const { return id_; }

  answer call(xs::msg_type t, std::string_view payload, std::uint32_t tx = 0) {
    const std::uint32_t req = ++req_;
    s_.handle(
        id_, xs::message{xs::header{static_cast<std::uint32_t>(t), req, tx, static_cast<std::uint32_t>(payload.size())},
                         payload});
    drain();
    for (std::size_t i = 0; i < replies_.size(); ++i) {
      auto [h, a] = replies_[i];
      if (h.req_id == req) {
        replies_.erase(replies_.begin() + static_cast<std::ptrdiff_t>(i));
        CHECK(h.tx_id == tx);
        CHECK((h.kind() == t || h.kind() == xs::msg_type::error));
        return a;
      }
    }
    FAIL("no reply to request " << req);
    return {};
  }

  // Convenience wrappers (absolute or relative paths, tx optional).
  answer read(std::string_view p, std::uint32_t tx = 0) { return call(xs::msg_type::read, arg(p), tx); }
  answer write(std::string_view p, std::string_view v, std::uint32_t tx = 0) {
    return call(xs::msg_type::write, std::string{p} + '\0' + std::string{v}, tx);
  }
  answer mkdir(std::string_view p, std::uint32_t tx = 0) { return call(xs::msg_type::mkdir, arg(p), tx); }
  answer rm(std::string_view p, std::uint32_t tx = 0) { return call(xs::msg_type::rm, arg(p), tx); }
  answer dir(std::string_view p, std::uint32_t tx = 0) { return call(xs::msg_type::directory, arg(p), tx); }
  answer get_perms(std::string_view p) { return call(xs::msg_type::get_perms, arg(p)); }
  answer set_perms(std::string_view p, std::vector<std::string> perms, std::uint32_t tx = 0) {
    std::string pl = arg(p);
    for (auto& x : perms) pl += x + '\0';
    return call(xs::msg_type::set_perms, pl, tx);
  }
  answer watch(std::string_view p, std::string_view tok) {
    return call(xs::msg_type::watch, arg(p) + std::string{tok} + '\0');
  }
  answer unwatch(std::string_view p, std::string_view tok) {
    return call(xs::msg_type::unwatch, arg(p) + std::string{tok} + '\0');
  }
  std::uint32_t start() {
    auto a = call(xs::msg_type::transaction_start, "\0"sv);
    REQUIRE(a.ok());
    return static_cast<std::uint32_t>(std::stoul(a.payload));
  }
  answer end(std::uint32_t tx, bool commit) {
    return call(xs::msg_type::transaction_end, commit ? "T\0"sv : "F\0"sv, tx);
  }

  /// Watch events received so far (and forgets them).
  std::vector<event> events() {
    drain();
    return std::exchange(events_, {});
  }

  static std::string arg(std::string_view p) { return std::string{p} + '\0'; }

 private:
  void drain() {
    for (;;) {
      auto out = s_.output(id_);
      if (out.empty()) return;
      std::size_t used = 0;
      while (used < out.size()) {
        used += dec_->feed(out.substr(used));
        REQUIRE_FALSE(dec_->broken());
        if (dec_->ready()) {
          auto m = dec_->current();
          auto r = xs::parse_reply(m);
          REQUIRE(r.has_value());
          if (m.hdr.kind() == xs::msg_type::watch_event) {
            events_.push_back(event{std::string{r->path}, std::string{r->token}});
          } else {
            replies_.emplace_back(m.hdr, answer{m.hdr.kind(), std::string{m.payload}, m.hdr.tx_id});
          }
          dec_->next();
        }
      }
      s_.consume(id_, out.size());
    }
  }

  xs::store& s_;
  xs::conn_id id_;
  std::unique_ptr<xs::decoder> dec_;
  std::uint32_t req_ = 0;
  std::vector<std::pair<xs::header, answer>> replies_;
  std::vector<event> events_;
};

}  // namespace xstest
