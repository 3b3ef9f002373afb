# xenbus-xenstored: the in-memory store served on a unix socket.
xenbus_add_program(xenbus-xenstored xenbus_xenstored.cpp)
install(TARGETS xenbus-xenstored RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
