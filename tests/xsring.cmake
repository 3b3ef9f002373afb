# xenbus-xenstored as dom0's xenstored: rings served beside the socket, in-process on a
# simulated machine; the Xen adapters' layout facts; the daemon's launch conventions.

# One guest ring and the store, no threads: hostile indices and framing.
xenbus_add_test(xenbus-xsring-tests LABELS xenstore SOURCES xsring_connection_test.cpp)

# The ring service in a server's loop, guests on a posix::machine, libxenstore as the
# toolstack (also under ThreadSanitizer: label threads).
xenbus_add_test(xenbus-xsring-service-tests LABELS xenstore threads SOURCES xsring_service_test.cpp)
target_link_libraries(xenbus-xsring-service-tests PRIVATE xenstore Threads::Threads)

# The Xen adapters of <xenbus/xen/xenstored.hpp>: the fields read from xc_domaininfo_t checked
# against <xenctrl.h> (compiled as C), and off Xen every open fails cleanly.
xenbus_add_test(xenbus-xsring-xen-tests LABELS device SOURCES xsring_xen_test.cpp xsring_xenctrl_layout.c)
target_link_libraries(xenbus-xsring-xen-tests PRIVATE xenctrl xenforeignmemory xengnttab xenevtchn)

# The daemon's launch conventions: forks once ready (exit 0) or fails in the parent (exit 1),
# --pid-file, the socket path libxenstore opens, --no-fork, --log-file.
if(XENBUS_BUILD_TOOLS)
  find_program(XENBUS_XENSTORE_READ xenstore-read)
  if(XENBUS_XENSTORE_READ)
    add_test(NAME "xenbus-xenstored daemon: fork, pid file, socket path, failures"
      COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/xsring_daemon.sh $<TARGET_FILE:xenbus-xenstored>)
    set_tests_properties("xenbus-xenstored daemon: fork, pid file, socket path, failures" PROPERTIES
      LABELS xenstore-interop TIMEOUT 60)
  endif()
endif()

# The lab's probes of dom0's xenstored (tests/xenlab/scenarios/7x-xenstored*.sh): the hostile
# guest program in a domU, the hostile guest kernel's page writes and dom0's timings in dom0.
xenbus_add_program(xenbus-xsring-lab xsring_lab.cpp)
target_link_libraries(xenbus-xsring-lab PRIVATE xenctrl xenforeignmemory xengnttab xenevtchn Threads::Threads)
