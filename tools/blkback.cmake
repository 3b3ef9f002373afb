# xenbus-blkback: a user-space blkif backend serving an image file or block device (sbin, section 8).
xenbus_add_program(xenbus-blkback xenbus_blkback.cpp)
target_link_libraries(xenbus-blkback PRIVATE xenstore xenevtchn xengnttab)
xenbus_install_program(xenbus-blkback DIR ${CMAKE_INSTALL_SBINDIR} SECTION 8)
