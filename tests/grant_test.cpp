// Tests include/xenbus/grant.hpp through posix::grant_table (include/xenbus/posix/grant.hpp).
#include <xenbus/posix/fd_passing.hpp>
#include <xenbus/posix/grant.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstring>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using xenbus::grant_errc;
using xenbus::grant_ref;
using xenbus::posix::grant_table;
using xenbus::posix::machine;

namespace {
machine make_machine(std::uint32_t frames = 8) {
  auto m = machine::create({.frames = frames, .domains = 4, .grants_per_domain = 8, .ports_per_domain = 4});
  REQUIRE(m.has_value());
  return std::move(*m);
}
}  // namespace

TEST_CASE("a granted page is the same memory on both sides") {
  machine m = make_machine();
  grant_table front{m, 1}, back{m, 0};
  std::array<grant_ref, 2> refs{};
  auto pages = front.share(0, refs, true);
  REQUIRE(pages.has_value());
  CHECK(pages->size() == 2 * xenbus::xen_page_size);
  auto* mine = static_cast<unsigned char*>(pages->data());
  CHECK(mine[0] == 0);
  auto mapped = back.map(1, refs, true);
  REQUIRE(mapped.has_value());
  auto* theirs = static_cast<unsigned char*>(mapped->data());
  mine[4096 + 7] = 42;
  CHECK(theirs[4096 + 7] == 42);
  theirs[3] = 9;
  CHECK(mine[3] == 9);
}

TEST_CASE("a peer maps only what was granted to it, as granted") {
  machine m = make_machine();
  grant_table front{m, 1}, back{m, 0}, other{m, 2};
  std::array<grant_ref, 1> refs{};
  auto ro = front.share(0, refs, false);
  REQUIRE(ro.has_value());
  CHECK(other.map(1, refs, false).error().code == grant_errc::bad_ref);  // not the grantee
  CHECK(back.map(1, refs, true).error().code == grant_errc::read_only);
  CHECK(back.map(1, refs, false).has_value());
  const std::array<grant_ref, 1> garbage{7777};
  CHECK(back.map(1, garbage, false).error().code == grant_errc::bad_ref);
  CHECK(back.map(3, refs, false).error().code == grant_errc::bad_ref);  // nothing granted there
  CHECK(back.map(1, std::span<const grant_ref>{}, false).error().code == grant_errc::bad_count);
}

TEST_CASE("ending a grant revokes it, and a page still mapped is not recycled") {
  machine m = make_machine(2);
  grant_table front{m, 1}, back{m, 0};
  std::array<grant_ref, 1> refs{};
  {
    auto pages = front.share(0, refs, true);
    REQUIRE(pages.has_value());
  }
  CHECK(back.map(1, refs, true).error().code == grant_errc::bad_ref);
  std::array<grant_ref, 2> two{};
  auto pages = front.share(0, two, true);
  REQUIRE(pages.has_value());
  CHECK(front.share(0, refs, true).error().code == grant_errc::no_space);  // both frames in use
  {
    auto mapped = back.map(1, two, true);
    REQUIRE(mapped.has_value());
    static_cast<char*>(pages->data())[0] = 'x';
    { auto gone = std::move(*pages); }  // the owner ends access while the peer maps it
    CHECK(static_cast<char*>(mapped->data())[0] == 'x');
    CHECK(m.leaked_frames() == 2);
  }
}

TEST_CASE("a child process maps and writes the parent's granted page") {
  machine m = make_machine();
  grant_table front{m, 1};
  std::array<grant_ref, 1> refs{};
  auto pages = front.share(0, refs, true);
  REQUIRE(pages.has_value());
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    grant_table back{m, 0};
    auto mapped = back.map(1, refs, true);
    if (!mapped) ::_exit(2);
    std::memcpy(mapped->data(), "from the backend", 17);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(std::strcmp(static_cast<const char*>(pages->data()), "from the backend") == 0);
}

TEST_CASE("a machine handed over a unix socket (SCM_RIGHTS) shares its pages") {
  machine m = make_machine();
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  REQUIRE(xenbus::posix::send_fd(sv[0], m.fd()).has_value());
  auto fd = xenbus::posix::receive_fd(sv[1]);
  REQUIRE(fd.has_value());
  auto other = machine::attach(*fd);  // as an unrelated process would, from the socket
  REQUIRE(other.has_value());
  CHECK(other->header().instance == m.header().instance);
  grant_table front{m, 1}, back{*other, 0};
  std::array<grant_ref, 1> refs{};
  auto pages = front.share(0, refs, true);
  REQUIRE(pages.has_value());
  auto mapped = back.map(1, refs, false);
  REQUIRE(mapped.has_value());
  static_cast<char*>(pages->data())[100] = 'q';
  CHECK(static_cast<const char*>(mapped->data())[100] == 'q');
  SUBCASE("a message without a descriptor is refused") {
    REQUIRE(::send(sv[0], "x", 1, 0) == 1);
    CHECK(xenbus::posix::receive_fd(sv[1]).error() == EBADMSG);
  }
  ::close(sv[0]);
  ::close(sv[1]);
}
