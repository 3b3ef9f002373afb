/* The C peer of the ring interop tests: ring.h's macros as Xen's own tools use them, with
 * the barriers of <xenctrl.h> (xen_mb = locked add on the stack, xen_rmb/xen_wmb = compiler
 * barriers on x86-64). Compiled as C. Deliberately plain C: this is the "unmodified peer". */
#include <xenctrl.h> /* xen_mb, xen_rmb, xen_wmb: must come before ring.h is used */

#include "ring_peer.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sched.h>
#include <unistd.h>

void xbt_c_front_attach(struct xbt_front_ring* r, void* shared, size_t bytes, RING_IDX start, int init) {
  struct xbt_sring* s = (struct xbt_sring*)shared;
  if (init) {
    SHARED_RING_INIT(s);
    s->req_prod = s->rsp_prod = start;
    s->req_event = s->rsp_event = start + 1;
  }
  FRONT_RING_ATTACH(r, s, start, bytes);
}

int xbt_c_front_produce(struct xbt_front_ring* r, uint32_t seq) {
  if (RING_FULL(r)) return 0;
  struct xbt_request* req = RING_GET_REQUEST(r, r->req_prod_pvt);
  xbt_fill(req, seq);
  r->req_prod_pvt++;
  return 1;
}

int xbt_c_front_push_notify(struct xbt_front_ring* r) {
  int notify;
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
  return notify;
}

int xbt_c_front_final_check(struct xbt_front_ring* r) {
  int work;
  RING_FINAL_CHECK_FOR_RESPONSES(r, work);
  return work != 0;
}

int xbt_c_front_take(struct xbt_front_ring* r, struct xbt_response* out) {
  if (!RING_HAS_UNCONSUMED_RESPONSES(r)) return 0;
  xen_rmb(); /* responses after rsp_prod, as Linux blkfront does */
  RING_COPY_RESPONSE(r, r->rsp_cons, out);
  r->rsp_cons++;
  return 1;
}

void xbt_c_back_attach(struct xbt_back_ring* r, void* shared, size_t bytes, RING_IDX start) {
  BACK_RING_ATTACH(r, (struct xbt_sring*)shared, start, bytes);
}

int xbt_c_back_take(struct xbt_back_ring* r, struct xbt_request* out) {
  if (!RING_HAS_UNCONSUMED_REQUESTS(r)) return 0;
  xen_rmb();
  RING_COPY_REQUEST(r, r->req_cons, out);
  r->req_cons++;
  return 1;
}

int xbt_c_back_respond(struct xbt_back_ring* r, const struct xbt_request* req) {
  struct xbt_response* rsp = RING_GET_RESPONSE(r, r->rsp_prod_pvt);
  rsp->id = req->id;
  rsp->seq = req->seq;
  rsp->sum = xbt_checksum(req);
  r->rsp_prod_pvt++;
  return 1;
}

int xbt_c_back_push_notify(struct xbt_back_ring* r) {
  int notify;
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify);
  return notify;
}

int xbt_c_back_final_check(struct xbt_back_ring* r) {
  int work;
  RING_FINAL_CHECK_FOR_REQUESTS(r, work);
  return work != 0;
}

static int kick(int fd, struct xbt_peer_stats* st) {
  uint64_t one = 1;
  st->notifications_sent++;
  return write(fd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -EIO;
}

/* Sleeps until the eventfd fires; a wait longer than hang_ms means a lost wakeup. */
static int wait_for(int fd, int hang_ms, struct xbt_peer_stats* st) {
  struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
  int n = poll(&p, 1, hang_ms);
  if (n == 0) return -ETIMEDOUT;
  if (n < 0) return -errno;
  uint64_t v;
  if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) return -EIO;
  st->wakeups++;
  return 0;
}

