// Our side of the two-ended ring tests: a frontend and a backend loop built on
// xenbus::front_ring / back_ring, with eventfd notifications, mirroring the C peer.
#pragma once

#include <xenbus/ring/request_ring.hpp>

#include "ring_peer.h"
#include "ring_test_util.hpp"

#include <cerrno>
#include <cstdint>
#include <span>

namespace xenbus::test {

using xbt_front = front_ring<xbt_request, xbt_response>;
using xbt_back = back_ring<xbt_request, xbt_response>;

struct our_stats {
  std::uint64_t messages = 0;
  std::uint64_t notifications_sent = 0;
  std::uint64_t wakeups = 0;
  std::uint64_t moderation_timeouts = 0;  // sleeps ended by the timeout bound (k > 1)
  std::uint64_t checksum = 0;
};

/// How a loop sleeps: kick_fd notifies the peer, wait_fd is ours. With k == 1 the sleep
/// is unbounded in principle, so a sleep longer than hang_ms is a lost wakeup (error).
/// With k > 1 (moderation) the sleep is bounded by moderation_ms, after which the loop
/// consumes whatever is there: that bound is what keeps a C-macro peer from stalling us.
struct wake_config {
  int kick_fd;
  int wait_fd;
  int hang_ms = 10000;
  ring_idx k = 1;
  int moderation_ms = 1;
};

inline int sleep_until_notified(const wake_config& w, our_stats& st) {
  const int e = wait_event(w.wait_fd, w.k > 1 ? w.moderation_ms : w.hang_ms);
  if (e == -ETIMEDOUT && w.k > 1) {
    ++st.moderation_timeouts;
    return 0;
  }
  if (e == 0) ++st.wakeups;
  return e;
}

/// Backend: serves n requests starting at index `start`.
inline int our_back_serve(std::span<std::byte> mem, ring_idx start, std::uint32_t n, const wake_config& w,
                          our_stats& st) {
  auto attached = xbt_back::attach(mem, start);
  if (!attached) return -EINVAL;
  xbt_back& r = *attached;
  while (st.messages < n) {
    bool answered_all = true;
    auto got = r.consume_requests(static_cast<ring_idx>(n - st.messages), [&](const xbt_request& q) {
      const xbt_response a{q.id, q.seq, xbt_checksum(&q)};
      answered_all = answered_all && r.produce(a);
      st.checksum += a.sum;
      ++st.messages;
    });
    if (!got || !answered_all) return -EPROTO;
    if (*got > 0) {
      auto notify = r.push_and_check_notify();
      if (!notify) return -EPROTO;
      if (*notify) {
        ++st.notifications_sent;
        if (kick(w.kick_fd) != 0) return -EIO;
      }
    }
    if (st.messages >= n) break;
    auto work = r.final_check(w.k);
    if (!work) return -EPROTO;
    if (!*work) {
      if (const int e = sleep_until_notified(w, st); e != 0) return e;
    }
  }
  return 0;
}

/// Frontend: initialises the ring at `start`, sends n requests in batches of up to
/// `batch` (one push each), checks every response against what was sent.
inline int our_front_run(std::span<std::byte> mem, ring_idx start, std::uint32_t n, std::uint32_t batch,
                         const wake_config& w, our_stats& st) {
  auto initialised = xbt_front::init(mem, start);
  if (!initialised) return -EINVAL;
  xbt_front& r = *initialised;
  std::uint32_t sent = 0;
  while (st.messages < n) {
    std::uint32_t b = 0;
    while (sent < n && b < batch) {
      xbt_request* slot = r.claim();
      if (slot == nullptr) break;
      xbt_fill(slot, sent);  // write-only use of the shared slot
      ++sent;
      ++b;
    }
    if (b > 0) {
      auto notify = r.push_and_check_notify();
      if (!notify) return -EPROTO;
      if (*notify) {
        ++st.notifications_sent;
        if (kick(w.kick_fd) != 0) return -EIO;
      }
    }
    bool all_match = true;
    auto got = r.consume_responses(0xffffffffu, [&](const xbt_response& a) {
      xbt_request expect;
      xbt_fill(&expect, static_cast<std::uint32_t>(st.messages));
      all_match = all_match && a.seq == expect.seq && a.id == expect.id && a.sum == xbt_checksum(&expect);
      st.checksum += a.sum;
      ++st.messages;
    });
    if (!got || !all_match) return -EPROTO;
    if (st.messages >= n) break;
    if (sent == n || r.full()) {
      auto work = r.final_check(w.k);
      if (!work) return -EPROTO;
      if (!*work) {
        if (const int e = sleep_until_notified(w, st); e != 0) return e;
      }
    }
  }
  return 0;
}

/// The checksum both ends must agree on for messages 0..n-1.
inline std::uint64_t expected_checksum(std::uint32_t n) {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    xbt_request q;
    xbt_fill(&q, i);
    sum += xbt_checksum(&q);
  }
  return sum;
}

}  // namespace xenbus::test
