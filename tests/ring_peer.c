/* The C peer of the ring interop tests: ring.h's macros as Xen's own tools use them, with
 * the barriers of <xenctrl.h> (xen_mb = locked add on the stack, xen_rmb/xen_wmb = compiler
 * barriers on x86-64). Compiled as C. Deliberately plain C: this is the "unmodified peer". */
#include <xenctrl.h> /* xen_mb, xen_rmb, xen_wmb: must come before ring.h is used */

#include "ring_peer.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
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

int xbt_c_back_serve(void* shared, size_t bytes, RING_IDX start, uint32_t n, int kick_fd,
                     int wait_fd, int hang_ms, struct xbt_peer_stats* st) {
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

int xbt_c_front_run(void* shared, size_t bytes, RING_IDX start, int init, uint32_t n,
                    uint32_t batch, uint32_t window, int kick_fd, int wait_fd, int hang_ms,
                    struct xbt_peer_stats* st) {
  struct xbt_front_ring r;
  uint32_t sent = 0;
  xbt_c_front_attach(&r, shared, bytes, start, init);
  if (window == 0 || window > RING_SIZE(&r)) window = RING_SIZE(&r);
  while (st->messages < n) {
    uint32_t b = 0;
    while (sent < n && b < batch && sent - st->messages < window &&
           xbt_c_front_produce(&r, sent)) {
      sent++;
      b++;
    }
    if (b && xbt_c_front_push_notify(&r) && kick(kick_fd, st) != 0) return -EIO;
    struct xbt_response rsp;
    while (xbt_c_front_take(&r, &rsp)) {
      struct xbt_request expect;
      xbt_fill(&expect, (uint32_t)st->messages);
      if (rsp.seq != expect.seq || rsp.id != expect.id || rsp.sum != xbt_checksum(&expect))
        return -EPROTO;
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
