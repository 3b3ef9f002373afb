// Freestanding check for the ring headers: built with -fno-exceptions -fno-rtti and linked
// so that any use of operator new, malloc or the exception runtime fails the link. The
// program then runs one round trip on every kind of ring and exits 0 if all went well.
#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/console.hpp>
#include <xenbus/ring/response_ids.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <cstddef>
#include <cstdint>

namespace {

struct request {
  std::uint64_t id;
  std::uint32_t op;
  std::uint32_t arg;
};
struct response {
  std::uint64_t id;
  std::int32_t status;
};

alignas(4096) std::byte ring_page[4096];
alignas(4096) std::byte byte_page[4096];
alignas(4096) std::byte flex_pages[3 * 4096];

int request_response() {
  auto front = xenbus::front_ring<request, response>::init(ring_page);
  auto back = xenbus::back_ring<request, response>::attach(ring_page);
  if (!front || !back) return 1;
  xenbus::id_tracker<64> ids;
  auto id = ids.issue(7);
  if (!id || !front->produce(request{*id, 7, 42})) return 2;
  auto notify = front->push_and_check_notify();
  if (!notify || !*notify) return 3;
  auto served = back->consume_requests(8, [&](const request& r) {
    (void)back->produce(response{r.id, static_cast<std::int32_t>(r.arg)});
  });
  if (!served || *served != 1 || !back->push()) return 4;
  int status = -1;
  auto got = front->consume_responses(8, [&](const response& r) {
    if (auto op = ids.complete(r.id); op && *op == 7) status = r.status;
  });
  if (!got || *got != 1 || status != 42) return 5;
  return 0;
}

int byte_rings() {
  const std::byte hello[5] = {std::byte{'h'}, std::byte{'e'}, std::byte{'l'}, std::byte{'l'}, std::byte{'o'}};
  std::byte buf[8] = {};
  auto server = xenbus::xenstore_ring_server::attach(byte_page);
  auto guest = xenbus::xenstore_ring_guest::attach(byte_page);
  if (!server || !guest) return 10;
  auto w = guest->write(hello);
  auto r = server->read(buf);
  if (!w || !r || *w != 5 || *r != 5 || buf[4] != std::byte{'o'}) return 11;

  auto front = xenbus::flex_ring::attach(xenbus::flex_end::frontend, std::span(flex_pages).first(4096),
                                         std::span(flex_pages).subspan(4096), 0);
  auto back = xenbus::flex_ring::attach(xenbus::flex_end::backend, std::span(flex_pages).first(4096),
                                        std::span(flex_pages).subspan(4096), 0);
  if (!front || !back) return 12;
  auto fw = front->write(hello);
  auto fr = back->read(buf);
  if (!fw || !fr || *fr != 5) return 13;
  return 0;
}

}  // namespace

int main() {
  if (const int e = request_response()) return e;
  return byte_rings();
}
