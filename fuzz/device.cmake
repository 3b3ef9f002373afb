# The input plays a hostile frontend against a backend driver: keys, state text, ring page.
xenbus_add_fuzzer(xenbus-device-fuzz device_fuzz.cpp ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-device-fuzz 20)
