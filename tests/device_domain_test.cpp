// Tests include/xenbus/hosted/device/{driver,toolstack}.hpp where a device meets domains: each
// end's directory owned by its domain (libxl's permissions), and a peer domain destroyed
// while Connected (its home vanishes), in-process and over the xenbus-xenstored socket.
// <cerrno> first: <xen/io/xs_wire.h> defines xsd_errors[] only when EINVAL exists.
#include <cerrno>

#include "device_test_support.hpp"

#include <string>
#include <vector>

using namespace devtest;
using xenbus::close_reason;
using xenbus::state;
using xenbus::store_errc;

#ifndef DEVICE_ENVS
#define DEVICE_ENVS inproc_env, socket_env, client_env
#endif

namespace {

std::string home(domid_t d) { return "/local/domain/" + std::to_string(d); }

template <class S>
bool missing(S& s, const std::string& path) {
  auto r = s.read(0, path);
  return !r && r.error().code == store_errc::enoent;
}

/// In-process, with every domain but dom0 unprivileged: what a guest's kernel sees of xenstore.
struct guest_inproc_env : inproc_env {
  using inproc_env::inproc_env;
  store_type& connect(domid_t d) { return conns.emplace_back(store, d, d == 0); }
};

}  // namespace

// xl destroy removes /local/domain/<domid>, the frontend's directory with it, while our
// backend in dom0 still maps the frontend's ring. The backend must see the home gone, close
// in its own directory without an error node (nothing failed: the peer is simply gone),
// release its mappings and event channels, and write nothing under the dead home; the
// toolstack then removes the backend directory, which is all that is left, and the same
// device id serves a new frontend. Before this, the backend wrote an error node for every
// dead domain and the toolstack refused to remove a device whose frontend was not Closed.
TEST_CASE_TEMPLATE(
    "a frontend domain destroyed while Connected: released, nothing written there, removed, served again", Env,
    DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  REQUIRE(r.exchange(20));
  REQUIRE(r.be().queues().size() == 1);
  auto& first = r.be();
  r.kill_frontend();                                           // the domain's kernel is gone...
  REQUIRE(r.ts_store.remove(0, home(front_dom)).has_value());  // ...and libxl removes its home

  REQUIRE_MESSAGE(r.pump_until([&] { return first.own() == state::closed; }), r.dump());
  CHECK(first.reason() == close_reason::peer_domain_gone);
  CHECK(first.reason_text().find(home(front_dom)) != std::string::npos);
  CHECK(first.queues().empty());  // every mapping and event channel released
  CHECK_FALSE(first.connected());
  CHECK(missing(r.ts_store, first.error_path()));  // no error node for a gone peer
  CHECK(missing(r.ts_store, home(front_dom)));     // nothing re-created the dead home
  CHECK(r.logged("the peer's domain is gone"));

  REQUIRE(r.tk.remove().has_value());
  CHECK(r.pump_until([&] { return !first.active(); }));
  CHECK(missing(r.ts_store, r.addr.backend_dir()));
  CHECK(missing(r.ts_store, home(back_dom) + "/backend/vtest/" + std::to_string(front_dom)));  // nothing left behind
  CHECK(missing(r.ts_store, home(front_dom)));
  CHECK(first.reason() == close_reason::peer_domain_gone);  // the first cause is kept

  // A new domain (here with the dead one's id, as a test may reuse it) and the same devid.
  REQUIRE(r.tk.create().has_value());
  r.start_backend();
  r.start_frontend({}, "new frontend");
  REQUIRE_MESSAGE(r.connected(), r.dump());
  CHECK(r.exchange(20));
}

TEST_CASE_TEMPLATE("a backend domain destroyed while Connected: the frontend closes without an error node", Env,
                   DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  auto& fe = r.fe();
  r.kill_backend();
  REQUIRE(r.ts_store.remove(0, home(back_dom)).has_value());
  REQUIRE_MESSAGE(r.pump_until([&] { return fe.own() == state::closed; }), r.dump());
  CHECK(fe.reason() == close_reason::peer_domain_gone);
  CHECK(fe.queues().empty());
  CHECK(missing(r.ts_store, fe.error_path()));
  CHECK(missing(r.ts_store, home(back_dom)));
}

