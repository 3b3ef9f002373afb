// Tests include/xenbus/posix/xenstore/client.hpp against our own server (xenstore::server_thread on a
// unix socket): every operation, conflicts and the transact retry helper, watches end to end.
#include <xenbus/posix/xenstore/client.hpp>
#include <xenbus/posix/xenstore/server.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <cstdlib>

#include <unistd.h>

using namespace std::chrono_literals;
namespace xenstore = xenbus::xenstore;

namespace {

std::string temp_socket(const char* tag) {
  static int seq = 0;
  return "/tmp/xenbus-xsclient-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++seq) +
         ".sock";
}

struct served {
  xenbus::xenstore::server_thread server{temp_socket("srv")};
  xenstore::client connect() {
    REQUIRE(server.ok());
    auto c = xenstore::client::connect(server.path());
    REQUIRE(c.has_value());
    return std::move(*c);
  }
};

}  // namespace

TEST_CASE("our client against our server: nodes, directories, permissions, domain paths") {
  served s;
  auto c = s.connect();
  REQUIRE(c.write("/local/domain/7/device/vif/0/state", "1").has_value());
  CHECK(c.read("/local/domain/7/device/vif/0/state").value() == "1");
  CHECK(c.directory("/local/domain/7/device/vif").value() == std::vector<std::string>{"0"});
  REQUIRE(c.mkdir("/local/domain/7/empty").has_value());
  CHECK(c.read("/local/domain/7/empty").value().empty());
  CHECK(c.directory("/local/domain/7/empty").value().empty());
  REQUIRE(c.rm("/local/domain/7/device").has_value());
  CHECK(c.read("/local/domain/7/device/vif/0/state").error() == xenstore::errc::enoent);

  const xenstore::perm perms[] = {
      {xenstore::access::none, 7}, {xenstore::access::read, 0}, {xenstore::access::both, 3}};
  REQUIRE(c.set_perms("/local/domain/7/empty", perms).has_value());
  CHECK(c.get_perms("/local/domain/7/empty").value() ==
        std::vector<xenstore::perm>(std::begin(perms), std::end(perms)));
  CHECK(c.get_domain_path(7).value() == "/local/domain/7");

  const std::string data(2048, 'd');  // the largest node an unprivileged domain may write
  REQUIRE(c.write("/big", data).has_value());
  CHECK(c.read("/big").value() == data);
  CHECK(c.health().has_value());
}

TEST_CASE("our client against our server: a conflicting commit answers EAGAIN") {
  served s;
  auto a = s.connect();
  auto b = s.connect();
  REQUIRE(a.write("/n", "0").has_value());
  auto tx = a.transaction_start();
  REQUIRE(tx.has_value());
  CHECK(a.read("/n", *tx).value() == "0");
  REQUIRE(a.write("/n", "from-a", *tx).has_value());
  REQUIRE(b.write("/n", "from-b").has_value());
  CHECK(a.read("/n").value() == "from-b");  // outside the transaction
  auto end = a.transaction_end(*tx, true);
  REQUIRE(!end.has_value());
  CHECK(end.error() == xenstore::errc::eagain);
  CHECK(a.read("/n").value() == "from-b");
}

