// [testing] Deterministic fault injection for driver tests: wrappers around a store, an event channel, a ring page.
#pragma once

#include <xenbus/hosted/device/store.hpp>
#include <xenbus/evtchn.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

XENBUS_BEGIN_NAMESPACE
namespace testing {

/// A seeded generator (splitmix64): the same seed gives the same faults, run after run.
class fault_rng {
 public:
  explicit constexpr fault_rng(std::uint64_t seed) noexcept : s_{seed} {}
  constexpr std::uint64_t next() noexcept {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// True with probability permille/1000.
  constexpr bool chance(unsigned permille) noexcept { return permille != 0 && next() % 1000 < permille; }
  constexpr std::uint32_t below(std::uint32_t n) noexcept { return n ? static_cast<std::uint32_t>(next() % n) : 0; }

 private:
  std::uint64_t s_;
};

/// Which faults to inject and how often (per mille of the operations that can carry them).
struct fault_plan {
  std::uint64_t seed = 1;
  unsigned spurious_watch = 0;     ///< after an event, also deliver a copy of it later
  unsigned coalesce_watch = 0;     ///< merge queued events for the same path into one
  unsigned commit_eagain = 0;      ///< a committing transaction_end fails with EAGAIN
  unsigned max_eagain_in_row = 3;  ///< bound, so that a retry loop always terminates
  unsigned delay_notify = 0;       ///< hold a pending port back for 1..max_delay calls
  unsigned max_delay = 4;
  unsigned spurious_notify = 0;  ///< report a bound port that nobody raised
};

/// What was injected, for the test to assert on and to print with the seed.
struct fault_counts {
  unsigned spurious_watch = 0, coalesced_watch = 0, commit_eagain = 0, reconnects = 0;
  unsigned delayed_notify = 0, spurious_notify = 0;
};

/// A device_store that forwards to `inner` and injects watch and transaction faults.
/// `reconnect()` reproduces what a xenstore ring reconnection does to a client: every open
/// transaction is lost (its end answers EAGAIN) and every watch fires again after it is
/// registered anew; if the inner store can reconnect itself, that is called first.
template <device_store S>
class faulty_store {
 public:
  faulty_store(S& inner, const fault_plan& plan) : s_{&inner}, plan_{plan}, rng_{plan.seed} {}

  const fault_counts& counts() const noexcept { return counts_; }
  S& inner() noexcept { return *s_; }

  result<std::string, store_error> read(store_tx tx, std::string_view path) {
    if (lost(tx)) return unexpected{store_error{store_errc::eagain}};
    return s_->read(tx, path);
  }
  result<void, store_error> write(store_tx tx, std::string_view path, std::string_view value) {
    if (lost(tx)) return unexpected{store_error{store_errc::eagain}};
    return s_->write(tx, path, value);
  }
  result<void, store_error> remove(store_tx tx, std::string_view path) {
    if (lost(tx)) return unexpected{store_error{store_errc::eagain}};
    return s_->remove(tx, path);
  }
  result<std::vector<std::string>, store_error> directory(store_tx tx, std::string_view path) {
    if (lost(tx)) return unexpected{store_error{store_errc::eagain}};
    return s_->directory(tx, path);
  }
  result<store_tx, store_error> transaction_start() {
    auto t = s_->transaction_start();
    if (t) open_tx_.push_back(*t);
    return t;
  }
  result<void, store_error> transaction_end(store_tx tx, bool commit) {
    std::erase(open_tx_, tx);
    if (lost(tx)) {
      std::erase(lost_tx_, tx);
      (void)s_->transaction_end(tx, false);
      return unexpected{store_error{store_errc::eagain}};
    }
    if (commit && eagain_in_row_ < plan_.max_eagain_in_row && rng_.chance(plan_.commit_eagain)) {
      ++eagain_in_row_;
      ++counts_.commit_eagain;
      (void)s_->transaction_end(tx, false);
      return unexpected{store_error{store_errc::eagain}};
    }
    eagain_in_row_ = 0;
    return s_->transaction_end(tx, commit);
  }
  result<void, store_error> watch(std::string_view path, std::string_view token) {
    auto r = s_->watch(path, token);
    if (r) watches_.emplace_back(std::string(path), std::string(token));
    return r;
  }
  result<void, store_error> unwatch(std::string_view path, std::string_view token) {
    std::erase_if(watches_, [&](const auto& w) { return w.first == path && w.second == token; });
    return s_->unwatch(path, token);
  }

  result<watch_event, store_error> next_watch_event(int timeout_ms) {
    // Take everything that is already there, so that coalescing sees real bursts.
    for (;;) {
      auto ev = s_->next_watch_event(queue_.empty() ? timeout_ms : 0);
      if (!ev) {
        if (ev.error().code != store_errc::timeout) return ev;
        break;
      }
      queue_.push_back(std::move(*ev));
    }
    if (queue_.empty()) return unexpected{store_error{store_errc::timeout}};
    watch_event out = std::move(queue_.front());
    queue_.pop_front();
    // Merging is safe: the changes behind the dropped events have happened already, so a
    // reader woken by `out` sees their result; that is exactly what a real burst looks like.
    if (rng_.chance(plan_.coalesce_watch)) {
      const auto before = queue_.size();
      std::erase_if(queue_, [&](const watch_event& e) { return e.path == out.path && e.token == out.token; });
      counts_.coalesced_watch += static_cast<unsigned>(before - queue_.size());
    }
    if (rng_.chance(plan_.spurious_watch)) {
      ++counts_.spurious_watch;
      queue_.insert(
          queue_.begin() + static_cast<std::ptrdiff_t>(rng_.below(static_cast<std::uint32_t>(queue_.size()) + 1)), out);
    }
    return out;
  }

