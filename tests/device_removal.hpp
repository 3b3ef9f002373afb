// A store wrapper that lands a device's removal between any two store operations a driver
// makes: for the removal tests (tests/faults_test.cpp) and the teardown fuzzer
// (fuzz/device_teardown_fuzz.cpp).
#pragma once

#include <xenbus/hosted/device/driver.hpp>
#include <xenbus/hosted/device/store.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace devtest {

/// A device_store that forwards to `inner` and runs `hook` once, just before its `at`-th
/// operation (counting every call from 0). A test removes the device there, so that the
/// toolstack's removal falls between a driver's read of its node and its next write, as a
/// toolstack on another connection can do at any moment.
template <xenbus::device_store S>
class removing_store {
 public:
  explicit removing_store(S& inner) : s_{&inner} {}

  void arm(std::uint64_t at, std::function<void()> hook) {
    at_ = at;
    hook_ = std::move(hook);
  }
  bool fired() const noexcept { return fired_; }
  std::uint64_t ops() const noexcept { return ops_; }
  S& inner() noexcept { return *s_; }

  auto read(xenbus::store_tx tx, std::string_view path) { return tick(), s_->read(tx, path); }
  auto write(xenbus::store_tx tx, std::string_view path, std::string_view value) {
    return tick(), s_->write(tx, path, value);
  }
  auto remove(xenbus::store_tx tx, std::string_view path) { return tick(), s_->remove(tx, path); }
  auto directory(xenbus::store_tx tx, std::string_view path) { return tick(), s_->directory(tx, path); }
  auto transaction_start() { return tick(), s_->transaction_start(); }
  auto transaction_end(xenbus::store_tx tx, bool commit) { return tick(), s_->transaction_end(tx, commit); }
  auto watch(std::string_view path, std::string_view token) { return tick(), s_->watch(path, token); }
  auto unwatch(std::string_view path, std::string_view token) { return tick(), s_->unwatch(path, token); }
  auto next_watch_event(int timeout_ms) { return tick(), s_->next_watch_event(timeout_ms); }

 private:
  void tick() {
    if (ops_++ == at_ && hook_ && !fired_) {
      fired_ = true;
      hook_();
    }
  }
  S* s_;
  std::uint64_t ops_ = 0, at_ = ~std::uint64_t{0};
  std::function<void()> hook_;
  bool fired_ = false;
};

/// The children of `parent` (none when it is gone): after a removal, the device's number
/// must not be among them.
template <xenbus::device_store S>
std::vector<std::string> children(S& s, const std::string& parent) {
  auto d = s.directory(xenbus::no_tx, parent);
  return d ? std::move(*d) : std::vector<std::string>{};
}

/// The directories that hold a device's two directories.
inline std::string frontend_parent(const xenbus::device_address& a) {
  const std::string d = a.frontend_dir();
  return d.substr(0, d.rfind('/'));
}
inline std::string backend_parent(const xenbus::device_address& a) {
  const std::string d = a.backend_dir();
  return d.substr(0, d.rfind('/'));
}

}  // namespace devtest
