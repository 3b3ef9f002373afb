# The lab (scripts/xenlab.sh): a real Xen 4.17 with Linux dom0 and domUs under QEMU runs
# tests/xenlab/scenarios against this build's programs, alone on the machine (QEMU's emulation
# wants both cores). XENBUS_XENLAB turns it on (the dev preset does), as two boots:
# - xenbus-xenlab: the library on a real hypervisor (00-50), then xenbus-blkback against
#   Linux's blkfront (60: data, throughput; 61: rebind and xenbus_reset_state; 62: the handover between two of our frontends; 63: --serve), with oxenstored;
# - xenbus-xenlab-xenstored: xenbus-xenstored as dom0's only xenstored, serving the kernel and
#   every guest (70-99).
option(XENBUS_XENLAB_XENSTORED "With XENBUS_XENLAB: also boot the lab with xenbus-xenstored as dom0's xenstored" ON)
if(XENBUS_XENLAB)
  add_test(NAME xenbus-xenlab COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR}
    --only "[0-6]*" --timeout 1200)
  set_tests_properties(xenbus-xenlab PROPERTIES LABELS xenlab RUN_SERIAL TRUE TIMEOUT 1500)
  if(XENBUS_XENLAB_XENSTORED)
    add_test(NAME xenbus-xenlab-xenstored COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR}
      --xenstored /xenlab/bin/xenbus-xenstored --only "7*" --timeout 1200)
    set_tests_properties(xenbus-xenlab-xenstored PROPERTIES LABELS xenlab RUN_SERIAL TRUE TIMEOUT 1500)
  endif()
endif()
