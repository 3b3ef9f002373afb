# Xenstore area: wire codec, in-memory store, socket server, interop with Xen's own tools.
xenbus_add_freestanding_check(xenbus-xenstore-freestanding xenstore_freestanding.cpp)

xenbus_add_test(xenbus-xenstore-tests LABELS xenstore SOURCES
  xenstore_wire_test.cpp
  xenstore_decimal_test.cpp
  xenstore_store_test.cpp
  xenstore_server_test.cpp)
find_package(Threads REQUIRED)
target_link_libraries(xenbus-xenstore-tests PRIVATE Threads::Threads)

# Concurrent clients over the socket: also run under ThreadSanitizer (label threads).
xenbus_add_test(xenbus-xenstore-load-tests LABELS threads SOURCES
  xenstore_load_test.cpp)
target_link_libraries(xenbus-xenstore-load-tests PRIVATE Threads::Threads)

# Interop with Xen's own clients (Debian libxen-dev, xenstore-utils, xen-utils-4.17).
find_library(XENBUS_LIBXENSTORE xenstore)
if(XENBUS_LIBXENSTORE)
  xenbus_add_test(xenbus-xenstore-interop-tests LABELS xenstore-interop SOURCES
    xenstore_libxenstore_test.cpp)
  target_link_libraries(xenbus-xenstore-interop-tests PRIVATE ${XENBUS_LIBXENSTORE} Threads::Threads)
endif()
if(XENBUS_BUILD_TOOLS)  # tools/ comes later: refer to the program by generator expression
  set(_xs_interop ${CMAKE_CURRENT_SOURCE_DIR}/xenstore_interop.sh)
  set(_xs_test /usr/lib/xen-4.17/bin/test-xenstore)
  if(EXISTS ${_xs_test})
    execute_process(COMMAND ${_xs_test} -l OUTPUT_VARIABLE _xs_list RESULT_VARIABLE _xs_rc)
    string(REPLACE "\n" ";" _xs_lines "${_xs_list}")
    foreach(line IN LISTS _xs_lines)
      # "read 1    : Read node with 1 byte data" -> "read 1"
      string(REGEX REPLACE " *:.*$" "" name "${line}")
      if(name STREQUAL "")
        continue()
      endif()
      add_test(NAME "test-xenstore: ${name}"
        COMMAND bash ${_xs_interop} $<TARGET_FILE:xenbus-xenstored> test-xenstore "${name}")
      set_tests_properties("test-xenstore: ${name}" PROPERTIES LABELS xenstore-interop TIMEOUT 120)
    endforeach()
    add_test(NAME "test-xenstore: all" COMMAND bash ${_xs_interop} $<TARGET_FILE:xenbus-xenstored> test-xenstore-all)
    set_tests_properties("test-xenstore: all" PROPERTIES LABELS xenstore-interop TIMEOUT 300)
  else()
    message(STATUS "xenbus: ${_xs_test} not found (xen-utils-4.17): test-xenstore interop tests skipped")
  endif()
  find_program(XENBUS_XENSTORE_WRITE xenstore-write)
  if(XENBUS_XENSTORE_WRITE)
    add_test(NAME "xenstore-utils: write read ls list chmod watch rm"
      COMMAND bash ${_xs_interop} $<TARGET_FILE:xenbus-xenstored> tools)
    set_tests_properties("xenstore-utils: write read ls list chmod watch rm" PROPERTIES LABELS xenstore-interop TIMEOUT 120)
  endif()
endif()

# Differential: the same requests against Xen's own daemons and ours. The project's
# launcher (tests/reference/xenstored.sh, with the LD_PRELOAD shim tests/reference/shim.c)
# starts oxenstored and the C xenstored of xen-utils-4.17 without a hypervisor, each on a
# private socket. They need root, xen-utils-4.17, a C compiler, libxen-dev and (oxenstored)
# unshare: skipped (exit 77, with the reason) otherwise. One reference daemon set at a
# time (RESOURCE_LOCK). See docs/reference-servers.md and docs/xenstore-differences.md.
if(XENBUS_BUILD_TOOLS)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_FOUND)
    set(_xs_diff ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/xenstore_differential.py
      $<TARGET_FILE:xenbus-xenstored>)
    foreach(ref IN ITEMS oxenstored cxenstored)
      add_test(NAME "xenstore differential: ${ref} vs xenbus-xenstored" COMMAND ${_xs_diff} scenarios ${ref})
      set_tests_properties("xenstore differential: ${ref} vs xenbus-xenstored" PROPERTIES
        LABELS xenstore-differential SKIP_RETURN_CODE 77 RESOURCE_LOCK xenstore-reference TIMEOUT 120)
    endforeach()
    # Seeded random transcripts on two connections, replayed against ours, cxenstored and
    # oxenstored at once: 40 with concurrent transactions, 40 without (about 15 s here).
    add_test(NAME "xenstore differential: random transcripts, 40+40 seeds x 400 steps"
      COMMAND ${_xs_diff} random --seeds 40 --serial-seeds 40 --steps 400)
    set_tests_properties("xenstore differential: random transcripts, 40+40 seeds x 400 steps" PROPERTIES
      LABELS xenstore-differential SKIP_RETURN_CODE 77 RESOURCE_LOCK xenstore-reference TIMEOUT 120)
  endif()
endif()

# Soak: 100 hostile clients beside 4 honest ones for 20 s against xenbus-xenstored (or,
# without the tools, a server in a forked child); asserts the stated memory bound, that
# every honest request is answered and no committed write is lost. Label soak.
add_executable(xenbus-xenstore-soak xenstore_soak_test.cpp)
target_link_libraries(xenbus-xenstore-soak PRIVATE xenbus::xenbus xenbus_dev_flags Threads::Threads)
if(XENBUS_BUILD_TOOLS)
  add_test(NAME xenstore-soak COMMAND xenbus-xenstore-soak --server $<TARGET_FILE:xenbus-xenstored> --seconds 20)
else()
  add_test(NAME xenstore-soak COMMAND xenbus-xenstore-soak --seconds 20)
endif()
set_tests_properties(xenstore-soak PROPERTIES LABELS soak TIMEOUT 60 RUN_SERIAL TRUE)