int xbt_c_back_serve(void* shared, size_t bytes, RING_IDX start, uint32_t n, int kick_fd, int wait_fd, int hang_ms,
                     struct xbt_peer_stats* st) {
  struct xbt_back_ring r;
  xbt_c_back_attach(&r, shared, bytes, start);
  while (st->messages < n) {
    struct xbt_request req;
    int did = 0;
    while (st->messages < n && xbt_c_back_take(&r, &req)) {
      xbt_c_back_respond(&r, &req);
      st->checksum += xbt_checksum(&req);
      st->messages++;
      did = 1;
    }
    if (did && xbt_c_back_push_notify(&r) && kick(kick_fd, st) != 0) return -EIO;
    if (st->messages >= n) break;
    if (!xbt_c_back_final_check(&r)) {
      int e = wait_for(wait_fd, hang_ms, st);
      if (e != 0) return e;
    }
  }
  return 0;
}

int xbt_c_front_run(void* shared, size_t bytes, RING_IDX start, int init, uint32_t n, uint32_t batch, uint32_t window,
                    int kick_fd, int wait_fd, int hang_ms, struct xbt_peer_stats* st) {
  struct xbt_front_ring r;
  uint32_t sent = 0;
  xbt_c_front_attach(&r, shared, bytes, start, init);
  if (window == 0 || window > RING_SIZE(&r)) window = RING_SIZE(&r);
  while (st->messages < n) {
    uint32_t b = 0;
    while (sent < n && b < batch && sent - st->messages < window && xbt_c_front_produce(&r, sent)) {
      sent++;
      b++;
    }
    if (b && xbt_c_front_push_notify(&r) && kick(kick_fd, st) != 0) return -EIO;
    struct xbt_response rsp;
    while (xbt_c_front_take(&r, &rsp)) {
      struct xbt_request expect;
      xbt_fill(&expect, (uint32_t)st->messages);
      if (rsp.seq != expect.seq || rsp.id != expect.id || rsp.sum != xbt_checksum(&expect)) return -EPROTO;
      st->checksum += rsp.sum;
      st->messages++;
    }
    if (st->messages >= n) break;
    /* Sleep only when nothing can be sent and no response is there. */
    if ((sent == n || sent - st->messages >= window) && !xbt_c_front_final_check(&r)) {
      int e = wait_for(wait_fd, hang_ms, st);
      if (e != 0) return e;
    }
  }
  return 0;
}

/* ---- Byte rings ------------------------------------------------------------------- */
#include <time.h>

/* One direction as a plain C driver sees it. The indices are plain loads and stores
 * ordered by xenctrl.h's barriers, as in Linux's xenbus and console drivers. */
struct c_dir {
  unsigned char* buf;
  uint32_t size;
  uint32_t* cons;
  uint32_t* prod;
};

/* Writes what fits of len bytes; -EIO on an impossible index pair. */
static long c_dir_write(struct c_dir* d, const unsigned char* src, uint32_t len, int flex) {
  uint32_t cons = *(volatile uint32_t*)d->cons, prod = *(volatile uint32_t*)d->prod;
  xen_mb(); /* read cons before writing over the space it frees */
  if (prod - cons > d->size) return -EIO;
  uint32_t room = d->size - (flex ? xen_9pfs_queued(prod, cons, d->size) : prod - cons);
  if (len > room) len = room;
  if (len == 0) return 0;
  if (flex) {
    RING_IDX mprod = xen_9pfs_mask(prod, d->size), mcons = xen_9pfs_mask(cons, d->size);
    xen_9pfs_write_packet(d->buf, src, len, &mprod, mcons, d->size);
  } else {
    uint32_t off = prod & (d->size - 1), first = d->size - off < len ? d->size - off : len;
    memcpy(d->buf + off, src, first);
    memcpy(d->buf, src + first, len - first);
  }
  xen_wmb(); /* data before the producer index */
  *(volatile uint32_t*)d->prod = prod + len;
  return len;
}