// Only the home's absence says "destroyed": a directory removed from a live domain is still
// the peer vanishing, an error the peer caused (tests/device_test.cpp has the rest of that).
TEST_CASE_TEMPLATE("a frontend directory removed from a live domain is still reported as vanished", Env, DEVICE_ENVS) {
  rig<Env> r;
  r.up();
  r.kill_frontend();
  REQUIRE(r.ts_store.remove(0, r.addr.frontend_dir()).has_value());
  REQUIRE_MESSAGE(r.pump_until([&] { return r.be().own() == state::closed; }), r.dump());
  CHECK(r.be().reason() == close_reason::peer_vanished);
  CHECK_FALSE(missing(r.ts_store, r.be().error_path()));
  CHECK(r.be().queues().empty());
  REQUIRE(r.tk.remove().has_value());  // the frontend's node is gone: only the backend's is left
  CHECK(missing(r.ts_store, r.addr.backend_dir()));
}

// On a real Xen the toolstack runs in dom0 and the frontend in an unprivileged guest, which
// may write only what it owns. libxl gives the frontend directory to the guest (readable by
// the backend's domain) and the backend directory to the backend's domain (readable by the
// guest). Before this the toolstack set no permissions, so a guest could not even read them.
TEST_CASE("the toolstack gives each end its directory, so an unprivileged guest's frontend connects") {
  rig<guest_inproc_env> r;
  r.up();
  CHECK(r.exchange(20));
  auto perms = [&](const std::string& path) {
    auto p = r.env.store.get_perms(r.ts_store.connection(), 0, path);
    return p ? *p : std::vector<xenbus::xenstore::perm>{};
  };
  using xenbus::xenstore::access;
  using xenbus::xenstore::perm;
  CHECK(perms(r.addr.frontend_dir()) == std::vector<perm>{{access::none, front_dom}, {access::read, back_dom}});
  CHECK(perms(r.addr.backend_dir()) == std::vector<perm>{{access::none, back_dom}, {access::read, front_dom}});
  // The keys inherit their directory's owner: the guest's transport, the backend's features.
  CHECK(perms(r.addr.frontend_dir() + "/ring-ref").at(0).domid == front_dom);
  CHECK(perms(r.addr.backend_dir() + "/max-ring-page-order").at(0).domid == back_dom);

  // Another guest may neither read nor write either directory; the guest may not write the
  // backend's.
  xenbus::embedded_store other{r.env.store, 7, false}, guest{r.env.store, front_dom, false};
  for (const std::string& dir : {r.addr.frontend_dir(), r.addr.backend_dir()}) {
    CHECK(other.read(0, dir + "/state").error().code == store_errc::eacces);
    CHECK(other.write(0, dir + "/state", "6").error().code == store_errc::eacces);
  }
  CHECK(guest.write(0, r.addr.backend_dir() + "/state", "6").error().code == store_errc::eacces);
  CHECK(guest.read(0, r.addr.backend_dir() + "/state").value_or("") == "4");

  // Unplug and removal work as before.
  REQUIRE(r.tk.unplug().has_value());
  REQUIRE_MESSAGE(r.both(state::closed, state::closed), r.dump());
  REQUIRE(r.tk.remove().has_value());
  CHECK(missing(r.ts_store, r.addr.frontend_dir()));
  CHECK(missing(r.ts_store, r.addr.backend_dir()));
  // The emptied parents go too; the guest's home and device/ stay.
  CHECK(missing(r.ts_store, home(front_dom) + "/device/vtest"));
  CHECK(missing(r.ts_store, home(back_dom) + "/backend/vtest/" + std::to_string(front_dom)));
  CHECK_FALSE(missing(r.ts_store, home(front_dom) + "/device"));
}
