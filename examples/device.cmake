# xenbus-demo: toolstack, backend and frontend processes over our xenstore and a memfd machine.
xenbus_add_program(xenbus-demo demo.cpp)
add_test(NAME xenbus-demo COMMAND xenbus-demo --requests 200000)
set_tests_properties(xenbus-demo PROPERTIES LABELS device TIMEOUT 60)

# Examples a driver author can copy, each run as a test.
xenbus_add_program(xenbus-example-block block_pair.cpp)
add_test(NAME xenbus-example-block COMMAND xenbus-example-block)
xenbus_add_program(xenbus-example-console console_pair.cpp)
add_test(NAME xenbus-example-console COMMAND xenbus-example-console)
set_tests_properties(xenbus-example-block xenbus-example-console PROPERTIES LABELS device TIMEOUT 60)
