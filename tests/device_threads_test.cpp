// Tests the device drivers' process-wide state from several threads: each instance's watch
// token must be its own even when drivers are created on many threads at once (TSan).
#include "device_test_support.hpp"

#include <latch>
#include <set>

using namespace devtest;

TEST_CASE("drivers created on many threads at once get distinct instance numbers") {
  constexpr unsigned threads = 8, per_thread = 300;
  using S = embedded_store;
  using fe_type = frontend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;
  using be_type = backend<test_protocol, S, posix::evtchn_handle, posix::grant_table>;
  auto m = posix::machine::create({.frames = 8, .domains = 4, .grants_per_domain = 8, .ports_per_domain = 4});
  REQUIRE(m.has_value());
  // What each thread's drivers run over, its own: the drivers touch nothing else here.
  struct kit {
    xenstore::store store;
    std::optional<S> conn;
    std::optional<posix::evtchn_handle> evtchn;
    std::optional<posix::grant_table> grants;
    std::vector<std::string> tokens;
  };
  std::deque<kit> kits(threads);
  for (kit& k : kits) {
    k.conn.emplace(k.store, 0);
    auto e = posix::evtchn_handle::open(*m, 0);
    REQUIRE(e.has_value());
    k.evtchn.emplace(std::move(*e));
    k.grants.emplace(*m, 0);
    k.tokens.reserve(per_thread);
  }
  std::latch go{threads};
  std::vector<std::thread> ts;
  for (kit& k : kits)
    ts.emplace_back([&go, &k] {
      go.arrive_and_wait();  // all threads create their drivers at the same time
      for (unsigned i = 0; i < per_thread; ++i) {
        if (i % 2) {
          fe_type f{*k.conn, *k.evtchn, *k.grants, front_dom, devid};
          k.tokens.push_back(f.token());
        } else {
          be_type b{*k.conn, *k.evtchn, *k.grants, back_dom, front_dom, devid};
          k.tokens.push_back(b.token());
        }
      }
    });
  for (auto& t : ts) t.join();
  std::set<std::string> fe_instances, be_instances, instances;
  for (const kit& k : kits)
    for (const std::string& t : k.tokens) {
      const bool fe = t.starts_with("xenbus-fe-");
      CHECK(t.starts_with(fe ? "xenbus-fe-3-51712-" : "xenbus-be-0-3-51712-"));
      const std::string n = t.substr(t.rfind('-') + 1);
      (fe ? fe_instances : be_instances).insert(n);
      instances.insert(n);
    }
  CHECK(fe_instances.size() == threads * per_thread / 2);
  CHECK(be_instances.size() == threads * per_thread / 2);
  // Frontends and backends draw from one counter: no two drivers share a token, whatever
  // their type (two device types of one domain may share a store connection).
  CHECK(instances.size() == threads * per_thread);
}
