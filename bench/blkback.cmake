# xenbus-blkback-bench: requests per second through xenbus-blkback's engine over the POSIX
# machine (a backend thread woken by its event channel, the frontend keeping requests in flight).
xenbus_add_program(xenbus-blkback-bench blkback.cpp)
target_compile_options(xenbus-blkback-bench PRIVATE -O2)
target_link_libraries(xenbus-blkback-bench PRIVATE benchmark::benchmark Threads::Threads)
if(XENBUS_BUILD_TESTS)
  # Smoke test: every configuration connects and answers every request OKAY; never a time.
  add_test(NAME xenbus-blkback-bench-smoke COMMAND xenbus-blkback-bench --benchmark_min_time=0.01)
  set_tests_properties(xenbus-blkback-bench-smoke PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
endif()
