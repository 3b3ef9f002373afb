// Tests include/xenbus/hosted/xenstore/store.hpp through wire requests: nodes, permissions,
// transactions, watches, domains and quotas, as a client observes them.
#include "xenstore_test_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace std::string_view_literals;
using xstest::caller;
using xstest::event;
namespace xs = xenbus::xenstore;
using T = xs::msg_type;

TEST_CASE("write, read, directory and rm of nodes") {
  xs::store s;
  caller d0{s, 0, true};
  CHECK(d0.write("/a/b/c", "hello").ok());
  CHECK(d0.read("/a/b/c").payload == "hello");
  CHECK(d0.read("/a/b").payload.empty());  // intermediate nodes are created empty
  CHECK(d0.write("/a/b/d", "").ok());
  CHECK(d0.dir("/a/b").payload == "c\0d\0"sv);  // creation order
  CHECK(d0.write("/a/b/c", std::string("bin\0ary", 7)).ok());
  CHECK(d0.read("/a/b/c").payload == "bin\0ary"sv);
  CHECK(d0.read("/a/x").err() == "ENOENT");
  CHECK(d0.rm("/a/b").ok());
  CHECK(d0.read("/a/b/c").err() == "ENOENT");
  CHECK(d0.dir("/a").payload.empty());
  SUBCASE("rm of a missing node is fine while its parent exists") {
    CHECK(d0.rm("/a/gone").ok());
    CHECK(d0.rm("/a/gone/deeper").err() == "ENOENT");
  }
  SUBCASE("rm of the root is refused") { CHECK(d0.rm("/").err() == "EINVAL"); }
  SUBCASE("mkdir creates once and leaves data alone") {
    CHECK(d0.write("/m", "keep").ok());
    CHECK(d0.mkdir("/m").ok());
    CHECK(d0.read("/m").payload == "keep");
    CHECK(d0.mkdir("/n/o").ok());
    CHECK(d0.read("/n/o").payload.empty());
  }
}

TEST_CASE("relative paths resolve under /local/domain/<domid>") {
  xs::store s;
  caller d0{s, 0, true};
  CHECK(d0.write("/local/domain/7", "").ok());
  CHECK(d0.set_perms("/local/domain/7", {"n7"}).ok());
  caller g{s, 7, false};
  CHECK(g.write("device/vif/0/state", "1").ok());
  CHECK(d0.read("/local/domain/7/device/vif/0/state").payload == "1");
  CHECK(d0.read("xs-rel").err() == "ENOENT");
  CHECK(d0.write("xs-rel", "v").ok());
  CHECK(d0.read("/local/domain/0/xs-rel").payload == "v");
  CHECK(g.call(T::get_domain_path, "7\0"sv).payload == "/local/domain/7\0"sv);
}

TEST_CASE("malformed requests get protocol errors and change nothing") {
  xs::store s;
  caller d0{s, 0, true};
  CHECK(d0.call(T::read, "/a"sv).err() == "EINVAL");  // missing NUL
  CHECK(d0.call(T::write, "/a/"sv).err() == "EINVAL");
  CHECK(d0.call(T::write, "/a b\0v"sv).err() == "EINVAL");
  CHECK(d0.call(T::read, "@introduceDomain\0"sv).err() == "EINVAL");
  CHECK(d0.call(static_cast<T>(20), "\0"sv).err() == "ENOSYS");
  CHECK(d0.call(static_cast<T>(1000), ""sv).err() == "ENOSYS");
  CHECK(d0.call(T::read, "/tool\0"sv, 12345).err() == "ENOENT");  // unknown transaction
  CHECK(d0.dir("/").payload == "local\0tool\0"sv);
}

