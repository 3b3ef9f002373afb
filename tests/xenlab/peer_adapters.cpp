// The Xen adapters (xen/evtchn.hpp, xen/grant.hpp, xen/xs_store.hpp) between a domU and dom0, step by step.
#include "peer_adapters.hpp"

#include "peer_support.hpp"

#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

/*
 * The two programs meet in the domU's home, which the domU may write and dom0 may read
 * and write: H = /local/domain/<domU>/data/xenlab/adapters. The domU writes its progress
 * to H/domu and what it offers to H/port and H/ref; dom0 writes its progress to H/dom0,
 * a node the domU creates first, so that it stays the domU's own node whichever xenstored
 * runs. Each side waits for the other's step with a watch.
 *
 *   domU                                         dom0
 *   bind_unbound(dom0) -> P, H/port, "port"
 *                                                bind_interdomain(domU, P) -> L, notify(L)
 *   sees P pending, notify(P)
 *                                                sees L pending, unbind(L), "unbound"
 *   unbind(P)
 *   share a page, pattern, H/ref, "shared"
 *                                                map it, check the pattern, answer, "answered"
 *   sees the answer, unshare (still mapped), "dropped"
 *                                                the mapping still works; map the ref again;
 *                                                unmap; map again later; "unmapped"
 *   xenstore checks, "done <failures>"           xenstore checks; reports the domU's verdict
 */

