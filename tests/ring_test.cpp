// Tests of include/xenbus/ring/request_ring.hpp: our front and back ends against each other and against
// a hostile peer that writes the shared page directly.
#include <xenbus/ring/response_ids.hpp>
#include <xenbus/ring/request_ring.hpp>

#include "ring_peer.h"
#include "ring_test_util.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <atomic>
#include <thread>
#include <vector>

using xenbus::ring_error;
using xenbus::ring_idx;
using front = xenbus::front_ring<xbt_request, xbt_response>;
using back = xenbus::back_ring<xbt_request, xbt_response>;
using xenbus::test::shared_pages;

namespace {

xbt_request make_request(std::uint32_t seq) {
  xbt_request r{};
  xbt_fill(&r, seq);
  return r;
}

xbt_response answer(const xbt_request& r) { return {r.id, r.seq, xbt_checksum(&r)}; }

// Unwraps a ring factory's result, failing the test on an error.
template <class R>
auto must(R&& r) {
  REQUIRE(r.has_value());
  return std::move(r).value();
}

xbt_sring* raw(shared_pages& p) { return reinterpret_cast<xbt_sring*>(p.data()); }

}  // namespace

TEST_CASE("ring size follows the shared area: one page and ring-page-order 1..4") {
  for (unsigned order = 0; order <= 4; ++order) {
    CAPTURE(order);
    shared_pages mem(std::size_t{1} << order);
    auto f = front::init(mem.span());
    REQUIRE(f.has_value());
    CHECK(f->size() == __CONST_RING_SIZE(xbt, xenbus::ring_bytes(order)));
    CHECK(f->free_requests() == f->size());
  }
}

TEST_CASE("init writes SHARED_RING_INIT's values, at a chosen starting index") {
  shared_pages mem(1);
  std::memset(mem.data(), 0xa5, mem.bytes());
  SUBCASE("from zero") {
    auto f = front::init(mem.span());
    REQUIRE(f);
    CHECK(raw(mem)->req_prod == 0);
    CHECK(raw(mem)->rsp_prod == 0);
    CHECK(raw(mem)->req_event == 1);
    CHECK(raw(mem)->rsp_event == 1);
    CHECK(raw(mem)->__pad[0] == 0);
    CHECK(raw(mem)->__pad[43] == 0);
    CHECK(raw(mem)->pvt.pvt_pad[3] == 0);
  }
  SUBCASE("near the 2^32 wrap") {
    auto f = front::init(mem.span(), 0xffffffffu);
    REQUIRE(f);
    CHECK(raw(mem)->req_prod == 0xffffffffu);
    CHECK(raw(mem)->req_event == 0u);
  }
}

TEST_CASE("shared areas that cannot hold a ring are refused") {
  shared_pages mem(1);
  SUBCASE("too small for one slot") {
    auto f = front::init(std::span<std::byte>(mem.data(), 64));
    REQUIRE_FALSE(f);
    CHECK(f.error() == ring_error::bad_memory);
  }
  SUBCASE("misaligned") {
    auto b = back::attach(std::span<std::byte>(mem.data() + 2, 4000));
    REQUIRE_FALSE(b);
    CHECK(b.error() == ring_error::bad_memory);
  }
  SUBCASE("null") { CHECK_FALSE(front::attach({}, 0)); }
}

TEST_CASE("a batch is claimed, filled and published with one push") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));

  for (std::uint32_t i = 0; i < 5; ++i) {
    xbt_request* slot = f.claim();
    REQUIRE(slot != nullptr);
    xbt_fill(slot, i);
  }
  CHECK(f.unpushed() == 5);
  CHECK(f.free_requests() == f.size() - 5);
  // Nothing is visible to the backend before the push.
  CHECK(*b.unconsumed_requests() == 0);
  CHECK(raw(mem)->req_prod == 0);

  auto notify = f.push_and_check_notify();
  REQUIRE(notify);
  CHECK(*notify);  // the initial req_event = 1 asks for the first request
  CHECK(raw(mem)->req_prod == 5);
  CHECK(*b.unconsumed_requests() == 5);

  std::array<xbt_request, 8> got{};
  auto n = b.take_requests(got);
  REQUIRE(n);
  CHECK(*n == 5);
  for (std::uint32_t i = 0; i < 5; ++i) CHECK(got[i].seq == i);
  CHECK(b.awaiting_response() == 5);
}

