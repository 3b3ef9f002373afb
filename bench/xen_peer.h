/* The C peer of xenbus-bench: <xen/io/ring.h> macros and DEFINE_XEN_FLEX_RING, compiled as C. */
#ifndef XENBUS_BENCH_XEN_PEER_H
#define XENBUS_BENCH_XEN_PEER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Everything behind these functions is written the way a C driver writes it: the
 * request/response rings through the ring.h macros on the real blkif and netif-tx ring
 * types, the byte rings through the DEFINE_XEN_FLEX_RING functions, with the barriers of
 * Xen's <xenctrl.h> (xen_mb() a locked add on the stack, xen_rmb()/xen_wmb() compiler
 * barriers on x86-64).  Whole loops live here, so that the compiler sees the macros
 * inline exactly as it would in a driver; the C++ side only calls a loop and reads its
 * result.
 */

/* The two payloads: a blkif request (112 bytes) and a netif tx request (12 bytes). */
enum xp_payload { XP_BLKIF = 0, XP_NETIF_TX = 1 };

/* Sizes of the payloads' request and response structs, for the other implementations. */
size_t xp_request_size(enum xp_payload p);
size_t xp_response_size(enum xp_payload p);

/* A frontend: the front ring's private state plus the request sequence number. */
struct xp_front;

/* Initialises the shared ring (SHARED_RING_INIT) on `bytes` bytes at `page` and attaches
 * a front ring to it (FRONT_RING_INIT).  Returns NULL if out of memory. */
struct xp_front* xp_front_new(enum xp_payload p, void* page, size_t bytes);
void xp_front_free(struct xp_front* f);
/* Slots in the ring (RING_SIZE). */
unsigned xp_front_ring_size(const struct xp_front* f);
/* Responses that had a wrong id or a producer index that ran ahead (must stay 0). */
uint64_t xp_front_errors(const struct xp_front* f);

/* Round trip: n times, one request pushed (RING_PUSH_REQUESTS), then spin until its
 * response arrives.  No notifications. */
void xp_round_trips(struct xp_front* f, uint64_t n);

/* Streaming: n requests, keeping the ring full; spin when there is nothing to do. */
void xp_stream(struct xp_front* f, uint64_t n);

/* Streaming with both ends in this thread, batch by batch: the instructions the macros
 * spend per request, with no cache line moving between CPUs. */
void xp_stream_one_thread(struct xp_front* f, uint64_t n);

/* Backend for both: attaches a back ring (BACK_RING_INIT) and echoes every request until
 * *stop is set, spinning when idle.  Returns the number of errors seen. */
uint64_t xp_back_spin(enum xp_payload p, void* page, size_t bytes, const int* stop);

/* Notification-driven stream, the macros' standard usage: n requests with at most
 * `outstanding` in flight; RING_PUSH_REQUESTS_AND_CHECK_NOTIFY after each batch, kick
 * `kick_fd` when it says so; when no response is there, RING_FINAL_CHECK_FOR_RESPONSES
 * and block on `wait_fd`.  Adds the kicks sent and the blocking waits to the counters. */
void xp_notify_stream(struct xp_front* f, uint64_t n, unsigned outstanding, int kick_fd, int wait_fd, uint64_t* kicks,
                      uint64_t* waits);

/* Its backend: echoes each batch, RING_PUSH_RESPONSES_AND_CHECK_NOTIFY, kicks `kick_fd`
 * when told; when idle, RING_FINAL_CHECK_FOR_REQUESTS and blocks on `wait_fd`.  Returns
 * when *stop is set and it has no work.  Adds to the counters; returns the errors seen. */
uint64_t xp_notify_back(enum xp_payload p, void* page, size_t bytes, int kick_fd, int wait_fd, const int* stop,
                        uint64_t* kicks, uint64_t* waits);

/* Byte rings through the DEFINE_XEN_FLEX_RING functions, used as Linux's xenbus_comms.c
 * uses its rings (xen_rmb after reading the producer, xen_mb before reading the consumer
 * index's space and before releasing consumed bytes, xen_wmb before publishing).
 * `ring` is XP_XENSTORE (the guest's request ring of struct xenstore_domain_interface)
 * or XP_CONSOLE (the guest's output ring of struct xencons_interface). */
enum xp_byte_ring { XP_XENSTORE = 0, XP_CONSOLE = 1 };

/* Writes `total` bytes of the benchmark pattern starting at stream offset `pos`, in
 * writes of at most `chunk` bytes, spinning while the ring is full. */
void xp_flex_write(enum xp_byte_ring r, void* intf, uint64_t pos, uint64_t total, size_t chunk);

/* Reads until *stop is set and the ring is empty; checks the pattern.  Returns the bytes
 * read; *errors counts pattern mismatches and impossible indices. */
uint64_t xp_flex_read(enum xp_byte_ring r, void* intf, const int* stop, uint64_t* errors);

/* The pattern byte at stream offset `pos` (shared with the C++ implementations).  Its
 * period is 256, so a writer copies from xp_pattern_source() + pos % 256. */
static inline unsigned char xp_pattern(uint64_t pos) { return (unsigned char)(pos * 7u); }
enum { XP_PATTERN_SOURCE = 256 + 4096 };
/* XP_PATTERN_SOURCE bytes of the pattern from offset 0. */
const unsigned char* xp_pattern_source(void);

#ifdef __cplusplus
}
#endif

#endif
