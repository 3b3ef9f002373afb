# The xenstore client: publish in a transaction, wait on a watch's fd.
find_package(Threads REQUIRED)
xenbus_add_program(xenbus-example-xsclient xsclient_watch.cpp)
target_link_libraries(xenbus-example-xsclient PRIVATE Threads::Threads)
