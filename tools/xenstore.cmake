# xenbus-xenstored: the in-memory store served on a unix socket and, in a Xen dom0, on the
# domains' rings (a daemon: sbin, section 8). It links Xen's libraries (libxen-dev); off Xen it
# opens none of them and serves the socket alone.
xenbus_add_program(xenbus-xenstored xenbus_xenstored.cpp)
target_link_libraries(xenbus-xenstored PRIVATE xenctrl xenforeignmemory xengnttab xenevtchn)
xenbus_install_program(xenbus-xenstored DIR ${CMAKE_INSTALL_SBINDIR} SECTION 8)
if(XENBUS_BUILD_TESTS)
  # Numbers on the command line follow xenstore/decimal.hpp's strict rules: exit 2 on "007", "+5", "5x".
  foreach(bad "watches=007" "watches=+5" "watches=5x" "watches=")
    # (an accepted value would go on to fail on the socket path, with another message)
    add_test(NAME "xenbus-xenstored refuses --limit ${bad}"
      COMMAND xenbus-xenstored --socket /nonexistent/xenbus-test/socket --limit ${bad})
    set_tests_properties("xenbus-xenstored refuses --limit ${bad}" PROPERTIES LABELS xenstore
      PASS_REGULAR_EXPRESSION "bad --limit")
  endforeach()
endif()