TEST_CASE("push with the notify check follows the peer's event index") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));

  REQUIRE(f.produce(make_request(0)));
  CHECK(*f.push_and_check_notify());
  SUBCASE("no new event: the backend is awake, no notification") {
    REQUIRE(f.produce(make_request(1)));
    CHECK_FALSE(*f.push_and_check_notify());
  }
  SUBCASE("nothing claimed: no notification, no store") { CHECK_FALSE(*f.push_and_check_notify()); }
  SUBCASE("the backend's final check re-arms the event") {
    REQUIRE(*b.take_request());
    CHECK_FALSE(*b.final_check());
    CHECK(raw(mem)->req_event == 2);
    REQUIRE(f.produce(make_request(1)));
    CHECK(*f.push_and_check_notify());
  }
  SUBCASE("the final check sees requests pushed without notification") {
    REQUIRE(*b.take_request());
    REQUIRE(f.produce(make_request(1)));
    REQUIRE(f.push());
    CHECK(*b.final_check());
  }
}

TEST_CASE("request and response round trip, with free and pending counts") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  const ring_idx size = f.size();

  for (std::uint32_t i = 0; i < size; ++i) REQUIRE(f.produce(make_request(i)));
  CHECK(f.full());
  CHECK(f.claim() == nullptr);
  CHECK_FALSE(f.produce(make_request(99)));
  REQUIRE(f.push());

  // The backend cannot answer what it has not taken.
  CHECK(b.claim() == nullptr);
  auto served = b.consume_requests(3, [&](const xbt_request& r) { REQUIRE(b.produce(answer(r))); });
  REQUIRE(served);
  CHECK(*served == 3);  // bounded by max
  CHECK(*b.unconsumed_requests() == size - 3);
  REQUIRE(b.push());

  CHECK(*f.unconsumed_responses() == 3);
  CHECK(f.free_requests() == 0);  // slots free only once the responses are taken
  std::uint32_t next = 0;
  auto taken = f.consume_responses(100, [&](const xbt_response& r) {
    CHECK(r.seq == next);
    const xbt_request sent = make_request(next);
    CHECK(r.sum == xbt_checksum(&sent));
    ++next;
  });
  CHECK(*taken == 3);
  CHECK(f.free_requests() == 3);
  CHECK(f.outstanding() == size - 3);
  auto none = f.take_response();
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
}

TEST_CASE("indices wrap modulo 2^32: attach near UINT32_MAX and run across the wrap") {
  for (ring_idx start : {0xffffffffu - 40, 0xffffffffu, 0x7fffffffu}) {
    CAPTURE(start);
    shared_pages mem(2);
    auto f = must(front::init(mem.span(), start));
    auto b = must(back::attach(mem.span(), start));
    std::uint32_t sent = 0, received = 0;
    for (int round = 0; round < 40; ++round) {
      for (int k = 0; k < 7 && f.produce(make_request(sent)); ++k) ++sent;
      REQUIRE(f.push());
      REQUIRE(b.consume_requests(1000, [&](const xbt_request& r) { REQUIRE(b.produce(answer(r))); }));
      REQUIRE(b.push());
      REQUIRE(f.consume_responses(1000, [&](const xbt_response& r) {
        CHECK(r.seq == received);
        ++received;
      }));
    }
    CHECK(received == sent);
    CHECK(sent == 280);
    CHECK(f.rsp_cons() == start + 280);  // crossed the wrap for the first two starts
  }
}

TEST_CASE("reattaching to a ring with non-zero indices continues where it was") {
  shared_pages mem(1);
  {
    auto f = must(front::init(mem.span()));
    auto b = must(back::attach(mem.span()));
    for (std::uint32_t i = 0; i < 10; ++i) REQUIRE(f.produce(make_request(i)));
    REQUIRE(f.push());
    REQUIRE(b.consume_requests(100, [&](const xbt_request& r) { REQUIRE(b.produce(answer(r))); }));
    REQUIRE(b.push());
    REQUIRE(f.consume_responses(100, [](const xbt_response&) {}));
  }
  // A restarted backend resumes at rsp_prod; a frontend attaches at its own index.
  auto b = must(back::resume(mem.span()));
  CHECK(b.req_cons() == 10);
  auto f = must(front::attach(mem.span(), 10));
  REQUIRE(f.produce(make_request(10)));
  REQUIRE(f.push());
  auto r = b.take_request();
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->seq == 10);
}

