// Tests include/xenbus/xenstore/ring_transport.hpp: the client over a xenstore ring page.
#include <xenbus/xenstore/ring_transport.hpp>

#include <doctest/doctest.h>