TEST_CASE("permissions: owner, ACL entries, default access, privileged dom0") {
  xs::store s;
  caller d0{s, 0, true};
  caller g5{s, 5, false};
  caller g6{s, 6, false};
  REQUIRE(d0.write("/shared/x", "data").ok());
  CHECK(d0.get_perms("/shared/x").payload == "n0\0"sv);
  CHECK(g5.read("/shared/x").err() == "EACCES");
  CHECK(g5.read("/shared/missing").err() == "EACCES");  // existence does not leak
  CHECK(d0.set_perms("/shared", {"n0", "r5"}).ok());
  CHECK(g5.read("/shared/missing").err() == "ENOENT");
  CHECK(d0.set_perms("/shared/x", {"n0", "r5"}).ok());
  CHECK(d0.get_perms("/shared/x").payload == "n0\0r5\0"sv);
  CHECK(g5.read("/shared/x").payload == "data");
  CHECK(g5.write("/shared/x", "no").err() == "EACCES");
  CHECK(g6.read("/shared/x").err() == "EACCES");
  CHECK(d0.set_perms("/shared/x", {"r0"}).ok());  // default access for everyone else
  CHECK(g6.read("/shared/x").payload == "data");
  SUBCASE("the owner has full access and may share but not give away") {
    REQUIRE(d0.set_perms("/shared/x", {"n5"}).ok());
    CHECK(g5.write("/shared/x", "mine").ok());
    CHECK(g5.set_perms("/shared/x", {"n5", "b6"}).ok());
    CHECK(g6.write("/shared/x", "both").ok());
    CHECK(g5.set_perms("/shared/x", {"n6"}).err() == "EPERM");
    CHECK(g6.set_perms("/shared/x", {"n6"}).err() == "EACCES");  // not the owner
  }
  SUBCASE("new nodes inherit the parent's ACL, owned by an unprivileged creator") {
    REQUIRE(d0.set_perms("/shared", {"n0", "b5"}).ok());
    CHECK(g5.write("/shared/new/leaf", "v").ok());
    CHECK(d0.get_perms("/shared/new/leaf").payload == "n5\0b5\0"sv);
    CHECK(d0.write("/shared/bydom0", "v").ok());
    CHECK(d0.get_perms("/shared/bydom0").payload == "n0\0b5\0"sv);
  }
  SUBCASE("rm needs write access to the node") {
    CHECK(g5.rm("/shared/x").err() == "EACCES");
    CHECK(s.exists("/shared/x"));
  }
  SUBCASE("privileged-only operations") {
    CHECK(g5.call(T::introduce,
                  "9\0"
                  "1\0"
                  "2\0"sv)
              .err() == "EACCES");
    CHECK(g5.call(T::control, "check\0"sv).err() == "EACCES");
    CHECK(d0.call(T::control, "check\0"sv).ok());
    CHECK(d0.call(T::control, "bogus\0"sv).err() == "EINVAL");
  }
}

