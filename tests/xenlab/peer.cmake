# xenbus-xenlab-peer: the cross-domain programs of the QEMU lab (scenarios 10-adapters and
# 50-notify run them in dom0 and a domU; tests/xenlab/binaries.txt has them copied there).
# Off Xen, CTest runs the same ring runs between two threads on the POSIX machine, and
# checks that every Xen subcommand fails with one clear line.

# The C macros' side: bench/xen_peer.c compiled as C, as xenbus-bench compiles it (GNU C for
# <xenctrl.h>'s barriers; not under our -Wconversion: the macros mix signedness), with its
# kicks and waits routed to the lab's event channel.
add_library(xenbus_xenlab_ring_c OBJECT ${CMAKE_CURRENT_LIST_DIR}/peer_ring_c.c)
set_target_properties(xenbus_xenlab_ring_c PROPERTIES C_STANDARD 11 C_EXTENSIONS ON)
target_include_directories(xenbus_xenlab_ring_c PRIVATE ${PROJECT_SOURCE_DIR}/bench)
target_compile_options(xenbus_xenlab_ring_c PRIVATE -O2 -Wall -Wextra -Werror -Wno-unused-function)

xenbus_add_program(xenbus-xenlab-peer
  ${CMAKE_CURRENT_LIST_DIR}/peer.cpp           # commands, the sessions' setup over xenstore or the POSIX machine
  ${CMAKE_CURRENT_LIST_DIR}/peer_adapters.cpp  # scenario 10: event channels, grants, xenstore between domains
  ${CMAKE_CURRENT_LIST_DIR}/peer_rings.cpp     # scenario 50: ring runs, ours and the C macros', and their figures
  $<TARGET_OBJECTS:xenbus_xenlab_ring_c>)
target_include_directories(xenbus-xenlab-peer PRIVATE ${PROJECT_SOURCE_DIR}/bench)  # xenbus_ends.hpp, xen_peer.h
# Measured at -O2 whatever the build type, as xenbus-bench is.
target_compile_options(xenbus-xenlab-peer PRIVATE -O2)
target_link_libraries(xenbus-xenlab-peer PRIVATE xenevtchn xengnttab xenstore Threads::Threads)

# Every measure between two threads on the POSIX machine, briefly: the loops, the control
# page and the figures work, and no run sees a wrong id or index (never a timed assertion).
# Two threads: also under TSan (which sees our side; the C object is not instrumented).
add_test(NAME xenbus-xenlab-peer.posix-rings
  COMMAND xenbus-xenlab-peer posix-rings --seconds 0.05 --loads 1,32 --streams blkif:0,netif_tx:2)
set_tests_properties(xenbus-xenlab-peer.posix-rings PROPERTIES LABELS "ring;threads" TIMEOUT 120 RUN_SERIAL TRUE)

# Off Xen, each Xen command ends with exit status 1 and one line naming the missing device.
add_test(NAME xenbus-xenlab-peer.off-xen
  COMMAND sh -c [=[
    for cmd in adapters-domu "adapters-dom0 --domid 1" ring-front "ring-back --domid 1"; do
      out=$("$0" $cmd 2>&1); rc=$?
      printf '%s: rc=%s %s\n' "$cmd" "$rc" "$out"
      [ "$rc" -eq 1 ] || exit 1
      [ "$out" = "FAIL ${cmd%% *} not running on Xen: cannot open /dev/xen/evtchn (no event-channel device: errno 2 (No such file or directory))" ] || exit 1
    done
  ]=] $<TARGET_FILE:xenbus-xenlab-peer>)
set_tests_properties(xenbus-xenlab-peer.off-xen PROPERTIES LABELS device)
