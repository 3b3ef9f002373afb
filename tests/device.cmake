# Device area: event channels, grants, fault injection, frontend/backend drivers.
xenbus_add_test(xenbus-evtchn-tests LABELS device SOURCES evtchn_test.cpp grant_test.cpp)

# The Xen adapters only run on a Xen host; here they must compile, link, and fail cleanly.
xenbus_add_test(xenbus-xen-adapter-tests LABELS device SOURCES xen_adapters_test.cpp)
target_link_libraries(xenbus-xen-adapter-tests PRIVATE xenevtchn xengnttab)
