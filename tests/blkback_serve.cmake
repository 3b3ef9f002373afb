# xenbus-blkback --serve's building blocks (hosted/blk/service.hpp, posix/blk/serve.hpp): a
# backend service of blkif devices and our frontends on one event loop, in-process.
xenbus_add_test(xenbus-blkback-serve-tests LABELS blkback SOURCES blkback_serve_test.cpp)