TEST_CASE("transactions: repeatable reads, private writes, conflicts answer EAGAIN") {
  xs::store s;
  caller a{s, 0, true};
  caller b{s, 0, true};
  REQUIRE(a.write("/t/n", "a").ok());
  SUBCASE("a transaction keeps seeing what it read (test-xenstore 'ta err')") {
    const auto tx = a.start();
    CHECK(a.read("/t/n", tx).payload == "a");
    CHECK(b.write("/t/n", "b").ok());
    CHECK(a.read("/t/n", tx).payload == "a");
    CHECK(a.write("/t/n", "c", tx).ok());
    CHECK(a.read("/t/n", tx).payload == "c");
    CHECK(a.end(tx, true).err() == "EAGAIN");
    CHECK(a.read("/t/n").payload == "b");  // nothing of the failed transaction is visible
  }
  SUBCASE("writes are private until commit, then all appear") {
    const auto tx = a.start();
    CHECK(a.write("/t/n", "b", tx).ok());
    CHECK(a.write("/t/new/deep", "x", tx).ok());
    CHECK(b.read("/t/n").payload == "a");
    CHECK(b.read("/t/new/deep").err() == "ENOENT");
    CHECK(a.dir("/t", tx).payload == "n\0new\0"sv);
    CHECK(a.end(tx, true).ok());
    CHECK(b.read("/t/n").payload == "b");
    CHECK(b.read("/t/new/deep").payload == "x");
  }
  SUBCASE("abort discards") {
    const auto tx = a.start();
    CHECK(a.rm("/t", tx).ok());
    CHECK(a.read("/t/n", tx).err() == "ENOENT");
    CHECK(a.end(tx, false).ok());
    CHECK(a.read("/t/n").payload == "a");
  }
  SUBCASE("a child added elsewhere conflicts with a directory read") {
    const auto tx = a.start();
    CHECK(a.dir("/t", tx).ok());
    CHECK(b.write("/t/other", "").ok());
    CHECK(a.write("/t/mine", "", tx).ok());
    CHECK(a.end(tx, true).err() == "EAGAIN");
  }
  SUBCASE("creating a node another transaction saw missing conflicts") {
    const auto tx = a.start();
    CHECK(a.read("/t/late", tx).err() == "ENOENT");
    CHECK(b.write("/t/late", "x").ok());
    CHECK(a.write("/t/n", "z", tx).ok());
    CHECK(a.end(tx, true).err() == "EAGAIN");
  }
  SUBCASE("a missing node's ancestors are read up to the nearest existing one, as C xenstored does") {
    // Found by the random differential against C xenstored (tests/xenstore_differential.py
    // random): its errno_from_parents reads them inside the transaction for dom0 too.
    const auto tx = a.start();
    CHECK(a.read("/t/gone/deeper", tx).err() == "ENOENT");  // reads /t/gone, then /t
    CHECK(b.write("/t/other", "x").ok());                   // changes /t's children
    CHECK(a.dir("/t", tx).payload == "n\0"sv);              // the copy the transaction saw
    CHECK(a.write("/t/n", "z", tx).ok());
    CHECK(a.end(tx, true).err() == "EAGAIN");
  }
  SUBCASE("untouched nodes do not conflict") {
    const auto tx = a.start();
    CHECK(a.write("/t/n", "mine", tx).ok());
    CHECK(b.write("/elsewhere", "x").ok());
    CHECK(a.end(tx, true).ok());
    CHECK(b.read("/t/n").payload == "mine");
  }
  SUBCASE("ending twice, or an id never started, is ENOENT; nesting is EBUSY") {
    const auto tx = a.start();
    CHECK(a.call(T::transaction_start, "\0"sv, tx).err() == "EBUSY");
    CHECK(a.end(tx, true).ok());
    CHECK(a.end(tx, true).err() == "ENOENT");
    CHECK(a.end(0, true).err() == "ENOENT");
    CHECK(b.end(tx + 1000, true).err() == "ENOENT");
  }
  SUBCASE("transactions belong to their connection") {
    const auto tx = a.start();
    CHECK(b.read("/t/n", tx).err() == "ENOENT");
    CHECK(b.end(tx, true).err() == "ENOENT");
  }
}

