# xenbus-xen-demo: the two-domain demo on a real Xen, dom0 and a guest. It runs only there: the
# QEMU lab (tests/xenlab/scenarios/20-demo.sh, 30-coexist.sh, 40-destroy.sh) is its test.
xenbus_add_program(xenbus-xen-demo xen_demo.cpp)
target_link_libraries(xenbus-xen-demo PRIVATE xenevtchn xengnttab xenstore)
