# The lab (scripts/xenlab.sh): a real Xen 4.17 with Linux dom0 and domUs under QEMU runs
# tests/xenlab/scenarios against this build's programs, alone on the machine (QEMU's emulation
# wants both cores). XENBUS_XENLAB turns it on (the dev preset does): one boot for the scenarios
# of the library on a real hypervisor (00-50).
# XENBUS_XENLAB_EXTRA adds the work in progress, each in a boot of its own: xenbus-blkback
# against Linux's blkfront (60) and xenbus-xenstored as dom0's only xenstored (70-99).
option(XENBUS_XENLAB_EXTRA "Also boot the lab for xenbus-blkback and for xenbus-xenstored as dom0's xenstored" OFF)
if(XENBUS_XENLAB)
  add_test(NAME xenbus-xenlab COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR}
    --only "[0-5]*")
  set_tests_properties(xenbus-xenlab PROPERTIES LABELS xenlab RUN_SERIAL TRUE TIMEOUT 900)
endif()
if(XENBUS_XENLAB_EXTRA)
  add_test(NAME xenbus-xenlab-blkback COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR}
    --only "60-*")
  add_test(NAME xenbus-xenlab-xenstored COMMAND ${PROJECT_SOURCE_DIR}/scripts/xenlab.sh --build ${CMAKE_BINARY_DIR}
    --xenstored /xenlab/bin/xenbus-xenstored --only "7*" --timeout 1200)
  set_tests_properties(xenbus-xenlab-blkback xenbus-xenlab-xenstored PROPERTIES LABELS xenlab-extra RUN_SERIAL TRUE
    TIMEOUT 1500)
endif()
