# Device area: event channels, grants, fault injection, frontend/backend drivers.
xenbus_add_test(xenbus-evtchn-tests LABELS device SOURCES evtchn_test.cpp grant_test.cpp)

# The Xen adapters only run on a Xen host; here they must compile, link, and fail cleanly.
xenbus_add_test(xenbus-xen-adapter-tests LABELS device SOURCES xen_adapters_test.cpp)
target_link_libraries(xenbus-xen-adapter-tests PRIVATE xenevtchn xengnttab)

# Every sequence of the standard table, in-process and over xenbus-xenstored (libxenstore).
# (tools/ is configured after tests/, so name the program by its generator expression.)
if(EXISTS ${PROJECT_SOURCE_DIR}/tools/xenstore.cmake)
  set(xenbus_xenstored_binary $<TARGET_FILE:xenbus-xenstored>)
else()
  set(xenbus_xenstored_binary $ENV{XENBUS_XENSTORED_BINARY})
endif()
xenbus_add_test(xenbus-device-tests LABELS device SOURCES device_test.cpp)
target_link_libraries(xenbus-device-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}")

# The fault-injection harness, and the drivers under every fault it injects.
xenbus_add_test(xenbus-faults-tests LABELS device SOURCES faults_test.cpp)
target_link_libraries(xenbus-faults-tests PRIVATE xenstore)
target_compile_definitions(xenbus-faults-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}")
