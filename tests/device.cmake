# Device area: event channels, grants, fault injection, frontend/backend drivers.
xenbus_add_test(xenbus-evtchn-tests LABELS device SOURCES evtchn_test.cpp grant_test.cpp)

# The Xen adapters only run on a Xen host; here they must compile, link, and fail cleanly.
xenbus_add_test(xenbus-xen-adapter-tests LABELS device SOURCES xen_adapters_test.cpp)
target_link_libraries(xenbus-xen-adapter-tests PRIVATE xenevtchn xengnttab xenstore)

# Every sequence of the standard table, in-process and over xenbus-xenstored (libxenstore).
# (tools/ is configured after tests/, so name the program by its generator expression.)
if(XENBUS_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/xenstore.cmake)
  set(xenbus_xenstored_binary $<TARGET_FILE:xenbus-xenstored>)
else()
  set(xenbus_xenstored_binary $ENV{XENBUS_XENSTORED_BINARY})
endif()
xenbus_add_test(xenbus-device-tests LABELS device SOURCES device_test.cpp)
target_link_libraries(xenbus-device-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}"
  "DEVICE_ENVS=inproc_env,socket_env")
# The same sequences with our xenstore::client (a reader thread per connection): also run under TSan.
xenbus_add_test(xenbus-device-client-tests LABELS device-threads SOURCES device_test.cpp)  # matches -L threads and -L device
target_link_libraries(xenbus-device-client-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-client-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}"
  "DEVICE_ENVS=client_env")
if(XENBUS_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/xenstore.cmake)
  # The socket tests start the server program: build it with them.
  add_dependencies(xenbus-device-tests xenbus-xenstored)
  add_dependencies(xenbus-device-client-tests xenbus-xenstored)
endif()

# The fault-injection harness, and the drivers under every fault it injects.
xenbus_add_test(xenbus-faults-tests LABELS device SOURCES faults_test.cpp)
target_link_libraries(xenbus-faults-tests PRIVATE xenstore)
target_compile_definitions(xenbus-faults-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}")

xenbus_add_test(xenbus-negotiation-tests LABELS device SOURCES negotiation_test.cpp)

# The event-channel and grant concepts need no heap or exceptions (a kernel can model them).
xenbus_add_freestanding_check(xenbus-device-freestanding device_freestanding.cpp)

# Two threads on one event channel (lock-free pending/mask protocol), also under TSan.
xenbus_add_test(xenbus-evtchn-threads-tests LABELS device-threads SOURCES evtchn_threads_test.cpp)

# Drivers created on many threads at once (their instance counter), also under TSan.
xenbus_add_test(xenbus-device-threads-tests LABELS device-threads SOURCES device_threads_test.cpp)
target_link_libraries(xenbus-device-threads-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-threads-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}")

# The drivers over xenstore rings with a real ring reconnection (threads: also under TSan).
xenbus_add_test(xenbus-device-ring-tests LABELS device-threads SOURCES device_ring_test.cpp)
target_link_libraries(xenbus-device-ring-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-ring-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}")
