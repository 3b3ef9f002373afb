# Builds and runs one consumer project; invoked by CTest with
# -D MODE=find_package|pkg_config|add_subdirectory.
set(work ${BINARY_DIR}/consumer-${MODE})
file(REMOVE_RECURSE ${work})
set(args -S ${SOURCE_DIR}/tests/consumers/${MODE} -B ${work}/build
  -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "find_package" OR MODE STREQUAL "pkg_config")
  # Install the package from a fresh configure of the source tree into a private prefix.
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${work}/pkg
      -DXENBUS_BUILD_TESTS=OFF -DXENBUS_BUILD_EXAMPLES=OFF -DXENBUS_BUILD_BENCH=OFF
      -DXENBUS_BUILD_TOOLS=OFF -DCMAKE_INSTALL_PREFIX=${work}/prefix
    COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${work}/pkg COMMAND_ERROR_IS_FATAL ANY)
  if(MODE STREQUAL "find_package")
    list(APPEND args -DCMAKE_PREFIX_PATH=${work}/prefix)
  else()
    # Only the private prefix's xenbus.pc: an installed system copy must not stand in for it.
    set(ENV{PKG_CONFIG_LIBDIR} ${work}/prefix/share/pkgconfig)
    unset(ENV{PKG_CONFIG_PATH})
  endif()
else()
  list(APPEND args -DXENBUS_SOURCE_DIR=${SOURCE_DIR})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} ${args} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${work}/build COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${work}/build/consumer COMMAND_ERROR_IS_FATAL ANY)
