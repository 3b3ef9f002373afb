# Shared rings: request/response rings, byte rings, interop with the C macros of ring.h.

# The C peer: ring.h's macros with xenctrl.h's barriers, compiled as C with its own
# (non -Werror) warnings, since the macros themselves trip -Wconversion and -Wpedantic.
add_library(xenbus_ring_c_peer STATIC ring_peer.c)
set_target_properties(xenbus_ring_c_peer PROPERTIES C_STANDARD 11 C_EXTENSIONS ON)
target_compile_options(xenbus_ring_c_peer PRIVATE -Wall -Wextra)
if(XENBUS_SANITIZE)
  target_compile_options(xenbus_ring_c_peer PRIVATE -fsanitize=${XENBUS_SANITIZE} -fno-omit-frame-pointer)
endif()

xenbus_add_test(xenbus-ring-tests LABELS ring
  SOURCES ring_test.cpp ring_layout_test.cpp ring_interop_test.cpp byte_ring_test.cpp
    ring_wait_test.cpp)
target_link_libraries(xenbus-ring-tests PRIVATE xenbus_ring_c_peer)

# Ours-vs-ours two-thread checksum stress, also run under ThreadSanitizer (label threads).
# The C peer stays out of this binary: its plain accesses ordered by asm barriers are
# invisible to TSan and would be reported as races.
# One label only: xenbus_add_test passes LABELS through doctest_discover_tests, which
# flattens a list of several labels into bad property pairs.
xenbus_add_test(xenbus-ring-threads-tests LABELS threads SOURCES ring_stress_test.cpp)

# The ring headers need no heap, exceptions or RTTI: the link of this program proves it.
xenbus_add_freestanding_check(xenbus-ring-freestanding ring_freestanding.cpp)

# Compile-fail: a message that is not plain bytes cannot travel in a ring slot. Uses the
# generic checker of tests/compile_fail (the case must fail naming the concept; the control
# must compile).
foreach(case IN ITEMS "ring-message-control;ring_message_control.cpp;"
                      "ring-message-not-plain;ring_message_not_plain.cpp;ring_message")
  list(GET case 0 name)
  list(GET case 1 source)
  list(GET case 2 expect)
  add_test(NAME xenbus-compile-${name}
    COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DINCLUDE=${PROJECT_SOURCE_DIR}/include
            -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/${source} "-DEXPECT=${expect}"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/check.cmake)
  set_tests_properties(xenbus-compile-${name} PROPERTIES LABELS ring TIMEOUT 120)
endforeach()
