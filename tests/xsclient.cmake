# The xenstore client (include/xenbus/xenstore/client.hpp, transport.hpp, ring_transport.hpp).
find_library(XENBUS_LIBXENSTORE xenstore)
xenbus_add_test(xenbus-xsclient-tests LABELS threads
  SOURCES xsclient_test.cpp xsclient_ring_test.cpp)