TEST_CASE("watches fire on registration and on changes in their subtree") {
  xs::store s;
  caller d0{s, 0, true};
  caller w{s, 0, true};
  REQUIRE(w.watch("/dev", "tok").ok());
  CHECK(w.events() == std::vector<event>{{"/dev", "tok"}});
  CHECK(d0.write("/dev/vif/0", "x").ok());
  CHECK(d0.write("/devother", "x").ok());  // a sibling with a common prefix: no event
  CHECK(w.events() == std::vector<event>{{"/dev/vif/0", "tok"}});
  SUBCASE("duplicate watch is EEXIST, unwatch stops events, unknown unwatch ENOENT") {
    CHECK(w.watch("/dev", "tok").err() == "EEXIST");
    CHECK(w.watch("/dev", "tok2").ok());
    CHECK(w.events().size() == 1);
    CHECK(d0.write("/dev/a", "").ok());
    CHECK(w.events().size() == 2);  // one per token
    CHECK(w.unwatch("/dev", "tok").ok());
    CHECK(w.unwatch("/dev", "tok").err() == "ENOENT");
    CHECK(d0.write("/dev/b", "").ok());
    CHECK(w.events() == std::vector<event>{{"/dev/b", "tok2"}});
  }
  SUBCASE("rm fires for the node, its watched ancestors, and watches below it") {
    REQUIRE(w.watch("/dev/vif/0", "deep").ok());
    REQUIRE(w.watch("/", "root").ok());
    (void)w.events();
    CHECK(d0.rm("/dev/vif").ok());
    auto ev = w.events();
    CHECK(ev.size() == 3);
    CHECK(std::count(ev.begin(), ev.end(), event{"/dev/vif", "tok"}) == 1);
    CHECK(std::count(ev.begin(), ev.end(), event{"/dev/vif", "root"}) == 1);
    CHECK(std::count(ev.begin(), ev.end(), event{"/dev/vif/0", "deep"}) == 1);
  }
  SUBCASE("a transaction's changes fire at commit only, not on abort") {
    const auto tx = d0.start();
    CHECK(d0.write("/dev/t", "1", tx).ok());
    CHECK(w.events().empty());
    CHECK(d0.end(tx, true).ok());
    CHECK(w.events() == std::vector<event>{{"/dev/t", "tok"}});
    const auto tx2 = d0.start();
    CHECK(d0.write("/dev/t", "2", tx2).ok());
    CHECK(d0.end(tx2, false).ok());
    CHECK(w.events().empty());
  }
  SUBCASE("set_perms fires") {
    CHECK(d0.set_perms("/dev/vif", {"n0", "r3"}).ok());
    CHECK(w.events() == std::vector<event>{{"/dev/vif", "tok"}});
  }
  SUBCASE("reset_watches drops them all") {
    CHECK(w.call(T::reset_watches, "\0"sv).ok());
    CHECK(d0.write("/dev/z", "").ok());
    CHECK(w.events().empty());
  }
  SUBCASE("disconnecting removes the connection's watches") {
    {
      caller gone{s, 0, true};
      REQUIRE(gone.watch("/dev", "g").ok());
    }
    CHECK(d0.write("/dev/after", "").ok());
    CHECK(w.events().size() == 1);
  }
}

TEST_CASE("relative watches report relative paths and unreadable nodes stay silent") {
  xs::store s;
  caller d0{s, 0, true};
  REQUIRE(d0.write("/local/domain/4/data", "").ok());
  REQUIRE(d0.set_perms("/local/domain/4", {"n4"}).ok());
  REQUIRE(d0.set_perms("/local/domain/4/data", {"n4"}).ok());
  caller g{s, 4, false};
  REQUIRE(g.watch("data", "rel").ok());
  REQUIRE(g.watch("/", "all").ok());
  CHECK(g.events() == std::vector<event>{{"data", "rel"}, {"/", "all"}});
  CHECK(d0.write("/local/domain/4/data/x", "1").ok());
  auto ev = g.events();
  CHECK(std::count(ev.begin(), ev.end(), event{"data/x", "rel"}) == 1);
  CHECK(std::count(ev.begin(), ev.end(), event{"/local/domain/4/data/x", "all"}) == 1);
  CHECK(d0.write("/secret", "dom0 only").ok());
  CHECK(g.events().empty());
}

TEST_CASE("@introduceDomain and @releaseDomain") {
  xs::store s;
  caller d0{s, 0, true};
  REQUIRE(d0.watch("@introduceDomain", "i").ok());
  REQUIRE(d0.watch("@releaseDomain", "r").ok());
  CHECK(d0.events().size() == 2);
  CHECK(d0.call(T::is_domain_introduced, "3\0"sv).payload == "F\0"sv);
  CHECK(d0.call(T::introduce,
                "3\0"
                "1234\0"
                "5\0"sv)
            .ok());
  CHECK(d0.events() == std::vector<event>{{"@introduceDomain", "i"}});
  CHECK(d0.call(T::is_domain_introduced, "3\0"sv).payload == "T\0"sv);
  CHECK(d0.call(T::is_domain_introduced, "0\0"sv).payload == "T\0"sv);
  CHECK(d0.call(T::resume, "3\0"sv).ok());
  CHECK(d0.call(T::release, "3\0"sv).ok());
  CHECK(d0.events() == std::vector<event>{{"@releaseDomain", "r"}});
  CHECK(d0.call(T::release, "3\0"sv).err() == "ENOENT");
  CHECK(d0.call(T::resume, "3\0"sv).err() == "ENOENT");
}

