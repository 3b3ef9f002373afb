xenbus_add_test(xenbus-core-tests LABELS core SOURCES
  state_test.cpp
  transition_table_test.cpp
  state_machine_test.cpp)
