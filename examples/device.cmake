# xenbus-demo: toolstack, backend and frontend processes over our xenstore and a memfd machine.
xenbus_add_program(xenbus-demo demo.cpp)
add_test(NAME xenbus-demo COMMAND xenbus-demo --requests 200000)
set_tests_properties(xenbus-demo PROPERTIES LABELS device TIMEOUT 60)
