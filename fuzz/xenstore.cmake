# Xenstore fuzzers: the wire decoder on raw byte streams, and a live in-process store.
xenbus_add_fuzzer(xenstore_decoder_fuzz xenstore_decoder_fuzz.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenstore_decoder_fuzz 20)
xenbus_add_fuzzer(xenstore_store_fuzz xenstore_store_fuzz.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xenstore_store_fuzz 20)