TEST_CASE("a hostile producer index latches the ring broken") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  const ring_idx size = f.size();

  SUBCASE("req_prod more than the ring size ahead (RING_REQUEST_PROD_OVERFLOW)") {
    raw(mem)->req_prod = size + 1;
    auto n = b.unconsumed_requests();
    REQUIRE_FALSE(n);
    CHECK(n.error() == ring_error::prod_overflow);
    // Latched: even a repaired index does not revive the ring.
    raw(mem)->req_prod = 1;
    CHECK(b.unconsumed_requests().error() == ring_error::prod_overflow);
    CHECK(b.take_request().error() == ring_error::prod_overflow);
    CHECK(b.final_check().error() == ring_error::prod_overflow);
    CHECK(b.push().error() == ring_error::prod_overflow);
    CHECK(b.push_and_check_notify().error() == ring_error::prod_overflow);
    CHECK(b.claim() == nullptr);
    CHECK(b.broken() == ring_error::prod_overflow);
  }
  SUBCASE("exactly the ring size ahead is legal") {
    raw(mem)->req_prod = size;
    CHECK(*b.unconsumed_requests() == size);
  }
  SUBCASE("req_prod moved back behind what we consumed") {
    raw(mem)->req_prod = 4;
    REQUIRE(b.consume_requests(4, [](const xbt_request&) {}));
    raw(mem)->req_prod = 2;
    CHECK(b.unconsumed_requests().error() == ring_error::prod_overflow);
  }
  SUBCASE("req_prod beyond what unanswered requests leave room for") {
    raw(mem)->req_prod = 4;
    REQUIRE(b.consume_requests(4, [](const xbt_request&) {}));
    // Four requests taken, none answered: the frontend can have only size - 4 more.
    raw(mem)->req_prod = size + 1;
    CHECK(b.unconsumed_requests().error() == ring_error::prod_overflow);
  }
  SUBCASE("responses for requests we never published (RING_RESPONSE_PROD_OVERFLOW and less)") {
    for (std::uint32_t i = 0; i < 3; ++i) REQUIRE(f.produce(make_request(i)));
    REQUIRE(f.push());
    REQUIRE(f.produce(make_request(3)));  // claimed, not pushed: cannot be answered
    raw(mem)->rsp_prod = 4;
    auto n = f.unconsumed_responses();
    REQUIRE_FALSE(n);
    CHECK(n.error() == ring_error::prod_overflow);
    raw(mem)->rsp_prod = 3;
    CHECK(f.take_response().error() == ring_error::prod_overflow);
    CHECK(f.final_check(4).error() == ring_error::prod_overflow);
    CHECK(f.push().error() == ring_error::prod_overflow);
    CHECK(f.claim() == nullptr);
    CHECK(f.free_requests() == 0);
    CHECK(f.broken() == ring_error::prod_overflow);
  }
  SUBCASE("a huge index is one check, not a long loop") {
    raw(mem)->req_prod = 0x80000000u;
    std::uint32_t calls = 0;
    CHECK_FALSE(b.consume_requests(0xffffffffu, [&](const xbt_request&) { ++calls; }));
    CHECK(calls == 0);
  }
}

TEST_CASE("a slot changed by the peer after we took it cannot change what we act on") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  REQUIRE(f.produce(make_request(7)));
  REQUIRE(f.push());

  // The handler validates the request, then the hostile frontend rewrites the slot (as a
  // second vCPU could between two fetches), then the handler acts on what it validated.
  xbt_request* shared_slot = &raw(mem)->ring[0].req;
  bool acted = false;
  auto n = b.consume_requests(1, [&](const xbt_request& r) {
    const bool valid = r.len <= sizeof r.data;
    REQUIRE(valid);
    REQUIRE(static_cast<const void*>(&r) != static_cast<const void*>(shared_slot));
    shared_slot->len = 0xffffffffu;  // would overflow data[] if re-read
    shared_slot->seq = 999;
    CHECK(r.len == make_request(7).len);
    CHECK(r.seq == 7);
    const xbt_request original = make_request(7);
    CHECK(xbt_checksum(&r) == xbt_checksum(&original));
    acted = true;
  });
  REQUIRE(n);
  CHECK(*n == 1);
  CHECK(acted);
  // take_request hands out a value, never a pointer into the page.
  static_assert(std::is_same_v<decltype(b.take_request())::value_type, std::optional<xbt_request>>);
}