TEST_CASE("transact: concurrent read-modify-write loses no increment") {
  served s;
  {
    auto c = s.connect();
    REQUIRE(c.write("/counter", "0").has_value());
  }
  constexpr int clients = 3;
  constexpr int increments = 20;
  std::atomic<int> committed{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < clients; ++i) {
    ts.emplace_back([&] {
      auto c = xenstore::client::connect(s.server.path());
      if (!c) return;
      for (int k = 0; k < increments; ++k) {
        auto r = c->transact(
            [&](xenstore::tx tx) -> xenbus::xenstore::status {
              auto v = c->read("/counter", tx);
              if (!v) return xenbus::unexpected{v.error()};
              return c->write("/counter", std::to_string(std::stoi(*v) + 1), tx);
            },
            1000);
        // Counted once per successful commit; pairs with the load after join (join orders it).
        if (r) committed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : ts) t.join();
  auto c = s.connect();
  CHECK(committed.load() == clients * increments);
  CHECK(c.read("/counter").value() == std::to_string(committed.load()));
}

TEST_CASE("our client against our server: watches fire, end with the handle, and stay bounded") {
  served s;
  auto writer = s.connect();
  auto watcher = s.connect();
  auto w = watcher.watch("/local/domain/9");
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "/local/domain/9");  // the registration event
  REQUIRE(writer.write("/local/domain/9/state", "4").has_value());
  CHECK(w->next(5000ms).value().path == "/local/domain/9/state");
  REQUIRE(writer.rm("/local/domain/9/state").has_value());
  CHECK(w->next(5000ms).value().path == "/local/domain/9/state");

  SUBCASE("special paths") {
    auto intro = watcher.watch("@introduceDomain");
    REQUIRE(intro.has_value());
    CHECK(intro->next(5000ms).value().path == "@introduceDomain");
  }
  SUBCASE("a flood beyond the queue's capacity is counted, not stored") {
    REQUIRE(writer.mkdir("/flood").has_value());
    auto small = watcher.watch("/flood", 4);
    REQUIRE(small.has_value());
    CHECK(small->next(5000ms).value().path == "/flood");
    for (int i = 0; i < 50; ++i) REQUIRE(writer.write("/flood/n" + std::to_string(i), "x").has_value());
    // Our own request on the watcher's connection is answered after the events it queued.
    REQUIRE(watcher.read("/flood/n0").has_value());
    auto st = small->stats();
    CHECK(st.dropped == 46);
    auto first = small->next(5000ms);
    REQUIRE(first.has_value());
    CHECK(first->path == "/flood/n0");
    CHECK(first->lost == 46);
  }
  SUBCASE("unwatch: no more events for that watch") {
    REQUIRE(w->unwatch().has_value());
    REQUIRE(writer.write("/local/domain/9/again", "1").has_value());
    REQUIRE(watcher.read("/local/domain/9/again").has_value());
    CHECK(watcher.stray_events() == 0);  // the server removed it: nothing even in flight
    CHECK(w->next(0ms).error() == xenstore::errc::closed);
  }
}

TEST_CASE("open() connects where libxenstore's xs_open would: $XENSTORED_PATH first") {
  served s;
  ::setenv("XENSTORED_PATH", s.server.path().c_str(), 1);
  auto c = xenstore::client::open();
  ::unsetenv("XENSTORED_PATH");
  REQUIRE(c.has_value());
  REQUIRE(c->write("/opened", "yes").has_value());
  CHECK(c->read("/opened").value() == "yes");
}

TEST_CASE("our client against our server: a child named x@y is listed, the connection stays up") {
  served s;
  auto guest = s.connect();
  auto tool = s.connect();
  REQUIRE(guest.write("/local/domain/5/data/x@y", "1").has_value());
  REQUIRE(guest.write("/local/domain/5/data/@z", "2").has_value());
  REQUIRE(guest.write("/local/domain/5/data/ok", "3").has_value());
  auto d = tool.directory("/local/domain/5/data");
  REQUIRE(d.has_value());
  CHECK(*d == std::vector<std::string>{"x@y", "@z", "ok"});
  CHECK(tool.health().has_value());
  CHECK(tool.read("/local/domain/5/data/ok").value() == "3");  // later requests still work
}

TEST_CASE("our client against our server: a directory over 4 KiB comes through DIRECTORY_PART") {
  served s;
  auto c = s.connect();
  std::vector<std::string> made;
  std::size_t bytes = 0;
  for (int i = 0; bytes <= 3 * 4096; ++i) {
    made.push_back("child-with-a-fairly-long-name-" + std::to_string(i) + (i % 7 == 0 ? "@x" : ""));
    bytes += made.back().size() + 1;
    REQUIRE(c.write("/big/" + made.back(), "v").has_value());
  }
  auto d = c.directory("/big");
  REQUIRE(d.has_value());
  CHECK(*d == made);  // creation order, as our server keeps it
  CHECK(c.health().has_value());
  SUBCASE("inside a transaction too") {
    auto tx = c.transaction_start();
    REQUIRE(tx.has_value());
    auto in_tx = c.directory("/big", *tx);
    REQUIRE(in_tx.has_value());
    CHECK(*in_tx == made);
    REQUIRE(c.transaction_end(*tx, false).has_value());
  }
}

TEST_CASE("our client against our server: a relative watch's long event path keeps it alive") {
  served s;
  auto c = s.connect();
  auto w = c.watch("data");  // relative: /local/domain/0/data for the socket's dom0
  REQUIRE(w.has_value());
  CHECK(w->next(5000ms).value().path == "data");
  // Written by its absolute path: legal up to 3072 bytes, so its relative path passes 2048.
  const std::string name(2100, 'n');
  REQUIRE(c.write("/local/domain/0/data/" + name, "1").has_value());
  auto e = w->next(5000ms);
  REQUIRE(e.has_value());
  CHECK(e->path == "data/" + name);
  CHECK(c.health().has_value());
}
