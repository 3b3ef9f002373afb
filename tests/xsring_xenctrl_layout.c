/* The facts <xenbus/xen/xenstored.hpp> relies on about xc_domaininfo_t, taken from <xenctrl.h> itself (C++ in strict
 * mode cannot include it): the offsets of `domain` and `flags`, the size, and two XEN_DOMINF_* bits. */
#include <stddef.h>
#include <xenctrl.h>

size_t xsring_xc_domaininfo_size(void) { return sizeof(xc_domaininfo_t); }
size_t xsring_xc_domain_offset(void) { return offsetof(xc_domaininfo_t, domain); }
size_t xsring_xc_domain_size(void) { return sizeof(((xc_domaininfo_t*)0)->domain); }
size_t xsring_xc_flags_offset(void) { return offsetof(xc_domaininfo_t, flags); }
size_t xsring_xc_flags_size(void) { return sizeof(((xc_domaininfo_t*)0)->flags); }
unsigned xsring_xen_dominf_dying(void) { return XEN_DOMINF_dying; }
unsigned xsring_xen_dominf_shutdown(void) { return XEN_DOMINF_shutdown; }