TEST_CASE("a peer rewriting indices and slots concurrently cannot make us act on unvalidated data") {
  // A second thread plays a hostile frontend that never stops scribbling: req_prod jumps
  // between plausible and absurd values, slot lengths flip between valid and huge. Our
  // handler validates the length, then reads data[0..len) and checks the length again: on
  // a private copy both must agree, and ASan would catch a read past data[]. (This is a
  // deliberate data race on the shared page, as a real hostile peer makes: not a TSan test.)
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  std::atomic<bool> stop{false};
  std::thread hostile([&] {
    std::uint32_t x = 12345;
    auto* s = raw(mem);
    while (!stop.load(std::memory_order_relaxed)) {
      x = x * 1103515245u + 12345u;
      const ring_idx prod = (x >> 7) % 3 == 0 ? x : (x >> 9) % 40;
      std::atomic_ref<ring_idx>(s->req_prod).store(prod, std::memory_order_relaxed);
      xbt_request* slot = &s->ring[(x >> 3) % 32].req;
      slot->len = (x & 1) ? 0xffffffffu : (x >> 11) % 49;
      slot->data[(x >> 5) % 48] = static_cast<std::uint8_t>(x);
    }
  });
  std::uint64_t acted = 0, rejected = 0, broken = 0, sum_all = 0;
  // At least 20000 rounds, and on until both outcomes were seen: the scheduler decides how
  // often the hostile thread runs, so the loop counts outcomes, never time.
  for (std::uint64_t round = 0; round < 20000 || ((broken == 0 || acted == 0) && round < 50'000'000); ++round) {
    if (round % 256 == 0) std::this_thread::yield();
    auto b = must(back::attach(mem.span()));
    auto n = b.consume_requests(32, [&](const xbt_request& r) {
      const std::uint32_t len = r.len;
      if (len > sizeof r.data) {
        ++rejected;
        return;
      }
      std::uint32_t sum = 0;
      for (std::uint32_t i = 0; i < r.len; ++i) sum += r.data[i];  // re-reads r.len
      CHECK(r.len == len);                                         // the copy did not change under us
      ++acted;
      sum_all += sum;
      (void)b.produce(answer(r));
    });
    if (!n) ++broken;  // latched for this attachment; the next round re-attaches
  }
  stop = true;
  hostile.join();
  MESSAGE("acted on " << acted << " requests (byte sum " << sum_all << "), rejected " << rejected << ", ring broken "
                      << broken << " times");
  CHECK(broken > 0);  // the absurd indices were seen and refused
  CHECK(acted > 0);   // and valid-looking requests were still served
  (void)f;
}

TEST_CASE("final_check(k) asks to be notified only after k more messages") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  CHECK_FALSE(*b.final_check(4));
  CHECK(raw(mem)->req_event == 4);
  for (std::uint32_t i = 0; i < 3; ++i) {
    REQUIRE(f.produce(make_request(i)));
    CHECK_FALSE(*f.push_and_check_notify());  // 1, 2, 3: below the event
  }
  // Three pending but fewer than k: still asleep (the caller's timeout bounds this).
  CHECK_FALSE(*b.final_check(4));
  REQUIRE(f.produce(make_request(3)));
  CHECK(*f.push_and_check_notify());  // the 4th crosses req_event
  CHECK(*b.final_check(4));
  SUBCASE("the frontend never waits for more responses than it has requests out") {
    CHECK_FALSE(*f.final_check(10));
    CHECK(raw(mem)->rsp_event == 4);  // 4 requests published, none answered
    REQUIRE(b.consume_requests(100, [&](const xbt_request& r) { REQUIRE(b.produce(answer(r))); }));
    CHECK(*b.push_and_check_notify());  // the 4th response crosses rsp_event
    CHECK(*f.final_check(10));
    REQUIRE(f.consume_responses(100, [](const xbt_response&) {}));
    CHECK_FALSE(*f.final_check(10));
    CHECK(raw(mem)->rsp_event == 5);  // nothing out: plain "next message"
  }
  SUBCASE("k larger than the ring is clamped to the ring size") {
    REQUIRE(b.consume_requests(100, [&](const xbt_request& r) { REQUIRE(b.produce(answer(r))); }));
    CHECK_FALSE(*b.final_check(100000));
    CHECK(raw(mem)->req_event == 4 + b.size());
  }
}

