xenbus_add_test(xenbus-core-tests LABELS core SOURCES state_test.cpp)
