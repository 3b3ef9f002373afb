# The input plays a hostile frontend against a backend driver: keys, state text, ring page.
xenbus_add_fuzzer(xenbus-device-fuzz device_fuzz.cpp ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-device-fuzz 20)
# The input interleaves the toolstack's removal of either directory or both (also between
# any two store operations of a driver) with closes, moves, fatal errors, lost watches,
# destruction and watch events delivered one by one, all, coalesced or twice.
xenbus_add_fuzzer(xenbus-device-teardown-fuzz device_teardown_fuzz.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-device-teardown-fuzz 20)
target_include_directories(xenbus-device-teardown-fuzz PRIVATE ${PROJECT_SOURCE_DIR}/tests)
