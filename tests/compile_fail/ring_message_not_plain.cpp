// Must not compile: a ring slot is copied as bytes, so a message with a non-trivial copy
// (here a std::string, whose bytes hold a pointer) is refused by the ring_message concept.
#include <xenbus/ring/request_ring.hpp>

#include <string>

struct request {
  std::string path;
};
struct response {
  int status;
};

int main() {
  alignas(4096) static std::byte page[4096];
  auto r = xenbus::front_ring<request, response>::init(page);
  return r.has_value() ? 0 : 1;
}
