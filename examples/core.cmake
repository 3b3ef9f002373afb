# The walkthrough: startup, the seed's kexec handover and an unplug, one line per change.
xenbus_add_program(xenbus-walkthrough walkthrough.cpp)
