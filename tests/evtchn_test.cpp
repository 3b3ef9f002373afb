// Tests include/xenbus/evtchn.hpp through posix::evtchn_handle (include/xenbus/posix/evtchn.hpp).
#include <xenbus/posix/evtchn.hpp>

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

using xenbus::evtchn_errc;
using xenbus::posix::evtchn_handle;
using xenbus::posix::machine;
using xenbus::posix::wait_readable;

namespace {
machine make_machine() {
  auto m = machine::create({.frames = 16, .domains = 4, .grants_per_domain = 16, .ports_per_domain = 8});
  REQUIRE(m.has_value());
  return std::move(*m);
}
}  // namespace

TEST_CASE("an interdomain channel delivers a notification to the other domain once") {
  machine m = make_machine();
  auto front = evtchn_handle::open(m, 1);
  auto back = evtchn_handle::open(m, 0);
  REQUIRE(front.has_value());
  REQUIRE(back.has_value());
  auto offered = front->bind_unbound(0);
  REQUIRE(offered.has_value());
  auto local = back->bind_interdomain(1, *offered);
  REQUIRE(local.has_value());

  CHECK(back->notify(*local).has_value());
  CHECK(back->notify(*local).has_value());  // coalesces with the first: one pending port
  REQUIRE(wait_readable(front->fd(), 1000));
  auto p = front->pending();
  REQUIRE(p.has_value());
  CHECK(*p == *offered);
  CHECK(front->pending().error().code == evtchn_errc::would_block);

  SUBCASE("a raise while masked is delivered on unmask") {
    CHECK(back->notify(*local).has_value());
    CHECK_FALSE(wait_readable(front->fd(), 0));
    CHECK(front->unmask(*p).has_value());
    REQUIRE(wait_readable(front->fd(), 1000));
    CHECK(front->pending().value() == *offered);
  }
  SUBCASE("the other direction works too") {
    CHECK(front->notify(*offered).has_value());
    REQUIRE(wait_readable(back->fd(), 1000));
    CHECK(back->pending().value() == *local);
  }
}

TEST_CASE("binding refuses ports that were not offered to us") {
  machine m = make_machine();
  auto a = evtchn_handle::open(m, 1);
  auto b = evtchn_handle::open(m, 2);
  auto c = evtchn_handle::open(m, 3);
  REQUIRE((a && b && c));
  auto offered = a->bind_unbound(2);  // offered to domain 2 only
  REQUIRE(offered.has_value());
  CHECK(c->bind_interdomain(1, *offered).error().code == evtchn_errc::bad_remote);
  CHECK(b->bind_interdomain(1, 0).error().code == evtchn_errc::bad_remote);
  CHECK(b->bind_interdomain(1, 999).error().code == evtchn_errc::bad_remote);
  CHECK(b->bind_interdomain(1, *offered).has_value());
  CHECK(c->bind_interdomain(1, *offered).error().code == evtchn_errc::bad_remote);  // taken
  CHECK(b->notify(12345).error().code == evtchn_errc::bad_port);
  CHECK(c->unmask(*offered).error().code == evtchn_errc::bad_port);  // not c's port
}

TEST_CASE("closing one end leaves the other unbound, ready for a new partner") {
  machine m = make_machine();
  auto front = evtchn_handle::open(m, 1);
  REQUIRE(front.has_value());
  auto offered = front->bind_unbound(0);
  REQUIRE(offered.has_value());
  {
    auto back = evtchn_handle::open(m, 0);
    REQUIRE(back.has_value());
    REQUIRE(back->bind_interdomain(1, *offered).has_value());
  }                                            // the backend goes away (its handle closes every port)
  CHECK(front->notify(*offered).has_value());  // dropped silently, as Xen does
  auto again = evtchn_handle::open(m, 0);
  REQUIRE(again.has_value());
  auto local = again->bind_interdomain(1, *offered);
  REQUIRE(local.has_value());
  CHECK(again->notify(*local).has_value());
  REQUIRE(wait_readable(front->fd(), 1000));
  CHECK(front->pending().value() == *offered);
}

TEST_CASE("a domain runs out of ports with an error, not a crash") {
  machine m = make_machine();
  auto h = evtchn_handle::open(m, 1);
  REQUIRE(h.has_value());
  for (int i = 1; i < 8; ++i) REQUIRE(h->bind_unbound(0).has_value());
  CHECK(h->bind_unbound(0).error().code == evtchn_errc::no_free_port);
  CHECK(evtchn_handle::open(m, 4).error().code == evtchn_errc::unavailable);
}

TEST_CASE("notifications cross a process boundary") {
  machine m = make_machine();
  auto front = evtchn_handle::open(m, 1);
  REQUIRE(front.has_value());
  auto offered = front->bind_unbound(0);
  REQUIRE(offered.has_value());
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child stands in for the backend domain: it inherited the machine's fd.
    auto back = evtchn_handle::open(m, 0);
    if (!back) ::_exit(2);
    auto local = back->bind_interdomain(1, *offered);
    if (!local || !back->notify(*local)) ::_exit(3);
    ::_exit(wait_readable(back->fd(), 5000) && back->pending() ? 0 : 4);
  }
  REQUIRE(wait_readable(front->fd(), 5000));
  CHECK(front->pending().value() == *offered);
  CHECK(front->notify(*offered).has_value());
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
