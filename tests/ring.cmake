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
  SOURCES ring_test.cpp ring_layout_test.cpp ring_interop_test.cpp)
target_link_libraries(xenbus-ring-tests PRIVATE xenbus_ring_c_peer)
