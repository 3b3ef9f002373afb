// Must compile: the control for ring_message_not_plain.cpp, with plain C-layout messages.
#include <xenbus/ring/request_ring.hpp>

struct request {
  char path[64];
};
struct response {
  int status;
};

int main() {
  alignas(4096) static std::byte page[4096];
  auto r = xenbus::front_ring<request, response>::init(page);
  return r.has_value() ? 0 : 1;
}
