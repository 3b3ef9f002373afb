// Ours: xenbus::front_ring / back_ring and the byte rings of <xenbus/ring.hpp>.
#include "harness.hpp"

namespace xbench {

// Placeholder until <xenbus/ring.hpp> lands on the ring branch: registers nothing yet.
void register_xenbus(measure) {}

}  // namespace xbench
