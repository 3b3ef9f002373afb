/* The C peer of xenbus-bench: ring.h macros and flex-ring functions, compiled as C. */
#define _GNU_SOURCE /* ppoll, for kick.h */

#include "xen_peer.h"

#include <stdlib.h>
#include <string.h>

/* Xen's own userspace barriers: xen_mb() = lock addl $0,-32(%rsp); xen_rmb() and
 * xen_wmb() = compiler barriers (x86-64).  ring.h expands to them. */
#include <xenctrl.h>

#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/xs_wire.h>
#define XEN_WANT_FLEX_CONSOLE_RING 1 /* console.h then runs DEFINE_XEN_FLEX_RING(xencons) */
#include <xen/io/console.h>

#include "kick.h"
#include "spin.h"

/* How the notification loops send a kick and sleep until one comes: on the eventfds of
 * kick.h, unless the includer routes them elsewhere (tests/xenlab/peer_ring_c.c includes
 * this file with its own XP_KICK and XP_WAIT, on a real event channel between domains). */
#ifndef XP_KICK
#define XP_KICK(fd) xb_kick(fd)
#endif
#ifndef XP_WAIT
#define XP_WAIT(fd) xb_wait(fd)
#endif

#if !defined(__x86_64__)
#error "xenbus-bench's C peer is written for x86-64 (the barriers of <xenctrl.h> differ elsewhere)"
#endif

/* ---- blkif: 112-byte requests, 16-byte responses --------------------------------- */
#define XP_NAME(x) blk_##x
#define XP_SRING struct blkif_sring
#define XP_FRONT blkif_front_ring_t
#define XP_BACK blkif_back_ring_t
#define XP_REQ blkif_request_t
#define XP_RSP blkif_response_t
#define XP_FILL(r, s)                   \
  do {                                  \
    memset(&(r), 0, sizeof(r));         \
    (r).operation = BLKIF_OP_READ;      \
    (r).nr_segments = 1;                \
    (r).handle = 0;                     \
    (r).id = (s);                       \
    (r).sector_number = (s)*8;          \
    (r).seg[0].gref = (grant_ref_t)(s); \
    (r).seg[0].first_sect = 0;          \
    (r).seg[0].last_sect = 7;           \
  } while (0)
#define XP_ECHO(p, q)              \
  do {                             \
    (p).id = (q).id;               \
    (p).operation = (q).operation; \
    (p).status = BLKIF_RSP_OKAY;   \
  } while (0)
#define XP_RSP_ID(p) ((p).id)
#define XP_ID(s) ((uint64_t)(s))
#include "xen_peer_loops.inc"
#undef XP_NAME
#undef XP_SRING
#undef XP_FRONT
#undef XP_BACK
#undef XP_REQ
#undef XP_RSP
#undef XP_FILL
#undef XP_ECHO
#undef XP_RSP_ID
#undef XP_ID

/* ---- netif tx: 12-byte requests, 4-byte responses ------------------------------- */
#define XP_NAME(x) tx_##x
#define XP_SRING struct netif_tx_sring
#define XP_FRONT netif_tx_front_ring_t
#define XP_BACK netif_tx_back_ring_t
#define XP_REQ netif_tx_request_t
#define XP_RSP netif_tx_response_t
#define XP_FILL(r, s)            \
  do {                           \
    (r).gref = (grant_ref_t)(s); \
    (r).offset = 0;              \
    (r).flags = 0;               \
    (r).id = (uint16_t)(s);      \
    (r).size = 1514;             \
  } while (0)
#define XP_ECHO(p, q)            \
  do {                           \
    (p).id = (q).id;             \
    (p).status = NETIF_RSP_OKAY; \
  } while (0)
#define XP_RSP_ID(p) ((p).id)
#define XP_ID(s) ((uint16_t)(s))
#include "xen_peer_loops.inc"

/* ---- Dispatch ---------------------------------------------------------------------- */
struct xp_front {
  enum xp_payload payload;
  union {
    struct blk_front* blk;
    struct tx_front* tx;
  } u;
};

