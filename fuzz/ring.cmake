# The input plays the peer of our request/response rings and byte rings (ASan + UBSan).
xenbus_add_fuzzer(xenbus-ring-fuzz ring_fuzz.cpp ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-ring-fuzz 20)
