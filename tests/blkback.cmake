# xenbus-blkback: the blkif engine against our own frontend over the POSIX machine.
xenbus_add_test(xenbus-blkback-tests LABELS blkback SOURCES blkback_test.cpp)