size_t xp_request_size(enum xp_payload p) {
  return p == XP_BLKIF ? sizeof(blkif_request_t) : sizeof(netif_tx_request_t);
}

size_t xp_response_size(enum xp_payload p) {
  return p == XP_BLKIF ? sizeof(blkif_response_t) : sizeof(netif_tx_response_t);
}

struct xp_front* xp_front_new(enum xp_payload p, void* page, size_t bytes) {
  struct xp_front* f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->payload = p;
  if (p == XP_BLKIF)
    f->u.blk = blk_front_new(page, bytes);
  else
    f->u.tx = tx_front_new(page, bytes);
  if (p == XP_BLKIF ? !f->u.blk : !f->u.tx) {
    free(f);
    return NULL;
  }
  return f;
}

void xp_front_free(struct xp_front* f) {
  if (!f) return;
  if (f->payload == XP_BLKIF)
    free(f->u.blk);
  else
    free(f->u.tx);
  free(f);
}

unsigned xp_front_ring_size(const struct xp_front* f) {
  return f->payload == XP_BLKIF ? RING_SIZE(&f->u.blk->ring) : RING_SIZE(&f->u.tx->ring);
}

uint64_t xp_front_errors(const struct xp_front* f) {
  return f->payload == XP_BLKIF ? f->u.blk->errors : f->u.tx->errors;
}

void xp_round_trips(struct xp_front* f, uint64_t n) {
  if (f->payload == XP_BLKIF)
    blk_round_trips(f->u.blk, n);
  else
    tx_round_trips(f->u.tx, n);
}

void xp_stream(struct xp_front* f, uint64_t n) {
  if (f->payload == XP_BLKIF)
    blk_stream(f->u.blk, n);
  else
    tx_stream(f->u.tx, n);
}

void xp_stream_one_thread(struct xp_front* f, uint64_t n) {
  if (f->payload == XP_BLKIF)
    blk_stream_one_thread(f->u.blk, n);
  else
    tx_stream_one_thread(f->u.tx, n);
}

uint64_t xp_back_spin(enum xp_payload p, void* page, size_t bytes, const int* stop) {
  return p == XP_BLKIF ? blk_back_spin(page, bytes, stop) : tx_back_spin(page, bytes, stop);
}

void xp_notify_stream(struct xp_front* f, uint64_t n, unsigned outstanding, int kick_fd, int wait_fd, uint64_t* kicks,
                      uint64_t* waits) {
  if (f->payload == XP_BLKIF)
    blk_notify_stream(f->u.blk, n, outstanding, kick_fd, wait_fd, kicks, waits);
  else
    tx_notify_stream(f->u.tx, n, outstanding, kick_fd, wait_fd, kicks, waits);
}

uint64_t xp_notify_back(enum xp_payload p, void* page, size_t bytes, int kick_fd, int wait_fd, const int* stop,
                        uint64_t* kicks, uint64_t* waits) {
  return p == XP_BLKIF ? blk_notify_back(page, bytes, kick_fd, wait_fd, stop, kicks, waits)
                       : tx_notify_back(page, bytes, kick_fd, wait_fd, stop, kicks, waits);
}

/* ---- Byte rings through the flex-ring functions --------------------------------- */

/* xs_wire.h has no flex-ring functions of its own; generate them for its 1024-byte
 * rings.  console.h generated xencons_* above. */
DEFINE_XEN_FLEX_RING(xenstore);

static unsigned char pattern_source[XP_PATTERN_SOURCE];

const unsigned char* xp_pattern_source(void) {
  if (pattern_source[1] == 0) /* pattern(1) = 7: filled once, before any thread starts */
    for (unsigned i = 0; i < XP_PATTERN_SOURCE; i++) pattern_source[i] = xp_pattern(i);
  return pattern_source;
}

/* The producer side of one byte ring: where its bytes and indices are. */
struct flex_view {
  unsigned char* buf;
  RING_IDX *prod, *cons;
  RING_IDX size;
};