TEST_CASE("special watch paths carry permissions: guests hear them only when granted") {
  xs::store s;
  caller d0{s, 0, true};
  caller g{s, 5, false};
  CHECK(d0.get_perms("@releaseDomain").payload == "n0\0"sv);
  REQUIRE(g.watch("@releaseDomain", "r").ok());
  CHECK(g.events().size() == 1);  // registration always fires
  REQUIRE(d0.call(T::introduce,
                  "3\0"
                  "1\0"
                  "2\0"sv)
              .ok());
  REQUIRE(d0.call(T::release, "3\0"sv).ok());
  CHECK(g.events().empty());
  CHECK(g.set_perms("@releaseDomain", {"n0", "r5"}).err() == "EACCES");
  REQUIRE(d0.set_perms("@releaseDomain", {"n0", "r5"}).ok());
  CHECK(d0.get_perms("@releaseDomain").payload == "n0\0r5\0"sv);
  REQUIRE(d0.call(T::introduce,
                  "3\0"
                  "1\0"
                  "2\0"sv)
              .ok());
  REQUIRE(d0.call(T::release, "3\0"sv).ok());
  CHECK(g.events() == std::vector<event>{{"@releaseDomain", "r"}});
  CHECK(d0.write("@releaseDomain", "x").err() == "EINVAL");
}

TEST_CASE("directory_part pages a long child list with a generation count") {
  xs::store s;
  caller d0{s, 0, true};
  std::string expect;
  for (int i = 0; i < 300; ++i) {
    const std::string name = "child-with-a-rather-long-name-" + std::to_string(i);
    REQUIRE(d0.write("/big/" + name, "").ok());
    expect += name + '\0';
  }
  CHECK(d0.dir("/big").err() == "E2BIG");
  std::string got;
  std::string gen;
  for (;;) {
    auto a = d0.call(T::directory_part, std::string{"/big\0"sv} + std::to_string(got.size()) + '\0');
    REQUIRE(a.ok());
    REQUIRE(a.payload.size() <= xs::payload_max);
    const auto nul = a.payload.find('\0');
    const std::string g = a.payload.substr(0, nul);
    if (gen.empty()) gen = g;
    CHECK(g == gen);
    std::string chunk = a.payload.substr(nul + 1);
    const bool last = chunk.size() >= 1 && (chunk.size() == 1 || chunk.substr(chunk.size() - 2) == "\0\0"sv);
    if (last) chunk.pop_back();
    got += chunk;
    if (last) break;
  }
  CHECK(got == expect);
  REQUIRE(d0.write("/big/one-more", "").ok());
  auto a = d0.call(T::directory_part,
                   "/big\0"
                   "0\0"sv);
  CHECK(a.payload.substr(0, a.payload.find('\0')) != gen);
}

