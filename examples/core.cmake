# The walkthrough: startup, the seed's kexec handover and an unplug, one line per change.
xenbus_add_program(xenbus-walkthrough walkthrough.cpp)
xenbus_add_program(xenbus-first first.cpp)
add_test(NAME example.first COMMAND xenbus-first)
set_tests_properties(example.first PROPERTIES LABELS core)