static struct flex_view flex_view_of(enum xp_byte_ring r, void* intf) {
  struct flex_view v;
  if (r == XP_XENSTORE) {
    struct xenstore_domain_interface* x = intf;
    v.buf = (unsigned char*)x->req;
    v.prod = &x->req_prod;
    v.cons = &x->req_cons;
    v.size = XENSTORE_RING_SIZE;
  } else {
    struct xencons_interface* c = intf;
    v.buf = (unsigned char*)c->out;
    v.prod = &c->out_prod;
    v.cons = &c->out_cons;
    v.size = sizeof c->out;
  }
  return v;
}

/* One write call as a driver writes it with the flex functions: at most `len` bytes,
 * as many as fit.  Returns the bytes written. */
static inline size_t flex_write_some(enum xp_byte_ring r, struct flex_view v, const void* data, size_t len) {
  RING_IDX cons = *v.cons, prod = *v.prod;
  if (prod - cons > v.size) return 0; /* impossible indices: the C side just stops writing */
  xen_mb();                           /* write data only after reading cons (Linux xb_write: virt_mb) */
  RING_IDX queued = r == XP_XENSTORE ? xenstore_queued(prod, cons, v.size) : xencons_queued(prod, cons, v.size);
  size_t space = v.size - queued;
  if (len > space) len = space;
  if (len == 0) return 0;
  RING_IDX mprod = prod & (v.size - 1);
  RING_IDX mcons = cons & (v.size - 1);
  if (r == XP_XENSTORE)
    xenstore_write_packet(v.buf, data, len, &mprod, mcons, v.size);
  else
    xencons_write_packet(v.buf, data, len, &mprod, mcons, v.size);
  xen_wmb(); /* reader sees the data before the new prod */
  *v.prod = prod + (RING_IDX)len;
  return len;
}

void xp_flex_write(enum xp_byte_ring r, void* intf, uint64_t pos, uint64_t total, size_t chunk) {
  struct flex_view v = flex_view_of(r, intf);
  const unsigned char* src = xp_pattern_source();
  unsigned spins = 0;
  while (total) {
    size_t want = total < chunk ? (size_t)total : chunk;
    size_t n = flex_write_some(r, v, src + (pos & 255), want);
    if (n == 0) {
      xb_spin_relax(&spins);
      continue;
    }
    pos += n;
    total -= n;
  }
}

uint64_t xp_flex_read(enum xp_byte_ring r, void* intf, const int* stop, uint64_t* errors) {
  struct flex_view v = flex_view_of(r, intf);
  unsigned char buf[4096];
  uint64_t pos = 0;
  unsigned spins = 0;
  int last_look = 0; /* stop seen: one more look at prod, then done */
  for (;;) {
    RING_IDX cons = *v.cons, prod = *v.prod;
    xen_rmb(); /* read data only after reading prod (Linux xb_read: virt_rmb) */
    if (prod - cons > v.size) {
      ++*errors;
      return pos;
    }
    RING_IDX queued = r == XP_XENSTORE ? xenstore_queued(prod, cons, v.size) : xencons_queued(prod, cons, v.size);
    if (queued == 0) {
      if (last_look) return pos;
      last_look = xb_should_stop(stop);
      if (!last_look) xb_spin_relax(&spins);
      continue;
    }
    RING_IDX mcons = cons & (v.size - 1);
    if (r == XP_XENSTORE)
      xenstore_read_packet(buf, v.buf, queued, prod & (v.size - 1), &mcons, v.size);
    else
      xencons_read_packet(buf, v.buf, queued, prod & (v.size - 1), &mcons, v.size);
    xen_mb(); /* finish reading before the writer sees the space (Linux xb_read: virt_mb) */
    *v.cons = cons + queued;
    if (buf[0] != xp_pattern(pos) || buf[queued - 1] != xp_pattern(pos + queued - 1)) ++*errors;
    pos += queued;
  }
}
