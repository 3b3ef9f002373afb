xenbus_add_fuzzer(xenbus-state-fuzz state_machine_fuzz.cpp ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-state-fuzz 15)
