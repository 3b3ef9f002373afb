/* Spin-wait policy shared by every implementation in xenbus-bench (C and C++). */
#ifndef XENBUS_BENCH_SPIN_H
#define XENBUS_BENCH_SPIN_H

#include <sched.h>

/*
 * Every busy-wait loop of every implementation (ours, the C macros, boost, the floor)
 * calls xb_spin_relax() once per unsuccessful poll, so that differences between
 * implementations come from the rings, never from the waiting.  A pause hint keeps the
 * spinning core from flooding the other one with speculative loads; every 2^14 failed
 * polls we yield, so that a peer preempted on an oversubscribed machine (two cores
 * shared with compilers) gets its CPU back instead of waiting for a timeslice.
 */
/* Also a compiler barrier: a loop that polls a plain field re-reads it every time. */
static inline void xb_spin_relax(unsigned* spins) {
  if ((++*spins & 0x3fffu) == 0)
    sched_yield();
  else
    __asm__ volatile("pause" ::: "memory");
}

/*
 * The peer's stop request: set once by the benchmark thread after its last publication,
 * polled by the peer.  Acquire: pairs with the release store in peer_thread::stop(), so
 * a peer that sees the request and then polls its ring once more sees everything the
 * benchmark thread published before asking.
 */
static inline int xb_should_stop(const int* stop) { return __atomic_load_n(stop, __ATOMIC_ACQUIRE); }

#endif
