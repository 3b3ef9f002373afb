# The xenstore client (include/xenbus/xenstore/client.hpp, transport.hpp, ring_transport.hpp).
# Every test runs the client's reader thread (and often a server thread): label threads.
find_package(Threads REQUIRED)
xenbus_add_test(xenbus-xsclient-tests LABELS threads SOURCES
  xsclient_test.cpp
  xsclient_ring_test.cpp
  xsclient_server_test.cpp)
target_link_libraries(xenbus-xsclient-tests PRIVATE Threads::Threads)
