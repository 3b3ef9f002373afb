# Xenstore area: wire codec, in-memory store, socket server, interop with Xen's own tools.
xenbus_add_freestanding_check(xenbus-xenstore-freestanding xenstore_freestanding.cpp)

xenbus_add_test(xenbus-xenstore-tests LABELS xenstore SOURCES
  xenstore_wire_test.cpp
  xenstore_store_test.cpp)