TEST_CASE("id_tracker accepts only responses to outstanding requests") {
  xenbus::id_tracker<4> ids;
  auto a = ids.issue(1);
  auto c = ids.issue(2);
  REQUIRE(a);
  REQUIRE(c);
  CHECK(*a != *c);
  CHECK(ids.outstanding() == 2);

  auto t = ids.complete(*c);
  REQUIRE(t);
  CHECK(*t == 2);  // the tag: compare with the response's operation
  CHECK(ids.complete(*c).error() == xenbus::response_id_error::duplicate);
  CHECK(ids.complete(4).error() == xenbus::response_id_error::out_of_range);
  CHECK(ids.complete(0xffffffffffffffffull).error() == xenbus::response_id_error::out_of_range);
  CHECK(ids.complete(3).error() == xenbus::response_id_error::unsolicited);
  CHECK(ids.is_outstanding(*a));
  CHECK_FALSE(ids.is_outstanding(*c));

  SUBCASE("exhaustion and FIFO reuse of freed ids") {
    auto d = ids.issue();
    auto e = ids.issue();
    auto g = ids.issue();
    REQUIRE((d && e && g));
    CHECK(*d != *c);
    CHECK(*e != *c);
    CHECK(*g == *c);  // never-used ids first, the freed id last
    CHECK(ids.issue().error() == xenbus::response_id_error::exhausted);
    REQUIRE(ids.complete(*a));
    auto again = ids.issue();
    REQUIRE(again);
    CHECK(*again == *a);
  }
}

static_assert([] {
  // The tracker works at compile time too, so the core can use it anywhere.
  xenbus::id_tracker<2> ids;
  auto a = ids.issue(5);
  return a && ids.complete(*a).value_or(0) == 5 && !ids.complete(*a);
}());

TEST_CASE("produce_n fills a batch in place with one capacity check, across the index wrap") {
  shared_pages mem(1);
  const ring_idx start = 0xffffffffu - 3;  // the batch crosses 2^32
  auto f = must(front::init(mem.span(), start));
  auto b = must(back::attach(mem.span(), start));
  const ring_idx size = f.size();

  std::uint32_t seq = 0;
  auto fill = [&seq](xbt_request& slot) { xbt_fill(&slot, seq++); };
  CHECK(f.produce_n(0, fill) == 0);
  CHECK(f.produce_n(10, fill) == 10);
  CHECK(f.unpushed() == 10);
  CHECK(f.req_prod_pvt() == start + 10);
  CHECK(raw(mem)->req_prod == start);  // nothing visible before the push
  // Asking for more than is free fills exactly the free slots, never one more.
  CHECK(f.produce_n(0xffffffffu, fill) == size - 10);
  CHECK(f.full());
  CHECK(f.produce_n(1, fill) == 0);
  CHECK(seq == size);
  REQUIRE(f.push());

  std::vector<xbt_request> got(size);
  auto n = b.take_requests(got);
  REQUIRE(n);
  REQUIRE(*n == size);
  for (std::uint32_t i = 0; i < size; ++i) {
    CAPTURE(i);
    const xbt_request want = make_request(i);
    CHECK(std::memcmp(&got[i], &want, sizeof want) == 0);
  }
}

TEST_CASE("produce_n on a broken ring fills nothing") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  REQUIRE(f.produce(make_request(0)));
  REQUIRE(f.push());
  raw(mem)->rsp_prod = 2;  // answers a request we never published
  REQUIRE_FALSE(f.unconsumed_responses());
  std::uint32_t calls = 0;
  CHECK(f.produce_n(5, [&calls](xbt_request&) { ++calls; }) == 0);
  CHECK(calls == 0);
}

TEST_CASE("respond answers each request in place from its private copy") {
  shared_pages mem(1);
  const ring_idx start = 0xffffffffu - 2;
  auto f = must(front::init(mem.span(), start));
  auto b = must(back::attach(mem.span(), start));

  for (std::uint32_t i = 0; i < 6; ++i) REQUIRE(f.produce(make_request(i)));
  REQUIRE(f.push());
  std::uint32_t calls = 0;
  auto n = b.respond(4, [&calls](const xbt_request& q, xbt_response& slot) {
    ++calls;
    slot = answer(q);
  });
  REQUIRE(n);
  CHECK(*n == 4);  // bounded by max
  CHECK(calls == 4);
  CHECK(b.awaiting_response() == 0);
  CHECK(b.unpushed() == 4);
  CHECK(raw(mem)->rsp_prod == start);  // visible only after the push
  REQUIRE(b.push());
  auto rest = b.respond(100, [](const xbt_request& q, xbt_response& slot) { slot = answer(q); });
  REQUIRE(rest);
  CHECK(*rest == 2);
  REQUIRE(b.push());

  std::vector<xbt_response> got(8);
  auto m = f.take_responses(got);
  REQUIRE(m);
  REQUIRE(*m == 6);
  for (std::uint32_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    const xbt_request q = make_request(i);
    CHECK(got[i].seq == i);
    CHECK(got[i].id == q.id);
    CHECK(got[i].sum == xbt_checksum(&q));
  }
}

