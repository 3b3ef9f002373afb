# Devices meeting domains: libxl's permissions for each end, a peer domain destroyed while
# Connected. In-process and over xenbus-xenstored (libxenstore), then with our own client
# (threads: also under TSan), like xenbus-device-tests.
xenbus_add_test(xenbus-device-domain-tests LABELS device SOURCES device_domain_test.cpp)
target_link_libraries(xenbus-device-domain-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-domain-tests PRIVATE XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}"
  "DEVICE_ENVS=inproc_env,socket_env")
xenbus_add_test(xenbus-device-domain-client-tests LABELS device-threads SOURCES device_domain_test.cpp)
target_link_libraries(xenbus-device-domain-client-tests PRIVATE xenstore)
target_compile_definitions(xenbus-device-domain-client-tests PRIVATE
  XENBUS_XENSTORED_BINARY="${xenbus_xenstored_binary}" "DEVICE_ENVS=client_env")
if(XENBUS_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/xenstore.cmake)
  add_dependencies(xenbus-device-domain-tests xenbus-xenstored)
  add_dependencies(xenbus-device-domain-client-tests xenbus-xenstored)
endif()