  /// A xenstore ring reconnection, as the client sees it (see the class comment).
  result<void, store_error> reconnect() {
    ++counts_.reconnects;
    if constexpr (requires { s_->reconnect(); }) {
      auto r = s_->reconnect();
      if (!r) return unexpected{store_error{store_errc::broken}};
    }
    lost_tx_.insert(lost_tx_.end(), open_tx_.begin(), open_tx_.end());
    open_tx_.clear();
    for (const auto& [path, token] : watches_) {
      (void)s_->unwatch(path, token);
      if (auto r = s_->watch(path, token); !r) return r;
    }
    return {};
  }

 private:
  bool lost(store_tx tx) const noexcept {
    return tx != no_tx && std::find(lost_tx_.begin(), lost_tx_.end(), tx) != lost_tx_.end();
  }

  S* s_;
  fault_plan plan_;
  fault_rng rng_;
  fault_counts counts_{};
  unsigned eagain_in_row_ = 0;
  std::deque<watch_event> queue_;
  std::vector<std::pair<std::string, std::string>> watches_;
  std::vector<store_tx> open_tx_, lost_tx_;
};

/// An event_channel that forwards to `inner` and delays or invents notifications.
/// Delays count calls to pending(), not time, so a run is reproducible; a driver that
/// sleeps on fd() alone without a timeout will hang here, as it would on a lost wakeup.
template <event_channel E>
class faulty_evtchn {
 public:
  faulty_evtchn(E& inner, const fault_plan& plan) : e_{&inner}, plan_{plan}, rng_{plan.seed ^ 0x5eedULL} {}

  const fault_counts& counts() const noexcept { return counts_; }

  result<evtchn_port, evtchn_error> bind_unbound(domid_t remote) { return remember(e_->bind_unbound(remote)); }
  result<evtchn_port, evtchn_error> bind_interdomain(domid_t remote, evtchn_port p) {
    return remember(e_->bind_interdomain(remote, p));
  }
  result<void, evtchn_error> unbind(evtchn_port p) {
    std::erase(bound_, p);
    std::erase_if(held_, [&](const auto& h) { return h.first == p; });
    return e_->unbind(p);
  }
  result<void, evtchn_error> notify(evtchn_port p) { return e_->notify(p); }
  result<void, evtchn_error> unmask(evtchn_port p) { return e_->unmask(p); }
  int fd() { return e_->fd(); }

  result<evtchn_port, evtchn_error> pending() {
    for (auto it = held_.begin(); it != held_.end(); ++it)
      if (it->second-- == 0) {
        const evtchn_port p = it->first;
        held_.erase(it);
        return p;
      }
    if (!bound_.empty() && rng_.chance(plan_.spurious_notify)) {
      ++counts_.spurious_notify;
      return bound_[rng_.below(static_cast<std::uint32_t>(bound_.size()))];
    }
    auto p = e_->pending();
    if (p && rng_.chance(plan_.delay_notify)) {
      ++counts_.delayed_notify;
      held_.emplace_back(*p, 1 + rng_.below(plan_.max_delay));
      return unexpected{evtchn_error{evtchn_errc::would_block}};
    }
    return p;
  }

 private:
  result<evtchn_port, evtchn_error> remember(result<evtchn_port, evtchn_error> r) {
    if (r) bound_.push_back(*r);
    return r;
  }
  E* e_;
  fault_plan plan_;
  fault_rng rng_;
  fault_counts counts_{};
  std::vector<evtchn_port> bound_;
  std::vector<std::pair<evtchn_port, unsigned>> held_;
};

/// Ways a hostile peer can corrupt the indices at the head of a shared ring page
/// (req_prod, req_event, rsp_prod, rsp_event: four uint32 at offsets 0, 4, 8, 12).
enum class ring_attack : std::uint8_t {
  req_prod_overflow,   ///< req_prod more than a ring ahead of what the backend consumed
  rsp_prod_overflow,   ///< rsp_prod more than a ring ahead of what the frontend consumed
  rsp_prod_backwards,  ///< rsp_prod moved back (huge forward distance modulo 2^32)
  req_prod_random,     ///< req_prod replaced by a random value
  rsp_prod_random,     ///< rsp_prod replaced by a random value
  events_random,       ///< req_event/rsp_event replaced by random values (notifications only)
};

/// Overwrites the indices of the ring page `page` as attack `a` describes; `consumed` is the
/// victim's consumer index and `slots` the ring size. Returns the value written. The writes
/// are plain 32-bit stores, as a peer in another domain would make them.
inline std::uint32_t corrupt_ring_indices(std::span<std::byte> page, ring_attack a, std::uint32_t consumed,
                                          std::uint32_t slots, fault_rng& rng) noexcept {
  auto put = [&](std::size_t off, std::uint32_t v) {
    if (page.size() >= off + 4) std::memcpy(page.data() + off, &v, 4);
    return v;
  };
  const auto rnd = static_cast<std::uint32_t>(rng.next());
  switch (a) {
    case ring_attack::req_prod_overflow:
      return put(0, consumed + slots + 1 + rng.below(1000));
    case ring_attack::rsp_prod_overflow:
      return put(8, consumed + slots + 1 + rng.below(1000));
    case ring_attack::rsp_prod_backwards:
      return put(8, consumed - 1 - rng.below(slots));
    case ring_attack::req_prod_random:
      return put(0, rnd);
    case ring_attack::rsp_prod_random:
      return put(8, rnd);
    case ring_attack::events_random:
      put(4, rnd);
      return put(12, static_cast<std::uint32_t>(rng.next()));
  }
  return 0;
}

}  // namespace testing
XENBUS_END_NAMESPACE
