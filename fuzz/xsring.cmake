# The dom0 xenstored's ring side: a hostile guest's page against ring_connection.
xenbus_add_fuzzer(xenstore_ring_fuzz xenstore_ring_fuzz.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenstore_ring_fuzz 20)
