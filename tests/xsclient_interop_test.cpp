// Tests include/xenbus/posix/xenstore/client.hpp next to Xen's own clients on one server: the real
// libxenstore (xs_open, transactions, xenstore::watch) and the xenstore-* tools, against our server
// in-process and against the xenbus-xenstored program.
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/posix/xenstore/server.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include <xenstore.h>
}

extern char** environ;

using namespace std::chrono_literals;
namespace xenstore = xenbus::xenstore;

namespace {

std::string temp_path(const char* tag) {
  static int seq = 0;
  return "/tmp/xenbus-xsclient-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++seq);
}

/// A libxenstore handle on the socket at `path` (libxenstore reads XENSTORED_PATH).
struct libxs {
  xs_handle* h = nullptr;
  explicit libxs(const std::string& path) {
    ::setenv("XENSTORED_PATH", path.c_str(), 1);
    h = xs_open(XS_OPEN_SOCKETONLY);
    REQUIRE(h != nullptr);
  }
  ~libxs() { xs_close(h); }
  libxs(const libxs&) = delete;
  libxs& operator=(const libxs&) = delete;
  std::string read(const char* p, xs_transaction_t t = XBT_NULL) {
    unsigned len = 0;
    void* v = xs_read(h, t, p, &len);
    if (!v) return "<errno " + std::to_string(errno) + ">";
    std::string s(static_cast<char*>(v), len);
    std::free(v);
    return s;
  }
  bool write(const char* p, const std::string& v, xs_transaction_t t = XBT_NULL) {
    return xs_write(h, t, p, v.data(), static_cast<unsigned>(v.size()));
  }
  /// Waits for a watch event on `want` (other events, e.g. the registration one, skipped).
  bool wait_event(const std::string& want, const char* token) {
    for (int i = 0; i < 20; ++i) {
      pollfd p{xs_fileno(h), POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) return false;
      unsigned n = 0;
      char** ev = xs_read_watch(h, &n);
      if (!ev) return false;
      const bool hit = want == ev[XS_WATCH_PATH] && std::strcmp(ev[XS_WATCH_TOKEN], token) == 0;
      std::free(ev);
      if (hit) return true;
    }
    return false;
  }
};

/// Runs a shell command with XENSTORED_PATH set; returns its stdout, or "<exit N>".
std::string sh(const std::string& socket, const std::string& cmd) {
  const std::string full = "XENSTORED_PATH='" + socket + "' " + cmd;
  FILE* f = ::popen(full.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  std::array<char, 256> buf;
  while (auto n = std::fread(buf.data(), 1, buf.size(), f)) out.append(buf.data(), n);
  const int st = ::pclose(f);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return "<exit " + std::to_string(WEXITSTATUS(st)) + ">";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

/// The xenbus-xenstored program on a private socket, for as long as this object lives.
struct xenstored_process {
  std::string dir = temp_path("xenstored");
  std::string socket = dir + "/socket";
  pid_t pid = -1;
  xenstored_process() {
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    const std::string pidfile = dir + "/pid";
    std::vector<std::string> args = {XSCLIENT_XENSTORED, "--no-fork", "--socket", socket, "--pid-file", pidfile};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
    for (int i = 0; i < 500 && ::access(pidfile.c_str(), F_OK) != 0; ++i) ::usleep(10000);
    REQUIRE(::access(pidfile.c_str(), F_OK) == 0);
  }
  ~xenstored_process() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    ::unlink((dir + "/pid").c_str());
    ::unlink(socket.c_str());
    ::rmdir(dir.c_str());
  }
};

}  // namespace

TEST_CASE("libxenstore and our client on one server see each other's writes, perms and watches") {
  xenbus::xenstore::server_thread server{temp_path("srv") + ".sock"};
  REQUIRE(server.ok());
  libxs lx{server.path()};
  auto c = xenstore::client::connect(server.path());
  REQUIRE(c.has_value());

  REQUIRE(lx.write("/interop/from-libxs", "hello"));
  CHECK(c->read("/interop/from-libxs").value() == "hello");
  REQUIRE(c->write("/interop/from-ours", "world").has_value());
  CHECK(lx.read("/interop/from-ours") == "world");
  CHECK(c->directory("/interop").value() == std::vector<std::string>{"from-libxs", "from-ours"});

  SUBCASE("permissions set by one are read by the other") {
    const xenstore::perm ours[] = {{xenstore::access::none, 4}, {xenstore::access::read, 5}};
    REQUIRE(c->set_perms("/interop/from-ours", ours).has_value());
    unsigned n = 0;
    xs_permissions* p = xs_get_permissions(lx.h, XBT_NULL, "/interop/from-ours", &n);
    REQUIRE(p != nullptr);
    REQUIRE(n == 2);
    CHECK(p[0].id == 4);
    CHECK(p[0].perms == XS_PERM_NONE);
    CHECK(p[1].id == 5);
    CHECK(p[1].perms == XS_PERM_READ);
    std::free(p);
    xs_permissions theirs[] = {{6, XS_PERM_READ | XS_PERM_WRITE}, {2, XS_PERM_WRITE}};
    REQUIRE(xs_set_permissions(lx.h, XBT_NULL, "/interop/from-libxs", theirs, 2));
    CHECK(c->get_perms("/interop/from-libxs").value() ==
          std::vector<xenstore::perm>{{xenstore::access::both, 6}, {xenstore::access::write, 2}});
  }
  SUBCASE("our watch sees libxenstore's write") {
    auto w = c->watch("/interop");
    REQUIRE(w.has_value());
    CHECK(w->next(5000ms).value().path == "/interop");
    REQUIRE(lx.write("/interop/new", "1"));
    CHECK(w->next(5000ms).value().path == "/interop/new");
  }
  SUBCASE("libxenstore's watch sees our write") {
    REQUIRE(::xs_watch(lx.h, "/interop", "tok"));
    REQUIRE(c->write("/interop/ours2", "2").has_value());
    CHECK(lx.wait_event("/interop/ours2", "tok"));
    REQUIRE(xs_unwatch(lx.h, "/interop", "tok"));
  }
  SUBCASE("a libxenstore transaction conflicts with our write") {
    xs_transaction_t t = xs_transaction_start(lx.h);
    REQUIRE(t != XBT_NULL);
    CHECK(lx.read("/interop/from-ours", t) == "world");
    REQUIRE(lx.write("/interop/from-ours", "in-tx", t));
    REQUIRE(c->write("/interop/from-ours", "outside").has_value());
    CHECK(!xs_transaction_end(lx.h, t, false));
    CHECK(errno == EAGAIN);
    CHECK(c->read("/interop/from-ours").value() == "outside");
  }
  SUBCASE("our transact retries after a libxenstore write conflicts, and commits") {
    int attempts = 0;
    auto r = c->transact([&](xenstore::tx tx) -> xenbus::xenstore::status {
      ++attempts;
      auto v = c->read("/interop/from-libxs", tx);
      if (!v) return xenbus::unexpected{v.error()};
      if (attempts == 1) lx.write("/interop/from-libxs", "changed");  // conflict, once
      return c->write("/interop/copy", *v, tx);
    });
    REQUIRE(r.has_value());
    CHECK(attempts == 2);
    CHECK(lx.read("/interop/copy") == "changed");
  }
}

TEST_CASE("the xenstore-* tools and our client on one server") {
  xenbus::xenstore::server_thread server{temp_path("tools") + ".sock"};
  REQUIRE(server.ok());
  const auto& s = server.path();
  auto c = xenstore::client::connect(s);
  REQUIRE(c.has_value());
  REQUIRE(c->write("/tools/a", "from-ours").has_value());
  CHECK(sh(s, "xenstore-read /tools/a") == "from-ours");
  CHECK(sh(s, "xenstore-write /tools/b from-tools") == "");
  CHECK(c->read("/tools/b").value() == "from-tools");
  CHECK(sh(s, "xenstore-list /tools") == "a\nb");
  CHECK(sh(s, "xenstore-chmod /tools/a n5 r0") == "");
  CHECK(c->get_perms("/tools/a").value() ==
        std::vector<xenstore::perm>{{xenstore::access::none, 5}, {xenstore::access::read, 0}});
  auto w = c->watch("/tools");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "/tools");
  CHECK(sh(s, "xenstore-rm /tools/b") == "");
  CHECK(w->next(5000ms).value().path == "/tools/b");
  CHECK(c->read("/tools/b").error() == xenstore::errc::enoent);
  CHECK(sh(s, "xenstore-exists /tools/b") == "<exit 1>");
}