TEST_CASE("quotas for unprivileged domains use cxenstored's defaults") {
  xs::store s;
  caller d0{s, 0, true};
  REQUIRE(d0.mkdir("/local/domain/9").ok());
  REQUIRE(d0.set_perms("/local/domain/9", {"n9"}).ok());
  caller g{s, 9, false};
  SUBCASE("node size 2048") {
    CHECK(g.write("n", std::string(2048, 'x')).ok());
    CHECK(g.write("n", std::string(2049, 'x')).err() == "ENOSPC");
    CHECK(d0.write("/big", std::string(4000, 'x')).ok());  // dom0 is exempt
  }
  SUBCASE("1000 nodes a domain") {
    // /local/domain/9 itself counts: it is owned by domain 9.
    int made = 1;
    std::string last;
    for (int i = 0; i < 1100; ++i) {
      last = g.write("n" + std::to_string(i), "").err();
      if (!last.empty()) break;
      ++made;
    }
    CHECK(made == 1000);
    CHECK(last == "ENOSPC");
    CHECK(g.rm("n0").ok());
    CHECK(g.write("again", "").ok());
  }
  SUBCASE("128 watches") {
    for (int i = 0; i < 128; ++i) REQUIRE(g.watch("w", std::to_string(i)).ok());
    CHECK(g.watch("w", "one-too-many").err() == "E2BIG");
  }
  SUBCASE("10 transactions") {
    for (int i = 0; i < 10; ++i) (void)g.start();
    CHECK(g.call(T::transaction_start, "\0"sv).err() == "ENOSPC");
  }
  SUBCASE("5 permissions a node") {
    CHECK(g.write("p", "").ok());
    CHECK(g.set_perms("p", {"n9", "r1", "r2", "r3", "r4", "r5"}).ok());
    CHECK(g.set_perms("p", {"n9", "r1", "r2", "r3", "r4", "r5", "r6"}).err() == "ENOSPC");
  }
  SUBCASE("1024 nodes touched in a transaction") {
    const auto tx = g.start();
    std::string last;
    int done = 0;
    for (int i = 0; i < 1100 && last.empty(); ++i) {
      last = g.read("r" + std::to_string(i), tx).err();
      if (last == "ENOENT") last.clear();
      ++done;
    }
    // 1023 missing nodes plus their parent (read to tell ENOENT from EACCES) fill the
    // quota; the next read would touch a 1025th node.
    CHECK(last == "ENOSPC");
    CHECK(done == 1024);
  }
  SUBCASE("queued watch events are bounded, the rest dropped") {
    REQUIRE(g.watch("flood", "f").ok());
    REQUIRE(g.events().size() == 1);
    for (int i = 0; i < 1500; ++i) REQUIRE(d0.write("/local/domain/9/flood", std::to_string(i)).ok());
    // The connection took its registration event, then never read: 1024 (the bound)
    // were queued.
    CHECK(s.dropped_events(g.id()) == 1500 - 1024);
    CHECK(g.events().size() == 1024);
  }
  SUBCASE("outstanding replies: the store asks the transport to stop reading") {
    for (int i = 0; i < 20; ++i) {
      CHECK(s.accepting(g.id()));
      s.handle(g.id(), xs::message{xs::header{static_cast<std::uint32_t>(T::read), 1, 0, 2}, "n\0"sv});
    }
    CHECK_FALSE(s.accepting(g.id()));
    s.consume(g.id(), s.output(g.id()).size());
    CHECK(s.accepting(g.id()));
  }
}

namespace {

/// Every byte queued for `id`, across the output chunks, without taking any.
std::string unsent(xs::store& s, xs::conn_id id) {
  std::string_view runs[4096];
  const std::size_t k = s.output_spans(id, runs);
  std::string all;
  for (std::size_t i = 0; i < k; ++i) all += runs[i];
  return all;
}

/// Takes `n` bytes of output from `id` as a peer would, counting the watch events in them.
struct slow_reader {
  xs::store& s;
  xs::conn_id id;
  std::unique_ptr<xs::decoder> dec = std::make_unique<xs::decoder>();
  std::size_t events = 0;
  std::size_t replies = 0;
  void take(std::size_t n) {
    const std::string bytes = unsent(s, id).substr(0, n);
    std::size_t used = 0;
    while (used < bytes.size()) {
      used += dec->feed(std::string_view{bytes}.substr(used));
      REQUIRE_FALSE(dec->broken());
      if (dec->ready()) {
        (dec->current().hdr.kind() == T::watch_event ? events : replies) += 1;
        dec->next();
      }
    }
    s.consume(id, bytes.size());
  }
};

xs::message msg(T t, std::string_view payload, std::uint32_t req = 1) {
  return xs::message{xs::header{static_cast<std::uint32_t>(t), req, 0, static_cast<std::uint32_t>(payload.size())},
                     payload};
}

}  // namespace

