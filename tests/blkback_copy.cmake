# Grant copy: the POSIX machine's copier, and xenbus-blkback's engine in copy mode (data_path::copy)
# against our own frontend over the POSIX machine.
xenbus_add_test(xenbus-blkback-copy-tests LABELS blkback SOURCES grant_copy_test.cpp blkback_copy_test.cpp)
