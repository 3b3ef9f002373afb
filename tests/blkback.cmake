# xenbus-blkback: the blkif engine against our own frontend over the POSIX machine.
xenbus_add_test(xenbus-blkback-tests LABELS blkback SOURCES blkback_test.cpp blkback_image_test.cpp)

# The program end to end over xenbus-xenstored and a POSIX machine (no Xen needed).
if(XENBUS_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/blkback.cmake)
  xenbus_add_test(xenbus-blkback-program-tests LABELS blkback SOURCES blkback_program_test.cpp)
  target_link_libraries(xenbus-blkback-program-tests PRIVATE xenstore)
  target_compile_definitions(xenbus-blkback-program-tests PRIVATE
    XENBUS_XENSTORED_BINARY="$<TARGET_FILE:xenbus-xenstored>" XENBUS_BLKBACK_BINARY="$<TARGET_FILE:xenbus-blkback>")
  add_dependencies(xenbus-blkback-program-tests xenbus-xenstored xenbus-blkback)
endif()

# The device on its own thread against a frontend thread (also under TSan: label threads).
xenbus_add_test(xenbus-blkback-threads-tests LABELS blkback-threads SOURCES blkback_threads_test.cpp)  # matches -L blkback and -L threads