TEST_CASE("output: a watcher that reads steadily but a little behind loses no events") {
  // Regression: the event counters were reset only when the whole output drained, so a
  // watcher that always left a few bytes unread hit the bound after 64 events and lost
  // every later one. Events now stop counting once their last byte is sent.
  xs::limits l;
  l.privileged_queued_events = 64;
  xs::store s{l};
  caller d0{s, 0, true};
  slow_reader w{s, s.connect(0, true)};
  s.handle(w.id, msg(T::watch, "/flood\0f\0"sv));
  constexpr std::size_t writes = 2000;
  for (std::size_t i = 0; i < writes; ++i) {
    REQUIRE(d0.write("/flood", std::to_string(i)).ok());
    const std::size_t queued = unsent(s, w.id).size();
    w.take(queued - 5);  // always 5 bytes behind: the output never drains
  }
  w.take(unsent(s, w.id).size());
  CHECK(s.dropped_events(w.id) == 0);
  CHECK(w.events == writes + 1);  // and the one fired when the watch was set
  CHECK(w.replies == 1);
  CHECK(s.held_bytes(w.id) == 0);
}

TEST_CASE("output: sent chunks are freed and what a pipelining connection holds stays bounded") {
  xs::limits l;
  l.privileged_outstanding_bytes = 64 * 1024;
  xs::store s{l};
  caller d0{s, 0, true};
  REQUIRE(d0.write("/big", std::string(3000, 'b')).ok());
  slow_reader p{s, s.connect(0, true)};
  // The bound the store states: what flow control allows, one more reply, two chunks.
  const std::size_t bound =
      xs::detail::out_queue::held_bound(l.privileged_outstanding_bytes + xs::header_size + xs::payload_max);
  std::size_t peak = 0;
  std::uint32_t req = 0;
  for (int round = 0; round < 400; ++round) {
    while (s.accepting(p.id)) s.handle(p.id, msg(T::read, "/big\0"sv, ++req));
    peak = std::max(peak, s.held_bytes(p.id));
    p.take(unsent(s, p.id).size() / 2);  // the client reads, but never all of it
    CHECK(s.held_bytes(p.id) <= bound);
  }
  CHECK(peak <= bound);
  CHECK(peak >= l.privileged_outstanding_bytes);
  p.take(unsent(s, p.id).size());
  CHECK(p.replies == req);
  CHECK(s.held_bytes(p.id) == 0);
}

TEST_CASE("fixed replies are exactly their text and one NUL (CONTROL help, OK, T/F, errors)") {
  // Regression: CONTROL help's reply was built from a literal with a hand-counted length
  // one byte too long: it sent a byte past the literal's end (ASan: global-buffer-overflow).
  xs::store s;
  caller d0{s, 0, true};
  CHECK(d0.call(T::control, "help\0"sv).payload == "check\nhelp\nprint <text>\n\0"sv);
  CHECK(d0.call(T::control, "check\0"sv).payload == "OK\0"sv);
  CHECK(d0.write("/x", "1").payload == "OK\0"sv);
  CHECK(d0.call(T::is_domain_introduced, "0\0"sv).payload == "T\0"sv);
  CHECK(d0.call(T::is_domain_introduced, "7\0"sv).payload == "F\0"sv);
  CHECK(d0.read("/nope").payload == "ENOENT\0"sv);
  CHECK(d0.call(T::control, "bogus\0"sv).payload == "EINVAL\0"sv);
  caller g{s, 5, false};
  CHECK(g.call(T::control, "help\0"sv).payload == "EACCES\0"sv);
}

TEST_CASE("quotas: the touched-nodes quota met while looking for a missing node's parent is ENOSPC") {
  // C xenstored's ask_parents passes the quota's ENOSPC on (read_node_can_propagate_errno);
  // looking further up past the quota used to answer ENOENT.
  xs::limits l;
  l.transaction_nodes = 2;
  xs::store s{l};
  caller d0{s, 0, true};
  REQUIRE(d0.mkdir("/local/domain/9").ok());
  REQUIRE(d0.set_perms("/local/domain/9", {"n9"}).ok());
  caller g{s, 9, false};
  const auto tx = g.start();
  CHECK(g.read("x/y/z", tx).err() == "ENOSPC");  // z, y fit; x is the third node
  CHECK(g.end(tx, false).ok());
}

