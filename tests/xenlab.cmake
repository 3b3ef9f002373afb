# The lab (scripts/xenlab.sh): a real Xen 4.17 with Linux dom0 and domUs under QEMU runs
# tests/xenlab/scenarios against this build's programs. One CTest test, label xenlab, alone on
# the machine (QEMU's emulation wants both cores). XENBUS_XENLAB turns it on (the dev preset does).
if(XENBUS_XENLAB)
  add_test(NAME xenbus-xenlab COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR})
  set_tests_properties(xenbus-xenlab PROPERTIES LABELS xenlab RUN_SERIAL TRUE TIMEOUT 900)
endif()