TEST_CASE("respond waits for earlier requests taken without an answer") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  for (std::uint32_t i = 0; i < 3; ++i) REQUIRE(f.produce(make_request(i)));
  REQUIRE(f.push());
  REQUIRE(b.take_request());  // taken, not answered
  std::uint32_t calls = 0;
  auto n = b.respond(8, [&calls](const xbt_request&, xbt_response&) { ++calls; });
  REQUIRE(n);
  CHECK(*n == 0);
  CHECK(calls == 0);
  REQUIRE(b.produce(xbt_response{}));
  auto rest = b.respond(8, [&calls](const xbt_request&, xbt_response&) { ++calls; });
  REQUIRE(rest);
  CHECK(*rest == 2);
  CHECK(calls == 2);
}

TEST_CASE("respond against a hostile frontend: overflow latches, slot rewrites are not seen") {
  shared_pages mem(1);
  auto b = must(back::attach(mem.span()));
  const ring_idx size = b.size();
  std::uint32_t calls = 0;
  auto count = [&calls](const xbt_request&, xbt_response&) { ++calls; };

  SUBCASE("req_prod more than the ring size ahead") {
    raw(mem)->req_prod = size + 1;
    auto n = b.respond(0xffffffffu, count);
    REQUIRE_FALSE(n);
    CHECK(n.error() == ring_error::prod_overflow);
    CHECK(calls == 0);
    raw(mem)->req_prod = 1;  // latched
    CHECK(b.respond(1, count).error() == ring_error::prod_overflow);
    CHECK(calls == 0);
  }
  SUBCASE("a huge index is one check, not a long loop") {
    raw(mem)->req_prod = 0x80000000u;
    CHECK_FALSE(b.respond(0xffffffffu, count));
    CHECK(calls == 0);
  }
  SUBCASE("req_prod moved back behind what we answered") {
    raw(mem)->req_prod = 4;
    REQUIRE(*b.respond(8, count) == 4);
    raw(mem)->req_prod = 3;
    CHECK(b.respond(8, count).error() == ring_error::prod_overflow);
    CHECK(calls == 4);
  }
  SUBCASE("the request is copied before the response overwrites its slot") {
    xbt_request* shared_slot = &raw(mem)->ring[0].req;
    xbt_fill(shared_slot, 7);
    raw(mem)->req_prod = 1;
    auto n = b.respond(1, [&](const xbt_request& q, xbt_response& slot) {
      REQUIRE(static_cast<const void*>(&q) != static_cast<const void*>(shared_slot));
      shared_slot->len = 0xffffffffu;  // the peer rewrites the slot after our copy
      shared_slot->seq = 999;
      slot = answer(q);  // and our response overwrites it too
      CHECK(q.seq == 7);
      CHECK(q.len == make_request(7).len);
      ++calls;
    });
    REQUIRE(n);
    CHECK(*n == 1);
    const xbt_request original = make_request(7);
    CHECK(raw(mem)->ring[0].rsp.seq == 7);
    CHECK(raw(mem)->ring[0].rsp.sum == xbt_checksum(&original));
  }
}

TEST_CASE("consume loops see a consistent ring from the handler") {
  shared_pages mem(1);
  auto f = must(front::init(mem.span()));
  auto b = must(back::attach(mem.span()));
  for (std::uint32_t i = 0; i < 4; ++i) REQUIRE(f.produce(make_request(i)));
  REQUIRE(f.push());
  // The handler answers through claim(): the loop must have advanced req_cons first.
  auto n = b.consume_requests(8, [&b](const xbt_request& q) {
    xbt_response* slot = b.claim();
    REQUIRE(slot != nullptr);
    *slot = answer(q);
  });
  REQUIRE(n);
  CHECK(*n == 4);
  REQUIRE(b.push());
  ring_idx seen = 0;
  auto m = f.consume_responses(8, [&](const xbt_response& r) {
    CHECK(r.seq == seen);
    ++seen;
    CHECK(f.rsp_cons() == seen);
  });
  REQUIRE(m);
  CHECK(*m == 4);
}
