/* The C macros' side of xenbus-xenlab-peer's ring runs: bench/xen_peer.c as it is (the
 * ring.h macros in their standard usage, compiled as C), with its kicks and waits sent to
 * the lab's event channel instead of eventfds.  peer_rings.cpp defines the two hooks. */
void xenlab_kick(int channel);
void xenlab_wait(int channel);
#define XP_KICK(channel) xenlab_kick(channel)
#define XP_WAIT(channel) xenlab_wait(channel)

#include "xen_peer.c"
