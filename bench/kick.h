/* Event-channel stand-in for xenbus-bench: one eventfd per direction (C and C++). */
#ifndef XENBUS_BENCH_KICK_H
#define XENBUS_BENCH_KICK_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/*
 * A Xen event channel is a level-less "something happened" bit.  An eventfd in its
 * default (non-semaphore) mode is the same thing for two threads: kicks accumulate in a
 * counter, and one read takes them all and clears it.  A consumer that has no work
 * blocks in xb_wait(); the producer's xb_kick() wakes it.  Both C and C++ ends of every
 * benchmark go through these functions, so a kick costs the same whoever sends it.
 */

/* Sends one notification. */
static inline void xb_kick(int fd) {
  const uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

/* Blocks until at least one notification arrived, and consumes all of them. */
static inline void xb_wait(int fd) {
  uint64_t n;
  while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {
  }
}

/*
 * Blocks until a notification arrives or timeout_ns passes.  Returns 1 if it consumed
 * notifications, 0 on timeout.  This is how a moderated consumer bounds its wait, so
 * that a peer that never sends the batched kick it asked for cannot stall it.
 */
static inline int xb_wait_for(int fd, long timeout_ns) {
  struct pollfd p;
  p.fd = fd;
  p.events = POLLIN;
  p.revents = 0;
  struct timespec t;
  t.tv_sec = timeout_ns / 1000000000L;
  t.tv_nsec = timeout_ns % 1000000000L;
  int r;
  while ((r = ppoll(&p, 1, &t, NULL)) < 0 && errno == EINTR) {
  }
  if (r <= 0) return 0;
  xb_wait(fd);
  return 1;
}

#endif
