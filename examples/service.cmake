# Device services on one event loop (include/xenbus/hosted/device/service.hpp,
# posix/device/service_loop.hpp): a RAM-disk backend and its frontend without poll loops.
xenbus_add_program(xenbus-example-service service_pair.cpp)
add_test(NAME xenbus-example-service COMMAND xenbus-example-service)
set_tests_properties(xenbus-example-service PROPERTIES LABELS device TIMEOUT 60)