TEST_CASE("quotas: transactions open side by side cannot together pass the node quota") {
  // Each transaction checks the quota against committed nodes plus its own; both fit on
  // their own. As C xenstored does at TRANSACTION_END, the commit checks again: the second
  // answers ENOSPC and commits nothing.
  xs::limits l;
  l.nodes_per_domain = 50;
  xs::store s{l};
  caller d0{s, 0, true};
  REQUIRE(d0.mkdir("/local/domain/9").ok());
  REQUIRE(d0.set_perms("/local/domain/9", {"n9"}).ok());
  caller g{s, 9, false};
  // Separate parents, so that the two transactions do not conflict.
  REQUIRE(g.mkdir("a").ok());
  REQUIRE(g.mkdir("b").ok());
  const auto t1 = g.start();
  const auto t2 = g.start();
  for (int i = 0; i < 30; ++i) {
    REQUIRE(g.write("a/" + std::to_string(i), "", t1).ok());
    REQUIRE(g.write("b/" + std::to_string(i), "", t2).ok());
  }
  CHECK(g.end(t1, true).ok());
  CHECK(g.end(t2, true).err() == "ENOSPC");
  CHECK(g.read("a/29").ok());
  CHECK(g.read("b/0").err() == "ENOENT");
  CHECK(s.consistent());
  // The home, a, b and 30 nodes owned: 17 more fit, as outside transactions.
  int made = 0;
  while (g.write("c" + std::to_string(made), "").ok()) ++made;
  CHECK(made == 17);
  // A transaction that removes nodes commits even while the domain is at its quota.
  const auto t3 = g.start();
  CHECK(g.rm("c0", t3).ok());
  CHECK(g.end(t3, true).ok());
}

TEST_CASE("privileged connections are bounded too: watches, transactions, transaction bytes") {
  xs::limits l;
  l.privileged_watches = 8;
  l.privileged_transactions = 4;
  l.transaction_bytes = 64 * 1024;
  l.watch_bytes = 16 * 1024;
  xs::store s{l};
  caller d0{s, 0, true};
  for (int i = 0; i < 8; ++i) REQUIRE(d0.watch("/w", std::to_string(i)).ok());
  CHECK(d0.watch("/w", "more").err() == "E2BIG");
  // Watch bytes: two watches with 3000-byte tokens fit in 16 KiB, a third does not.
  caller d1{s, 0, true};
  CHECK(d1.watch("/w", std::string(3000, 'a')).ok());
  CHECK(d1.watch("/w", std::string(3000, 'b')).ok());
  CHECK(d1.watch("/w", std::string(3000, 'c')).err() == "E2BIG");
  CHECK(d1.unwatch("/w", std::string(3000, 'a')).ok());
  CHECK(d1.watch("/w", std::string(3000, 'c')).ok());
  std::vector<std::uint32_t> txs;
  for (int i = 0; i < 4; ++i) txs.push_back(d0.start());
  CHECK(d0.call(T::transaction_start, "\0"sv).err() == "ENOSPC");
  // 4000-byte nodes: the transactions of the connection hold at most 64 KiB together.
  std::string last;
  int written = 0;
  for (int i = 0; i < 100 && last.empty(); ++i) {
    last = d0.write("/t/" + std::to_string(i), std::string(4000, 'x'), txs[static_cast<std::size_t>(i % 4)]).err();
    if (last.empty()) ++written;
  }
  CHECK(last == "ENOSPC");
  CHECK(written < 16);
  CHECK(written > 8);
  // Ending transactions gives the room back; commits keep the store whole.
  for (auto t : txs) (void)d0.end(t, true);
  CHECK(s.consistent());
  const auto t = d0.start();
  CHECK(d0.write("/t/again", std::string(4000, 'y'), t).ok());
  CHECK(d0.end(t, true).ok());
  CHECK(d0.read("/t/again").payload == std::string(4000, 'y'));
}
