// Interop: Xen's own libxenstore (xs_open, transactions, watches, permissions, domains)
// talking to include/xenbus/posix/xenstore/server.hpp, unchanged, over the socket.
#include <xenbus/posix/xenstore/server.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <unistd.h>

extern "C" {
#include <xenstore.h>
}

namespace xs = xenbus::xenstore;

namespace {

/// Our server on a private socket, and a libxenstore handle opened through XENSTORED_PATH.
struct fixture {
  std::string path = "/tmp/xenbus-libxs-" + std::to_string(::getpid()) + "-" + std::to_string(++seq()) + ".sock";
  xs::server_thread srv{path};
  xs_handle* h = nullptr;
  fixture() {
    REQUIRE(srv.ok());
    ::setenv("XENSTORED_PATH", path.c_str(), 1);
    h = open();
  }
  ~fixture() {
    if (h) xs_close(h);
  }
  xs_handle* open() {
    xs_handle* x = xs_open(0);
    REQUIRE(x != nullptr);
    return x;
  }
  std::string read(const char* p, xs_transaction_t t = XBT_NULL) {
    unsigned len = 0;
    void* v = xs_read(h, t, p, &len);
    if (!v) return "<errno " + std::to_string(errno) + ">";
    std::string s{static_cast<char*>(v), len};
    std::free(v);
    return s;
  }
  static int& seq() {
    static int s = 0;
    return s;
  }
};

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

}  // namespace

TEST_CASE("libxenstore: read, write, mkdir, directory, rm") {
  fixture f;
  REQUIRE(xs_write(f.h, XBT_NULL, "/vm/1/name", "guest", 5));
  CHECK(f.read("/vm/1/name") == "guest");
  REQUIRE(xs_mkdir(f.h, XBT_NULL, "/vm/1/device"));
  unsigned num = 0;
  char** d = xs_directory(f.h, XBT_NULL, "/vm/1", &num);
  REQUIRE(d != nullptr);
  CHECK(num == 2);
  CHECK(std::string{d[0]} == "name");
  CHECK(std::string{d[1]} == "device");
  std::free(d);
  REQUIRE(xs_rm(f.h, XBT_NULL, "/vm"));
  CHECK(xs_read(f.h, XBT_NULL, "/vm/1/name", &num) == nullptr);
  CHECK(errno == ENOENT);
  CHECK_FALSE(xs_write(f.h, XBT_NULL, "/bad//path", "x", 1));
  CHECK(errno == EINVAL);
}

TEST_CASE("libxenstore: a directory too big for one reply comes through DIRECTORY_PART") {
  fixture f;
  std::set<std::string> expect;
  for (int i = 0; i < 400; ++i) {
    const std::string name = "a-fairly-long-child-node-name-" + std::to_string(i);
    REQUIRE(xs_write(f.h, XBT_NULL, ("/big/" + name).c_str(), "", 0));
    expect.insert(name);
  }
  unsigned num = 0;
  char** d = xs_directory(f.h, XBT_NULL, "/big", &num);
  REQUIRE(d != nullptr);
  std::set<std::string> got;
  for (unsigned i = 0; i < num; ++i) got.insert(d[i]);
  std::free(d);
  CHECK(got == expect);
}

TEST_CASE("libxenstore: permissions round-trip") {
  fixture f;
  REQUIRE(xs_write(f.h, XBT_NULL, "/p", "", 0));
  xs_permissions perms[2] = {{0, XS_PERM_NONE}, {5, XS_PERM_READ}};
  REQUIRE(xs_set_permissions(f.h, XBT_NULL, "/p", perms, 2));
  unsigned num = 0;
  xs_permissions* got = xs_get_permissions(f.h, XBT_NULL, "/p", &num);
  REQUIRE(got != nullptr);
  REQUIRE(num == 2);
  CHECK(got[0].id == 0);
  CHECK(got[0].perms == XS_PERM_NONE);
  CHECK(got[1].id == 5);
  CHECK(got[1].perms == XS_PERM_READ);
  std::free(got);
}

