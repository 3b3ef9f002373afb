xenbus_add_test(xenbus-core-tests LABELS core SOURCES
  state_test.cpp
  transition_table_test.cpp
  state_machine_test.cpp
  state_machine_walk_test.cpp)
# The interleaving walk visits ~80k worlds; unoptimised code under ASan would take >10 s.
set_source_files_properties(state_machine_walk_test.cpp PROPERTIES COMPILE_OPTIONS "$<$<CONFIG:Debug>:-O1>")

# Core headers with no exceptions, RTTI or heap: the link fails if anything pulls them in.
xenbus_add_freestanding_check(xenbus-core-freestanding core_freestanding.cpp)

# Compile-fail cases: each must fail to compile with its own check's sentence (and no other),
# so a typo in a case never counts as a pass; the control cases must compile.
function(xenbus_add_compile_case name source expect)
  add_test(NAME xenbus-compile-${name}
    COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DINCLUDE=${PROJECT_SOURCE_DIR}/include
            -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/${source} "-DEXPECT=${expect}"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/check.cmake)
  set_tests_properties(xenbus-compile-${name} PROPERTIES LABELS "core;compile" TIMEOUT 120)
endfunction()
xenbus_add_compile_case(control-valid control_valid.cpp "")
xenbus_add_compile_case(control-request request_reachable.cpp "")
xenbus_add_compile_case(duplicate-row duplicate_row.cpp
  "xenbus transition table: two rows are identical (duplicate row)")
xenbus_add_compile_case(contradictory-rows contradictory_rows.cpp
  "xenbus transition table: two rows give the same driver the same move for overlapping peer states (contradictory rows)")
xenbus_add_compile_case(self-move self_move.cpp
  "xenbus transition table: a row moves a state to itself")
xenbus_add_compile_case(dead-end dead_end.cpp
  "xenbus transition table: an end can enter a state that no row lets it leave (only Closed may be final)")
xenbus_add_compile_case(connected-unreachable connected_unreachable.cpp
  "xenbus transition table: frontend and backend cannot both reach Connected from Initialising")
xenbus_add_compile_case(closed-unreachable closed_unreachable.cpp
  "xenbus transition table: from some reachable state the two ends can no longer both reach Closed")
xenbus_add_compile_case(request-unreachable request_unreachable.cpp
  "state_machine::request<To>(): no row of the table lets this role drive its own node to that state")

# The umbrella headers: <xenbus/core.hpp> stays freestanding; <xenbus/xenbus.hpp> compiles whole.
xenbus_add_freestanding_check(xenbus-umbrella-freestanding umbrella_freestanding.cpp)
xenbus_add_test(xenbus-umbrella-tests LABELS core SOURCES umbrella_test.cpp)
target_link_libraries(xenbus-umbrella-tests PRIVATE Threads::Threads)