TEST_CASE("the xenbus-xenstored program serves our client and libxenstore together") {
  xenstored_process p;
  auto c = xenstore::client::connect(p.socket);
  REQUIRE(c.has_value());
  libxs lx{p.socket};
  REQUIRE(c->write("/prog/x", "1").has_value());
  CHECK(lx.read("/prog/x") == "1");
  auto w = c->watch("/prog");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "/prog");
  REQUIRE(lx.write("/prog/y", "2"));
  CHECK(w->next(5000ms).value().path == "/prog/y");
  CHECK(c->get_domain_path(3).value() == "/local/domain/3");
}

TEST_CASE("libxenstore and our client list the same x@y child and the same directory over 4 KiB") {
  xenbus::xenstore::server_thread server{temp_path("names") + ".sock"};
  REQUIRE(server.ok());
  libxs lx{server.path()};
  auto c = xenstore::client::connect(server.path());
  REQUIRE(c.has_value());
  REQUIRE(lx.write("/names/x@y", "1"));
  auto listed = c->directory("/names");
  REQUIRE(listed.has_value());  // before: refused as a malformed reply, the connection broken
  CHECK(*listed == std::vector<std::string>{"x@y"});
  CHECK(c->health().has_value());
  CHECK(sh(server.path(), "xenstore-list /names") == "x@y");

  std::vector<std::string> made;
  std::size_t bytes = 0;
  for (int i = 0; bytes <= 2 * 4096; ++i) {
    made.push_back("libxs-child-" + std::to_string(i) + "@n");
    bytes += made.back().size() + 1;
    REQUIRE(c->write("/names/big/" + made.back(), "v").has_value());
  }
  unsigned n = 0;
  char** theirs = xs_directory(lx.h, XBT_NULL, "/names/big", &n);  // falls back itself
  REQUIRE(theirs != nullptr);
  std::vector<std::string> libxs_names(theirs, theirs + n);
  std::free(theirs);
  CHECK(libxs_names == made);
  auto ours = c->directory("/names/big");
  REQUIRE(ours.has_value());
  CHECK(*ours == libxs_names);
}
