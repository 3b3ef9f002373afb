// Compile-time proof that sring<Req, Rsp> is DEFINE_RING_TYPES' layout, checked against the
// real Xen headers, and that ring_size() is __CONST_RING_SIZE for 1..16 pages.
#include <xenbus/ring/request_ring.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/vscsiif.h>
#include <xen/io/usbif.h>
#include <xen/io/pvcalls.h>
#include <xen/io/displif.h>
#include <xen/io/sndif.h>
#include <xen/io/cameraif.h>
}

namespace {

// Each check names the C ring tag so a failure says which protocol's layout drifted.
#define XENBUS_CHECK_RING_LAYOUT(tag, req_t, rsp_t)                                                                  \
  using tag##_ours = xenbus::sring<req_t, rsp_t>;                                                                    \
  static_assert(sizeof(tag##_ours) == sizeof(struct tag##_sring), #tag ": sring size");                              \
  static_assert(alignof(tag##_ours) == alignof(struct tag##_sring), #tag ": sring align");                           \
  static_assert(sizeof(xenbus::sring_entry<req_t, rsp_t>) == sizeof(union tag##_sring_entry), #tag ": slot size");   \
  static_assert(offsetof(tag##_ours, req_prod) == offsetof(struct tag##_sring, req_prod));                           \
  static_assert(offsetof(tag##_ours, req_event) == offsetof(struct tag##_sring, req_event));                         \
  static_assert(offsetof(tag##_ours, rsp_prod) == offsetof(struct tag##_sring, rsp_prod));                           \
  static_assert(offsetof(tag##_ours, rsp_event) == offsetof(struct tag##_sring, rsp_event));                         \
  static_assert(offsetof(tag##_ours, pvt) == offsetof(struct tag##_sring, pvt));                                     \
  static_assert(offsetof(tag##_ours, pad) == offsetof(struct tag##_sring, __pad));                                   \
  static_assert(offsetof(tag##_ours, ring) == offsetof(struct tag##_sring, ring));                                   \
  static_assert(xenbus::sring_header_bytes<req_t, rsp_t> == 64, #tag ": header is 64 bytes");                        \
  static_assert(xenbus::ring_size<req_t, rsp_t>(XEN_PAGE_SIZE_CHECK) == __CONST_RING_SIZE(tag, XEN_PAGE_SIZE_CHECK), \
                #tag ": one-page ring size");                                                                        \
  static_assert(xenbus::ring_size_for_order<req_t, rsp_t>(1) == __CONST_RING_SIZE(tag, 2 * XEN_PAGE_SIZE_CHECK));    \
  static_assert(xenbus::ring_size_for_order<req_t, rsp_t>(2) == __CONST_RING_SIZE(tag, 4 * XEN_PAGE_SIZE_CHECK));    \
  static_assert(xenbus::ring_size_for_order<req_t, rsp_t>(3) == __CONST_RING_SIZE(tag, 8 * XEN_PAGE_SIZE_CHECK));    \
  static_assert(xenbus::ring_size_for_order<req_t, rsp_t>(4) == __CONST_RING_SIZE(tag, 16 * XEN_PAGE_SIZE_CHECK));   \
  static_assert(xenbus::ring_size_for_order<req_t, rsp_t>(0) == __CONST_RING_SIZE(tag, XEN_PAGE_SIZE_CHECK))

#define XEN_PAGE_SIZE_CHECK 4096

XENBUS_CHECK_RING_LAYOUT(blkif, struct blkif_request, struct blkif_response);
XENBUS_CHECK_RING_LAYOUT(netif_tx, struct netif_tx_request, struct netif_tx_response);
XENBUS_CHECK_RING_LAYOUT(netif_rx, struct netif_rx_request, struct netif_rx_response);
XENBUS_CHECK_RING_LAYOUT(xen_netif_ctrl, struct xen_netif_ctrl_request, struct xen_netif_ctrl_response);
XENBUS_CHECK_RING_LAYOUT(vscsiif, struct vscsiif_request, struct vscsiif_response);
XENBUS_CHECK_RING_LAYOUT(usbif_urb, struct usbif_urb_request, struct usbif_urb_response);
XENBUS_CHECK_RING_LAYOUT(usbif_conn, struct usbif_conn_request, struct usbif_conn_response);
XENBUS_CHECK_RING_LAYOUT(xen_pvcalls, struct xen_pvcalls_request, struct xen_pvcalls_response);
XENBUS_CHECK_RING_LAYOUT(xen_displif, struct xendispl_req, struct xendispl_resp);
XENBUS_CHECK_RING_LAYOUT(xen_sndif, struct xensnd_req, struct xensnd_resp);
XENBUS_CHECK_RING_LAYOUT(xen_cameraif, struct xencamera_req, struct xencamera_resp);

// The sizes every PV driver knows, spelled out so a wrong formula cannot pass by agreeing
// with itself: blkif 32 slots, netif tx/rx 256 slots on one page.
static_assert(xenbus::ring_size<blkif_request, blkif_response>(4096) == 32);
static_assert(xenbus::ring_size<netif_tx_request, netif_tx_response>(4096) == 256);
static_assert(xenbus::ring_size<netif_rx_request, netif_rx_response>(4096) == 256);
static_assert(xenbus::ring_size_for_order<blkif_request, blkif_response>(4) == 512);
static_assert(xenbus::ring_size<blkif_request, blkif_response>(64) == 0);
static_assert(xenbus::round_down_pow2(0) == 0 && xenbus::round_down_pow2(1) == 1 && xenbus::round_down_pow2(63) == 32 &&
              xenbus::round_down_pow2(0xffffffffu) == 0x80000000u);

}  // namespace

TEST_CASE("ring layouts match DEFINE_RING_TYPES for the real Xen protocols") {
  // The claims are the static_asserts above; this case only records in CTest that the
  // translation unit holding them was built.
  CHECK(xenbus::ring_size<blkif_request, blkif_response>(4096) == __CONST_RING_SIZE(blkif, 4096));
}