static long c_dir_read(struct c_dir* d, unsigned char* dst, uint32_t len, int flex) {
  uint32_t cons = *(volatile uint32_t*)d->cons, prod = *(volatile uint32_t*)d->prod;
  xen_rmb(); /* indices before data */
  if (prod - cons > d->size) return -EIO;
  uint32_t avail = flex ? xen_9pfs_queued(prod, cons, d->size) : prod - cons;
  if (len > avail) len = avail;
  if (len == 0) return 0;
  if (flex) {
    RING_IDX mprod = xen_9pfs_mask(prod, d->size), mcons = xen_9pfs_mask(cons, d->size);
    xen_9pfs_read_packet(dst, d->buf, len, mprod, &mcons, d->size);
  } else {
    uint32_t off = cons & (d->size - 1), first = d->size - off < len ? d->size - off : len;
    memcpy(dst, d->buf + off, first);
    memcpy(dst + first, d->buf, len - first);
  }
  xen_mb(); /* finish reading before the space is handed back */
  *(volatile uint32_t*)d->cons = cons + len;
  return len;
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int xbt_c_byte_stream(enum xbt_byte_ring which, void* page, void* data, unsigned order, uint64_t n, uint32_t max_chunk,
                      int hang_ms) {
  struct c_dir tx, rx;
  int flex = 0;
  switch (which) {
    case XBT_XS_GUEST:
    case XBT_XS_SERVER: {
      struct xenstore_domain_interface* x = page;
      struct c_dir req = {(unsigned char*)x->req, XENSTORE_RING_SIZE, &x->req_cons, &x->req_prod};
      struct c_dir rsp = {(unsigned char*)x->rsp, XENSTORE_RING_SIZE, &x->rsp_cons, &x->rsp_prod};
      tx = which == XBT_XS_GUEST ? req : rsp;
      rx = which == XBT_XS_GUEST ? rsp : req;
      break;
    }
    case XBT_CONS_GUEST:
    case XBT_CONS_BACK: {
      struct xencons_interface* c = page;
      struct c_dir in = {(unsigned char*)c->in, sizeof c->in, &c->in_cons, &c->in_prod};
      struct c_dir out = {(unsigned char*)c->out, sizeof c->out, &c->out_cons, &c->out_prod};
      tx = which == XBT_CONS_GUEST ? out : in;
      rx = which == XBT_CONS_GUEST ? in : out;
      break;
    }
    default: {
      struct xen_9pfs_data_intf* f = page;
      uint32_t size = (uint32_t)XEN_FLEX_RING_SIZE(order);
      struct c_dir in = {(unsigned char*)data, size, &f->in_cons, &f->in_prod};
      struct c_dir out = {(unsigned char*)data + size, size, &f->out_cons, &f->out_prod};
      tx = which == XBT_FLEX_FRONT ? out : in;
      rx = which == XBT_FLEX_FRONT ? in : out;
      flex = 1;
      break;
    }
  }
  unsigned char chunk[4096];
  uint64_t sent = 0, got = 0, step = 0;
  long last_progress = now_ms();
  if (max_chunk > sizeof chunk) max_chunk = sizeof chunk;
  while (sent < n || got < n) {
    int progress = 0;
    ++step;
    if (sent < n) {
      uint32_t want = 1 + (uint32_t)((step * 7919u) % max_chunk);
      if (want > n - sent) want = (uint32_t)(n - sent);
      for (uint32_t i = 0; i < want; ++i) chunk[i] = xbt_stream_byte(sent + i);
      long w = c_dir_write(&tx, chunk, want, flex);
      if (w < 0) return (int)w;
      sent += (uint64_t)w;
      progress |= w > 0;
    }
    if (got < n) {
      uint32_t want = 1 + (uint32_t)((step * 104729u) % max_chunk);
      if (want > n - got) want = (uint32_t)(n - got);
      long r = c_dir_read(&rx, chunk, want, flex);
      if (r < 0) return (int)r;
      for (long i = 0; i < r; ++i)
        if (chunk[i] != xbt_stream_byte(got + (uint64_t)i)) return -EPROTO;
      got += (uint64_t)r;
      progress |= r > 0;
    }
    if (progress) {
      last_progress = now_ms();
    } else {
      if (now_ms() - last_progress > hang_ms) return -ETIMEDOUT;
      sched_yield();
    }
  }
  return 0;
}
