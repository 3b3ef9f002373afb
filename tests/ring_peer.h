/* The C side of the ring interop tests: a test ring type made with DEFINE_RING_TYPES and a
 * peer that drives it with the ring.h macros only, with xenctrl.h's barriers. */
#ifndef XENBUS_TESTS_RING_PEER_H
#define XENBUS_TESTS_RING_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A request carries a payload; the response echoes its id and seq with a checksum. */
struct xbt_request {
  uint64_t id;
  uint32_t seq;
  uint32_t len;
  uint8_t data[48];
};
struct xbt_response {
  uint64_t id;
  uint32_t seq;
  uint32_t sum; /* xbt_checksum of the request */
};

DEFINE_RING_TYPES(xbt, struct xbt_request, struct xbt_response);

/* The checksum both sides compute over a request (Fletcher-like, order sensitive). */
static inline uint32_t xbt_checksum(const struct xbt_request* r) {
  uint32_t a = 1u + r->seq, b = (uint32_t)r->id;
  uint32_t n = r->len <= sizeof r->data ? r->len : (uint32_t)sizeof r->data;
  for (uint32_t i = 0; i < n; ++i) {
    a += r->data[i];
    b += a;
  }
  return (b << 16) ^ a ^ r->len;
}
/* Deterministic request contents for message number seq. */
static inline void xbt_fill(struct xbt_request* r, uint32_t seq) {
  r->id = (uint64_t)seq * 0x9e3779b97f4a7c15ull;
  r->seq = seq;
  r->len = seq % (sizeof r->data + 1);
  for (uint32_t i = 0; i < sizeof r->data; ++i) r->data[i] = (uint8_t)(seq * 31u + i);
}

/* Thin wrappers, one macro each, so a C++ test can interleave C and C++ steps. */
void xbt_c_front_attach(struct xbt_front_ring* r, void* shared, size_t bytes, RING_IDX start, int init);
int xbt_c_front_produce(struct xbt_front_ring* r, uint32_t seq); /* 0 if full */
int xbt_c_front_push_notify(struct xbt_front_ring* r);
int xbt_c_front_final_check(struct xbt_front_ring* r);
int xbt_c_front_take(struct xbt_front_ring* r, struct xbt_response* out); /* 0 if none */
void xbt_c_back_attach(struct xbt_back_ring* r, void* shared, size_t bytes, RING_IDX start);
int xbt_c_back_take(struct xbt_back_ring* r, struct xbt_request* out); /* 0 if none */
int xbt_c_back_respond(struct xbt_back_ring* r, const struct xbt_request* req);
int xbt_c_back_push_notify(struct xbt_back_ring* r);
int xbt_c_back_final_check(struct xbt_back_ring* r);

/* Whole peers. Each sleeps on wait_fd (an eventfd) after the final check, and writes to
 * kick_fd when the macros say the other end wants a notification. A sleep longer than
 * hang_ms is reported as a lost wakeup (-ETIMEDOUT) instead of hanging the test.
 * Return 0 on success or a negative errno-style code. */
struct xbt_peer_stats {
  uint64_t messages;
  uint64_t notifications_sent;
  uint64_t wakeups;
  uint64_t checksum; /* sum of the response checksums seen or produced */
};
/* Backend: serve n requests. */
int xbt_c_back_serve(void* shared, size_t bytes, RING_IDX start, uint32_t n, int kick_fd, int wait_fd, int hang_ms,
                     struct xbt_peer_stats* stats);
/* Frontend: attach at start (initialising the ring first if init), send n requests in
 * batches of up to batch with at most window outstanding (0: the ring size; 1: strict
 * request/response ping-pong), check every response. */
int xbt_c_front_run(void* shared, size_t bytes, RING_IDX start, int init, uint32_t n, uint32_t batch, uint32_t window,
                    int kick_fd, int wait_fd, int hang_ms, struct xbt_peer_stats* stats);

#ifdef __cplusplus
}
#endif

/* ---- Byte rings, C side ----------------------------------------------------------- */
#include <xen/io/xs_wire.h>
#include <xen/io/console.h>
#include <xen/io/9pfs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The byte at stream offset i of a test stream: both sides generate and check it. */
static inline uint8_t xbt_stream_byte(uint64_t i) {
  uint64_t x = i * 0x9e3779b97f4a7c15ull;
  return (uint8_t)((x >> 29) ^ (x >> 47) ^ i);
}

/* Which ring and which end the C side plays. */
enum xbt_byte_ring {
  XBT_XS_GUEST,   /* xenstore: writes req, reads rsp (like a guest kernel) */
  XBT_XS_SERVER,  /* xenstore: reads req, writes rsp (like xenstored) */
  XBT_CONS_GUEST, /* console: writes out, reads in */
  XBT_CONS_BACK,  /* console: reads out, writes in */
  XBT_FLEX_FRONT, /* flex (9pfs layout): writes out, reads in, with xen_9pfs_*() */
  XBT_FLEX_BACK   /* flex: reads out, writes in */
};

/* Streams n bytes (xbt_stream_byte(0..n-1)) out of the ring end's writing direction in
 * chunks of 1..max_chunk, and checks n bytes arriving on its reading direction, polling.
 * `page` is the shared page (xenstore, console or the flex indexes page); `data` is the
 * flex data area (2 * XEN_FLEX_RING_SIZE(order)) for flex rings. Returns 0, -EPROTO on a
 * wrong byte, -EIO when the peer's indices are inconsistent, -ETIMEDOUT after hang_ms of
 * no progress. */
int xbt_c_byte_stream(enum xbt_byte_ring which, void* page, void* data, unsigned order, uint64_t n, uint32_t max_chunk,
                      int hang_ms);

#ifdef __cplusplus
}
#endif

#endif
