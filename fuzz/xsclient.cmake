# Xenstore client: arbitrary server replies and events against outstanding requests.
xenbus_add_fuzzer(xsclient_reply_fuzz xsclient_reply_fuzz.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/corpus/xsclient_reply_fuzz 20)
