# The xenstore client (include/xenbus/posix/xenstore/client.hpp, transport.hpp, ring_transport.hpp).
# Every test runs the client's reader thread (and often a server thread): label threads.
find_package(Threads REQUIRED)
xenbus_add_test(xenbus-xsclient-tests LABELS threads SOURCES
  xsclient_test.cpp
  xsclient_ring_test.cpp
  xsclient_hostile_test.cpp
  xsclient_server_test.cpp)
target_link_libraries(xenbus-xsclient-tests PRIVATE Threads::Threads)

# Next to Xen's own clients (Debian libxen-dev, xenstore-utils): libxenstore linked in, the
# xenstore-* tools run by popen, and the xenbus-xenstored program spawned. Not under TSan
# (libxenstore's own threads are not instrumented): label xsclient-interop.
find_library(XENBUS_LIBXENSTORE xenstore)
if(XENBUS_LIBXENSTORE AND XENBUS_BUILD_TOOLS)
  xenbus_add_test(xenbus-xsclient-interop-tests LABELS xsclient-interop SOURCES
    xsclient_interop_test.cpp)
  target_link_libraries(xenbus-xsclient-interop-tests PRIVATE ${XENBUS_LIBXENSTORE} Threads::Threads)
  # tools/ is added after tests/: a generator expression and a dependency reach it.
  target_compile_definitions(xenbus-xsclient-interop-tests PRIVATE
    XSCLIENT_XENSTORED="$<TARGET_FILE:xenbus-xenstored>")
  add_dependencies(xenbus-xsclient-interop-tests xenbus-xenstored)
else()
  message(STATUS "xenbus: libxenstore or tools missing: xsclient interop tests skipped")
endif()

# The same client run against Xen's oxenstored and C xenstored (started by the project's
# launcher tests/reference/xenstored.sh on private sockets; root needed, skipped with the
# reason otherwise) and against xenbus-xenstored: all must pass the same sequence.
if(XENBUS_BUILD_TOOLS)
  xenbus_add_program(xenbus-xsclient-check xsclient_check.cpp)
  target_link_libraries(xenbus-xsclient-check PRIVATE Threads::Threads)
  add_test(NAME "xsclient-check: xenbus-xenstored"
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/xsclient_against.sh
      $<TARGET_FILE:xenbus-xsclient-check> ours $<TARGET_FILE:xenbus-xenstored>)
  set_tests_properties("xsclient-check: xenbus-xenstored" PROPERTIES LABELS xsclient-interop TIMEOUT 60)
  foreach(ref IN ITEMS oxenstored cxenstored)
    add_test(NAME "xsclient-check: ${ref}"
      COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/xsclient_against.sh
        $<TARGET_FILE:xenbus-xsclient-check> ${ref} ${CMAKE_CURRENT_SOURCE_DIR}/reference/xenstored.sh)
    set_tests_properties("xsclient-check: ${ref}" PROPERTIES LABELS xenstore-differential
      SKIP_RETURN_CODE 77 RESOURCE_LOCK xenstore-reference TIMEOUT 60)
  endforeach()
endif()
