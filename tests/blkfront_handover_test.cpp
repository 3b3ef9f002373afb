// The seed's frontend handover with blkif, in one process over the POSIX machine: what the
// lab's scenario 62-blkback-handover plays on a real Xen with xenbus-xenlab-blkfront, here
// with the same client (blkif_front.hpp) against blk::backend_device. Instance 1 writes a
// pattern; instance 2 takes the device over while instance 1 lives, reads it back; instance
// 1's driver reports the handover, and a write on its old ring is never answered.
#include "blkback_support.hpp"

#include <doctest/doctest.h>

namespace {

using namespace blktest;
using front_t = rig<>::front_t;
using client_t = blkfront::client<front_t, grants_t>;

TEST_CASE("a second frontend instance takes a blkif device over, the first is never answered again") {
  ram_image img{1 << 20};
  rig r{img};
  REQUIRE_MESSAGE(r.up(), r.dump());
  front_t& one = *r.fe;
  std::optional<front_t> two;
  // The backend serves, then every driver takes its watch events (the client's sleep).
  auto wait = [&](int) {
    r.run_backend();
    for (int round = 0; round < 100; ++round) {
      // Both instances in one call: an event is taken once, and each driver takes its own.
      unsigned n = two ? deliver_watch_events(r.fs, 0, one, *two) : deliver_watch_events(r.fs, 0, one);
      n += deliver_watch_events(r.bs, 0, *r.dev);
      if (n == 0) break;
    }
    while (auto p = r.fev.pending()) (void)r.fev.unmask(*p);
    return true;
  };

  auto c1 = client_t::make(one, r.fgr, back_dom);
  REQUIRE(c1);
  CHECK(c1->write_pattern(0, 200, 77, wait) == "");
  CHECK(c1->flush(wait) == "");
  CHECK(c1->check_pattern(0, 200, 77, wait) == "");
  const std::uint64_t answered = c1->answered();

  // Instance 2 writes our node back to Initialising (frontend-hands-over); both instances
  // share the store (one domain), each takes only its own watch events.
  two.emplace(r.fs, r.fev, r.fgr, front_dom, vdev, frontend_options{.start = frontend_start::handover});
  REQUIRE(two->start());
  for (int i = 0; i < 20 && !two->connected(); ++i) (void)wait(0);
  REQUIRE_MESSAGE(two->connected(), r.dump());
  CHECK(r.dev->connected());
  CHECK_FALSE(one.active());
  CHECK(one.reason() == close_reason::handed_over);
  const std::string log = r.dump();
  CHECK(log.find("frontend-hands-over") != std::string::npos);
  CHECK(log.find("backend-resets-at-once") != std::string::npos);

  // Instance 1's late write on its old ring: nobody answers, the image does not change.
  auto& old = *one.queue_at(0).ring;
  std::vector<std::byte> before(img.data.begin() + 600 * 512, img.data.begin() + 608 * 512);
  blkfront::fill(c1->data(), 4096, 9);
  REQUIRE(old.produce(blkfront::rw(blkif::op_write, 999, 600, {blkif::segment{c1->ref(0), 0, 7}})));
  (void)old.push_and_check_notify();
  (void)r.fev.notify(one.queue_at(0).port);
  for (int i = 0; i < 5; ++i) (void)wait(0);
  auto late = old.take_response();
  REQUIRE(late);
  CHECK_FALSE(late->has_value());
  CHECK(c1->answered() == answered);
  CHECK(std::equal(before.begin(), before.end(), img.data.begin() + 600 * 512));

  // Instance 2 reads what instance 1 wrote, writes more, closes.
  auto c2 = client_t::make(*two, r.fgr, back_dom);
  REQUIRE(c2);
  CHECK(c2->check_pattern(0, 200, 77, wait) == "");
  CHECK(c2->write_pattern(200, 64, 78, wait) == "");
  CHECK(c2->check_pattern(200, 64, 78, wait) == "");
  CHECK(c2->check_pattern(0, 200, 78, wait).starts_with("sector 0 differs"));
  two->close();
  for (int i = 0; i < 20 && two->own() != state::closed; ++i) (void)wait(0);
  CHECK(two->own() == state::closed);
  c1.reset();
  c2.reset();
  two.reset();
}

}  // namespace
