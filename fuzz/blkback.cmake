# The input plays a hostile blkif frontend against xenbus-blkback's engine: raw request
# slots and indirect segment tables, or scribbles on a connected device's ring (ASan + UBSan).
xenbus_add_fuzzer(xenbus-blkback-fuzz blkback_fuzz.cpp ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenbus-blkback-fuzz 20)
