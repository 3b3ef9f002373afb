# Device services and the event loop (include/xenbus/hosted/device/service.hpp,
# posix/event_loop.hpp, posix/device/service_loop.hpp). Over our in-process store and over our
# xenstore server on a socket (client_store runs a reader thread): label device-threads, so
# they also run under TSan (-L threads) and with the device tests (-L device).
xenbus_add_test(xenbus-service-tests LABELS device-threads SOURCES service_test.cpp event_loop_test.cpp)
# The service is also instantiated over xen::xs_store (libxenstore), to compile and link.
target_link_libraries(xenbus-service-tests PRIVATE xenstore)