namespace xenlab {
namespace {

using xenbus::domid_t;
using xenbus::no_tx;
using xenbus::store_errc;
namespace xen = xenbus::xen;

std::string home_of(domid_t d) { return "/local/domain/" + std::to_string(d) + "/data/xenlab/adapters"; }

// The page the domU shares: a pattern in the first half, dom0's answer in the second.
constexpr std::size_t pattern_bytes = 2048;
constexpr std::size_t answer_at = 2048;
constexpr unsigned char pattern(std::size_t i) { return static_cast<unsigned char>(i * 13 + 5); }
std::string answer_for(domid_t d) { return "xenlab: dom0 answers d" + std::to_string(d); }

bool has_pattern(const unsigned char* p) {
  for (std::size_t i = 0; i < pattern_bytes; ++i)
    if (p[i] != pattern(i)) return false;
  return true;
}

// Opens the event-channel and xenstore adapters, or ends the program with one clear line.
struct adapters {
  xen::evtchn_handle ev;
  xen::xs_store xs;
};
adapters open_adapters(const char* who) {
  auto ev = open_xen_evtchn(who);
  auto xs = xen::xs_store::open();
  if (!xs) give_up(who, "xs_open failed: no xenstored socket or /dev/xen/xenbus");
  return adapters{std::move(ev), std::move(xs).value()};
}

template <class T>
T must(xenbus::result<T, xenbus::store_error> r, const char* what, const std::string& path) {
  if (!r) give_up(what, path + ": " + describe(r.error()));
  return std::move(r).value();
}
void must(xenbus::result<void, xenbus::store_error> r, const char* what, const std::string& path) {
  if (!r) give_up(what, path + ": " + describe(r.error()));
}

std::uint64_t parse_or_give_up(const std::string& text, std::uint64_t max, const char* what) {
  auto v = xenbus::xenstore::parse_decimal(text, max);
  if (!v) give_up(what, "\"" + text + "\" is not a decimal <= " + std::to_string(max));
  return *v;
}

// A store call that must fail with `want`.
template <class R>
bool fails_with(const R& r, store_errc want, const char* name, const std::string& what) {
  const std::string got = r ? std::string("success") : describe(r.error());
  return check(!r && r.error().code == want, name,
               what + ": " + got + " (want " + std::string(xenbus::xenstore::to_string(want)) + ")");
}

// ---- Xenstore round trips through xen::xs_store, in either domain ---------------------------

// Checks every device_store operation under `base` (a node this domain may create), and
// the errors it maps: ENOENT, EAGAIN, EINVAL.
void xenstore_checks(xen::xs_store& xs, const std::string& base, domid_t self) {
  (void)xs.remove(no_tx, base);
  const std::string a = base + "/a", dir = base + "/dir";
  {
    auto w = xs.write(no_tx, a, "value-1");
    auto r = xs.read(no_tx, a);
    check(w && r && *r == "value-1", "xs.write-read", a + " = " + (r ? "\"" + *r + "\"" : describe(r.error())));
  }
  {
    auto m = xs.mkdir(no_tx, dir);
    auto r = xs.read(no_tx, dir);
    auto again = xs.mkdir(no_tx, dir);
    check(m && r && r->empty() && again, "xs.mkdir", dir + " exists with an empty value; a second mkdir succeeds");
  }
  {
    auto d = xs.directory(no_tx, base);
    const bool ok = d && d->size() == 2 && std::count(d->begin(), d->end(), "a") == 1 &&
                    std::count(d->begin(), d->end(), "dir") == 1;
    std::string names;
    if (d)
      for (const auto& n : *d) names += " " + n;
    check(ok, "xs.directory", base + ":" + (d ? names : " " + describe(d.error())));
  }
  {
    auto rm = xs.remove(no_tx, a);
    check(bool(rm), "xs.rm", a);
    fails_with(xs.read(no_tx, a), store_errc::enoent, "xs.enoent", "read of removed " + a);
    fails_with(xs.directory(no_tx, base + "/missing"), store_errc::enoent, "xs.enoent-directory",
               "directory of " + base + "/missing");
  }
  {
    const std::string t = base + "/tx";
    auto tx = xs.transaction_start();
    bool ok = bool(tx);
    if (tx) {
      ok = bool(xs.write(*tx, t, "in-tx"));
      auto outside = xs.read(no_tx, t);  // not visible outside before the commit
      ok = ok && !outside && outside.error().code == store_errc::enoent;
      ok = ok && bool(xs.transaction_end(*tx, true));
      auto after = xs.read(no_tx, t);
      ok = ok && after && *after == "in-tx";
    }
    check(ok, "xs.transaction-commit", t + " written in a transaction, invisible outside until the commit");
    const std::string u = base + "/aborted";
    auto tx2 = xs.transaction_start();
    ok = tx2 && xs.write(*tx2, u, "never") && xs.transaction_end(*tx2, false);
    fails_with(xs.read(no_tx, u), store_errc::enoent, "xs.transaction-abort", "read of " + u + " after the abort");
    if (!ok) check(false, "xs.transaction-abort", "start, write or abort failed");
    // A node the transaction read changes outside it: the commit fails with EAGAIN.
    auto tx3 = xs.transaction_start();
    if (tx3) {
      (void)xs.read(*tx3, t);
      (void)xs.write(no_tx, t, "changed-outside");
      (void)xs.write(*tx3, t, "changed-inside");
      fails_with(xs.transaction_end(*tx3, true), store_errc::eagain, "xs.transaction-eagain",
                 "commit of a transaction whose node changed outside it");
    } else {
      check(false, "xs.transaction-eagain", "transaction_start: " + describe(tx3.error()));
    }
  }
  {
    const std::string w = base + "/watched", child = w + "/child", token = "xenlab-watch";
    auto set = xs.watch(w, token);
    bool first = false, fired = false;
    if (set) {
      auto ev = xs.next_watch_event(step_timeout_ms);  // xenstore fires once at registration
      first = ev && ev->path == w && ev->token == token;
      (void)xs.write(no_tx, child, "x");
      for (int i = 0; i < 8 && !fired; ++i) {
        auto e = xs.next_watch_event(step_timeout_ms);
        if (!e) break;
        fired = e->path == child && e->token == token;
      }
    }
    auto unset = xs.unwatch(w, token);
    check(set && first && fired && unset, "xs.watch",
          w + ": event at registration, then one for " + child + "; unwatch");
  }
  {
    auto d = xs.read(no_tx, "domid");  // relative: to this domain's home
    check(d && *d == std::to_string(self), "xs.relative-path",
          "domid = " + (d ? "\"" + *d + "\"" : describe(d.error())) + " (want " + std::to_string(self) + ")");
  }
  fails_with(xs.read(no_tx, base + "/bad path"), store_errc::einval, "xs.einval", "read of a path with a space");
  auto rm = xs.remove(no_tx, base);
  check(rm && !xs.read(no_tx, base), "xs.rm-tree", base + " and everything under it");
}

// What only an unprivileged domain sees: other domains' nodes are closed to it.
void access_checks(xen::xs_store& xs, const std::string& private_node) {
  fails_with(xs.read(no_tx, private_node), store_errc::eacces, "xs.eacces-read", "read of dom0's " + private_node);
  fails_with(xs.write(no_tx, "/local/domain/0/data/xenlab-intruder", "x"), store_errc::eacces, "xs.eacces-write",
             "write under /local/domain/0");
  fails_with(xs.mkdir(no_tx, "/xenlab-intruder"), store_errc::eacces, "xs.eacces-mkdir", "mkdir at the root");
  auto name = xs.read(no_tx, "/local/domain/0/name");
  XENLAB_INFO("domU read of /local/domain/0/name: %s",
              name ? ("\"" + *name + "\"").c_str() : describe(name.error()).c_str());
}

// The node dom0 creates for the domU's EACCES read (created at the root: only dom0 may read it).
constexpr const char* dom0_private_node = "/xenlab-peer-private";

domid_t own_domid(xen::xs_store& xs, const char* who) {
  return static_cast<domid_t>(parse_or_give_up(must(xs.read(no_tx, "domid"), who, "domid"), 0x7fef, who));
}

}  // namespace

// ---- The domU ------------------------------------------------------------------------------------

int adapters_domu(domid_t backend) {
  adapters opened = open_adapters("adapters-domu");
  auto& ev = opened.ev;
  auto& xs = opened.xs;
  auto gs = xen::gntshr::open();
  if (!gs) give_up("adapters-domu", "xengntshr_open (/dev/xen/gntalloc) failed");
  const domid_t self = own_domid(xs, "adapters-domu");
  const std::string h = home_of(self);
  (void)xs.remove(no_tx, h);
  must(xs.write(no_tx, h + "/dom0", ""), "adapters-domu", h + "/dom0");  // dom0's progress: our node
  auto progress = [&](const char* step) { must(xs.write(no_tx, h + "/domu", step), "adapters-domu", h + "/domu"); };
  auto await_dom0 = [&](const char* step) {
    auto r = await_value(xs, h + "/dom0", step);
    if (!r) give_up("adapters-domu", std::string("waiting for dom0 to reach \"") + step + "\": " + describe(r.error()));
  };
  progress("starting");

  // Event channels.
  auto port = ev.bind_unbound(backend);
  if (!check(
          bool(port), "evtchn.bind-unbound",
          port ? "port " + std::to_string(*port) + " offered to d" + std::to_string(backend) : describe(port.error())))
    return 1;
  must(xs.write(no_tx, h + "/port", std::to_string(*port)), "adapters-domu", h + "/port");
  progress("port");
  evtchn_link chan(ev, *port);
  check(chan.wait_for(link::idle_limit_ns), "evtchn.domu-notified",
        "dom0's notification arrived on port " + std::to_string(*port));
  auto back = ev.notify(*port);
  check(bool(back), "evtchn.domu-notifies", back ? "notified dom0 back" : describe(back.error()));
  await_dom0("unbound");
  // dom0 closed its end: Xen turns ours back into a port offered to dom0, and a notify on
  // it is dropped without an error.
  auto lone = ev.notify(*port);
  check(bool(lone), "evtchn.notify-after-peer-closed", lone ? "accepted and dropped" : describe(lone.error()));
  auto un = ev.unbind(*port);
  check(bool(un), "evtchn.domu-unbind", un ? "port " + std::to_string(*port) : describe(un.error()));

  // Grants.
  {
    std::array<xenbus::grant_ref, 1> refs{};
    auto pages = gs->share(backend, refs, true);
    if (!check(bool(pages), "grant.domu-share",
               pages ? "one page, ref " + std::to_string(refs[0]) + ", writable by d" + std::to_string(backend)
                     : describe(pages.error())))
      return 1;
    auto* p = static_cast<unsigned char*>(pages->data());
    for (std::size_t i = 0; i < pattern_bytes; ++i) p[i] = pattern(i);
    must(xs.write(no_tx, h + "/ref", std::to_string(refs[0])), "adapters-domu", h + "/ref");
    progress("shared");
    await_dom0("answered");
    const std::string want = answer_for(self);
    check(std::memcmp(p + answer_at, want.c_str(), want.size() + 1) == 0 && has_pattern(p), "grant.domu-sees-answer",
          "dom0's write through its mapping is in our page");
    // Ends our share while dom0 still maps the page.
    { auto gone = std::move(*pages); }
    check(true, "grant.domu-unshare-while-mapped", "xengntshr_unshare returned while dom0 maps the page");
    progress("dropped");
    await_dom0("unmapped");
  }

  // Xenstore.
  xenstore_checks(xs, h + "/xs", self);
  access_checks(xs, dom0_private_node);
  const int failed = failures().load(std::memory_order_relaxed);
  progress(("done " + std::to_string(failed)).c_str());
  return failed == 0 ? 0 : 1;
}

// ---- dom0 ----------------------------------------------------------------------------------------

int adapters_dom0(domid_t domu) {
  adapters opened = open_adapters("adapters-dom0");
  auto& ev = opened.ev;
  auto& xs = opened.xs;
  auto gt = xen::gnttab::open();
  if (!gt) give_up("adapters-dom0", "xengnttab_open (/dev/xen/gntdev) failed");
  must(xs.write(no_tx, dom0_private_node, "dom0 only"), "adapters-dom0", dom0_private_node);
  const std::string h = home_of(domu);
  auto progress = [&](const char* step) { must(xs.write(no_tx, h + "/dom0", step), "adapters-dom0", h + "/dom0"); };
  auto await_domu = [&](const char* step) {
    auto r = await_value(xs, h + "/domu", step);
    if (!r)
      give_up("adapters-dom0", std::string("waiting for the domU to reach \"") + step + "\": " + describe(r.error()));
  };

  // Event channels.
  await_domu("port");
  const auto remote = static_cast<xenbus::evtchn_port>(
      parse_or_give_up(must(xs.read(no_tx, h + "/port"), "adapters-dom0", h + "/port"), 0xffffffffu, "adapters-dom0"));
  auto local = ev.bind_interdomain(domu, remote);
  if (!check(bool(local), "evtchn.bind-interdomain",
             local ? "d" + std::to_string(domu) + " port " + std::to_string(remote) + " -> local port " +
                         std::to_string(*local)
                   : describe(local.error())))
    return 1;
  evtchn_link chan(ev, *local);
  // Xen raises the new local port at bind time (notifications sent to the unbound port
  // would be lost otherwise): take that one before waiting for the domU's.
  const bool raised = chan.wait_for(2'000'000'000L);
  XENLAB_INFO("bind_interdomain left local port %u pending: %s", *local, raised ? "yes (taken)" : "no");
  auto sent = ev.notify(*local);
  check(bool(sent), "evtchn.dom0-notifies", sent ? "notified the domU" : describe(sent.error()));
  check(chan.wait_for(link::idle_limit_ns), "evtchn.dom0-notified",
        "the domU's notification arrived on port " + std::to_string(*local));
  auto un = ev.unbind(*local);
  check(bool(un), "evtchn.dom0-unbind", un ? "port " + std::to_string(*local) : describe(un.error()));
  progress("unbound");

  // Grants.
  await_domu("shared");
  const auto ref = static_cast<xenbus::grant_ref>(
      parse_or_give_up(must(xs.read(no_tx, h + "/ref"), "adapters-dom0", h + "/ref"), 0xffffffffu, "adapters-dom0"));
  {
    const std::array<xenbus::grant_ref, 1> refs{ref};
    auto m = gt->map(domu, refs, true);
    if (!check(
            bool(m), "grant.dom0-map",
            m ? "d" + std::to_string(domu) + " ref " + std::to_string(ref) + " mapped writable" : describe(m.error())))
      return 1;
    auto* p = static_cast<unsigned char*>(m->data());
    check(has_pattern(p), "grant.dom0-reads-pattern", std::to_string(pattern_bytes) + " bytes as the domU wrote them");
    const std::string answer = answer_for(domu);
    std::memcpy(p + answer_at, answer.c_str(), answer.size() + 1);
    progress("answered");
    await_domu("dropped");
    // The domU ended its share; our mapping must still be the same page, readable and writable.
    p[answer_at + answer.size() + 1] = 0x5a;
    check(has_pattern(p) && std::memcmp(p + answer_at, answer.c_str(), answer.size() + 1) == 0 &&
              p[answer_at + answer.size() + 1] == 0x5a,
          "grant.mapping-survives-unshare", "pattern and answer still there, and writable, after the domU's unshare");
    // Is the grant still live in Xen? Linux's gntalloc cannot end access to a page that is
    // mapped (Xen refuses), so it defers the end until we unmap: a new mapping then works.
    auto again = gt->map(domu, refs, false);
    XENLAB_INFO("gntalloc after the domU's unshare, while dom0 maps the page: a second map of ref %u %s", ref,
                again ? "succeeds (the end of access is deferred: the grant is still live)"
                      : ("fails: " + describe(again.error())).c_str());
    if (again) {
      const auto* q = static_cast<const unsigned char*>(again->data());
      XENLAB_INFO("the second mapping shows %s", has_pattern(q) ? "the same page" : "other contents");
    }
  }  // both mappings are unmapped here
  check(true, "grant.dom0-unmap", "ref " + std::to_string(ref) + " unmapped without a fault");
  // Linux retries deferred ends once a second; after that the reference should be gone.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  {
    const std::array<xenbus::grant_ref, 1> refs{ref};
    auto late = gt->map(domu, refs, false);
    XENLAB_INFO("3 s after dom0 unmapped, mapping ref %u %s", ref,
                late ? "still succeeds (not ended yet, or the domU reused the reference)"
                     : ("fails: " + describe(late.error()) + " (the domU's kernel ended the grant)").c_str());
  }
  progress("unmapped");

  // Xenstore.
  auto seen = xs.read(no_tx, h + "/ref");
  check(seen && *seen == std::to_string(ref), "xs.dom0-reads-domu-node",
        h + "/ref = " + (seen ? "\"" + *seen + "\"" : describe(seen.error())));
  xenstore_checks(xs, "/xenlab-peer-dom0", 0);
  auto verdict = await_node(xs, h + "/domu", [](std::string_view v) { return v.starts_with("done "); });
  if (!verdict) give_up("adapters-dom0", "waiting for the domU's verdict: " + describe(verdict.error()));
  check(*verdict == "done 0", "adapters-domu", "the domU's checks: " + *verdict + " failed");
  (void)xs.remove(no_tx, dom0_private_node);
  (void)xs.remove(no_tx, h);
  return failures().load(std::memory_order_relaxed) == 0 ? 0 : 1;
}

}  // namespace xenlab
