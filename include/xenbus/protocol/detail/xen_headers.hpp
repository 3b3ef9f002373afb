// [freestanding] Includes the real Xen public headers for layout checks, where libxen-dev provides them.
#pragma once

// The checks need Debian's libxen-dev; a freestanding build may lack it.
#if defined(__has_include)
#if __has_include(<xen/io/xenbus.h>)
#define XENBUS_HAVE_XEN_HEADERS 1
extern "C" {
#include <xen/io/xenbus.h>
}
#endif
#endif
