// A standalone run of the xenstore client (include/xenbus/posix/xenstore/client.hpp) against whatever
// server listens on the default socket ($XENSTORED_PATH or /var/run/xenstored/socket): used
// against Xen's oxenstored and against xenbus-xenstored by tests/xsclient_against.sh.
#include <xenbus/posix/xenstore/client.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using namespace xenbus;

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
template <class T>
bool is(const result<T, xenstore::error>& r, const T& want) {
  return r.has_value() && *r == want;
}
}  // namespace

int main() {
  auto a = xenstore::client::connect();
  auto b = xenstore::client::connect();
  if (!a || !b) {
    std::printf("FAIL connect to %s: %.*s\n", xenstore::default_socket_path().c_str(),
                static_cast<int>(a ? b.error().name().size() : a.error().name().size()),
                (a ? b.error().name() : a.error().name()).data());
    return 1;
  }
  const std::string base = "/xsclient-check";
  (void)a->rm(base);
  expect(a->write(base + "/x", "1").has_value(), "write");
  expect(is(a->read(base + "/x"), std::string("1")), "read back");
  expect(is(b->read(base + "/x"), std::string("1")), "read from a second connection");
  expect(a->mkdir(base + "/d").has_value(), "mkdir");
  auto dir = a->directory(base);
  if (dir) std::sort(dir->begin(), dir->end());  // oxenstored lists sorted, ours in creation order
  expect(is(dir, std::vector<std::string>{"d", "x"}), "directory");
  expect(is(a->directory(base + "/d"), std::vector<std::string>{}), "empty directory");
  auto missing = a->read(base + "/nope");
  expect(!missing && missing.error() == xenstore::errc::enoent, "ENOENT by name");
  const xenstore::perm perms[] = {{xenstore::access::none, 5}, {xenstore::access::read, 0}};
  expect(a->set_perms(base + "/x", perms).has_value(), "set_perms");
  expect(is(a->get_perms(base + "/x"), std::vector<xenstore::perm>(std::begin(perms), std::end(perms))), "get_perms");
  expect(is(a->get_domain_path(3), std::string("/local/domain/3")), "get_domain_path");

  auto tx = a->transaction_start();
  expect(tx.has_value(), "transaction_start");
  if (tx) {
    (void)a->read(base + "/x", *tx);
    (void)a->write(base + "/x", "tx", *tx);
    (void)b->write(base + "/x", "other");
    auto end = a->transaction_end(*tx, true);
    expect(!end && end.error() == xenstore::errc::eagain, "conflicting commit answers EAGAIN");
  }
  int attempts = 0;
  auto r = a->transact([&](xenstore::tx t) -> xenstore::status {
    ++attempts;
    auto v = a->read(base + "/x", t);
    if (!v) return unexpected{v.error()};
    if (attempts == 1) (void)b->write(base + "/x", "conflict");
    return a->write(base + "/y", *v, t);
  });
  expect(r.has_value() && attempts >= 2, "transact retries after a conflict");
  expect(is(a->read(base + "/y"), std::string("conflict")), "transact committed the retried value");

  auto w = a->watch(base);
  expect(w.has_value(), "watch");
  if (w) {
    auto first = w->next(5000ms);
    expect(first && first->path == base, "watch fires on registration");
    (void)b->write(base + "/z", "1");
    auto ev = w->next(5000ms);
    expect(ev && ev->path == base + "/z", "watch fires on another connection's write");
    expect(w->unwatch().has_value(), "unwatch");
  }
  // Node names may hold '@' anywhere: listing one must not break the connection.
  expect(b->write(base + "/n/x@y", "1").has_value(), "write a node named x@y");
  expect(is(a->directory(base + "/n"), std::vector<std::string>{"x@y"}), "directory lists x@y");
  // A directory too long for one reply, on a connection of its own: DIRECTORY_PART where the
  // server has it (C xenstored, ours), else E2BIG as libxenstore reports it. oxenstored has
  // no DIRECTORY_PART and sends the whole list in a reply above XENSTORE_PAYLOAD_MAX, which
  // our client (like libxenstore's read_message) refuses: that connection is latched broken.
  auto c = xenstore::client::connect();
  std::vector<std::string> made;
  std::size_t bytes = 0;
  for (int i = 0; c && bytes <= 4096 + 512; ++i) {
    made.push_back("a-child-with-a-long-name-" + std::to_string(i));
    bytes += made.back().size() + 1;
    (void)a->write(base + "/big/" + made.back(), "v");
  }
  std::sort(made.begin(), made.end());
  if (c) {
    auto big = c->directory(base + "/big");
    if (big) std::sort(big->begin(), big->end());
    expect(is(big, made) || (!big && big.error() == xenstore::errc::e2big) ||
               (!big && big.error().fault == xenstore::fault::oversized_len),
           "a directory over 4 KiB: listed in parts, E2BIG, or refused as oversized");
    std::printf("     (directory over 4 KiB: %s%s)\n", big ? "listed" : std::string(big.error().name()).c_str(),
                big ? "" : (" - " + std::string(big.error().reason())).c_str());
  }
  (void)a->rm(base + "/big");
  expect(a->rm(base).has_value(), "rm");
  expect(a->health().has_value() && b->health().has_value(), "connections healthy (no malformed reply)");
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
