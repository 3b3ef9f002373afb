# xenbus-xenstored: the in-memory store served on a unix socket (a daemon: sbin, section 8).
xenbus_add_program(xenbus-xenstored xenbus_xenstored.cpp)
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