TEST_CASE("libxenstore: transactions commit, abort, and conflict with EAGAIN") {
  fixture f;
  xs_handle* other = f.open();
  REQUIRE(xs_write(f.h, XBT_NULL, "/c", "1", 1));
  xs_transaction_t t = xs_transaction_start(f.h);
  REQUIRE(t != XBT_NULL);
  CHECK(f.read("/c", t) == "1");
  REQUIRE(xs_write(f.h, t, "/c", "2", 1));
  CHECK(f.read("/c") == "1");
  REQUIRE(xs_transaction_end(f.h, t, true));  // abort
  CHECK(f.read("/c") == "1");

  t = xs_transaction_start(f.h);
  CHECK(f.read("/c", t) == "1");
  REQUIRE(xs_write(other, XBT_NULL, "/c", "other", 5));
  REQUIRE(xs_write(f.h, t, "/c", "mine", 4));
  CHECK_FALSE(xs_transaction_end(f.h, t, false));  // commit
  CHECK(errno == EAGAIN);
  CHECK(f.read("/c") == "other");

  t = xs_transaction_start(f.h);
  REQUIRE(xs_write(f.h, t, "/c", "mine", 4));
  REQUIRE(xs_transaction_end(f.h, t, false));
  CHECK(f.read("/c") == "mine");
  xs_close(other);
}

TEST_CASE("libxenstore: watches fire on registration and on changes, unwatch stops them") {
  fixture f;
  xs_handle* writer = f.open();
  REQUIRE(xs_watch(f.h, "/w", "tok"));
  const int fd = xs_fileno(f.h);
  REQUIRE(fd >= 0);
  auto next = [&]() -> std::pair<std::string, std::string> {
    if (!wait_readable(fd, 5000)) return {};
    unsigned n = 0;
    char** v = xs_read_watch(f.h, &n);
    if (!v) return {};
    std::pair<std::string, std::string> r{v[XS_WATCH_PATH], v[XS_WATCH_TOKEN]};
    std::free(v);
    return r;
  };
  CHECK(next() == std::pair<std::string, std::string>{"/w", "tok"});
  REQUIRE(xs_write(writer, XBT_NULL, "/w/a", "1", 1));
  CHECK(next() == std::pair<std::string, std::string>{"/w/a", "tok"});
  REQUIRE(xs_rm(writer, XBT_NULL, "/w"));
  CHECK(next() == std::pair<std::string, std::string>{"/w", "tok"});
  REQUIRE(xs_unwatch(f.h, "/w", "tok"));
  REQUIRE(xs_write(writer, XBT_NULL, "/w/b", "1", 1));
  // A read on the same handle round-trips after any event would have been queued.
  CHECK(f.read("/w/b") == "1");
  CHECK_FALSE(wait_readable(fd, 100));
  xs_close(writer);
}

TEST_CASE("libxenstore: domain operations") {
  fixture f;
  char* p = xs_get_domain_path(f.h, 7);
  REQUIRE(p != nullptr);
  CHECK(std::string{p} == "/local/domain/7");
  std::free(p);
  CHECK(xs_is_domain_introduced(f.h, 0));
  CHECK_FALSE(xs_is_domain_introduced(f.h, 7));
  REQUIRE(xs_watch(f.h, "@introduceDomain", "i"));
  REQUIRE(xs_introduce_domain(f.h, 7, 1234, 5));
  CHECK(xs_is_domain_introduced(f.h, 7));
  REQUIRE(xs_resume_domain(f.h, 7));
  REQUIRE(xs_release_domain(f.h, 7));
  CHECK_FALSE(xs_is_domain_introduced(f.h, 7));
  unsigned n = 0;
  std::vector<std::string> seen;
  while (seen.size() < 2 && wait_readable(xs_fileno(f.h), 5000)) {
    char** v = xs_read_watch(f.h, &n);
    REQUIRE(v != nullptr);
    seen.emplace_back(v[XS_WATCH_PATH]);
    std::free(v);
  }
  CHECK(seen == std::vector<std::string>{"@introduceDomain", "@introduceDomain"});
}
