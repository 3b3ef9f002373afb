# xenbus-xenlab-blkfront: a user-space blkif frontend for a domU, over the real Xen adapters
# and the library's frontend driver (scenario 62-blkback-handover runs two instances of it
# against xenbus-blkback: the seed's frontend handover). tests/xenlab/binaries.txt has it
# copied into dom0 (for --pattern) and the guests. Off Xen it only checks its arguments.
xenbus_add_program(xenbus-xenlab-blkfront ${CMAKE_CURRENT_LIST_DIR}/blkfront.cpp)
target_link_libraries(xenbus-xenlab-blkfront PRIVATE xenevtchn xengnttab xenstore)

# Off Xen: the pattern dom0 compares the image with is stable (a fixed digest), and every
# instance mode ends with exit status 1 and one FAIL line naming the missing device.
add_test(NAME xenbus-xenlab-blkfront.off-xen
  COMMAND sh -c [=[
    sum=$("$0" --pattern 7 --first 3 --sectors 5 | sha256sum | cut -d' ' -f1)
    [ "$(printf %s "$sum" | wc -c)" = 64 ] || exit 1
    [ "$("$0" --pattern 7 --sectors 8 | tail -c +1537 | head -c 2560 | sha256sum | cut -d' ' -f1)" = "$sum" ] || exit 1
    for args in "--devid 51808 --write 7 --sectors 8" "--devid 51808 --take-over --verify 7 --sectors 8"; do
      out=$("$0" $args 2>&1); rc=$?
      printf '%s: rc=%s %s\n' "$args" "$rc" "$out"
      [ "$rc" -eq 1 ] || exit 1
      case $out in "FAIL "*"needs /dev/xen/xenbus"*) ;; *) exit 1 ;; esac
    done
    "$0" --write 7 >/dev/null 2>&1; [ $? -eq 2 ] || exit 1
  ]=] $<TARGET_FILE:xenbus-xenlab-blkfront>)
set_tests_properties(xenbus-xenlab-blkfront.off-xen PROPERTIES LABELS device)

# The same handover in one process over the POSIX machine, with the same client
# (tests/blkif_front.hpp) against blk::backend_device.
xenbus_add_test(xenbus-blkfront-handover-tests LABELS blkback SOURCES ${CMAKE_CURRENT_LIST_DIR}/../blkfront_handover_test.cpp)
