# xenbus-xenstored: the in-memory store served on a unix socket (a daemon: sbin, section 8).
xenbus_add_program(xenbus-xenstored xenbus_xenstored.cpp)
xenbus_install_program(xenbus-xenstored DIR ${CMAKE_INSTALL_SBINDIR} SECTION 8)
