// Example: a frontend-like program on the xenstore client: publish keys in one transaction,
// then wait for the backend's state through a watch's pollable fd.
//   XENSTORED_PATH=/tmp/xs.sock xenbus-example-xsclient
#include <xenbus/posix/xenstore/client.hpp>

#include <cstdio>
#include <string>

#include <poll.h>

int main() {
  auto xs = xenbus::xenstore::client::connect();  // $XENSTORED_PATH, as libxenstore
  if (!xs) {
    std::fprintf(stderr, "connect: %s\n", std::string(xs.error().name()).c_str());
    return 1;
  }
  const std::string fe = "/local/domain/1/device/vif/0";
  const std::string be = "/local/domain/0/backend/vif/1/0";

  // Publish the ring details and the state together; retried if a commit conflicts.
  auto published = xs->transact([&](xenbus::xenstore::tx tx) -> xenbus::xenstore::status {
    if (auto r = xs->write(fe + "/ring-ref", "8", tx); !r) return r;
    if (auto r = xs->write(fe + "/event-channel", "3", tx); !r) return r;
    return xs->write(fe + "/state", "3", tx);  // Initialised
  });
  if (!published) {
    std::fprintf(stderr, "publish: %s\n", std::string(published.error().name()).c_str());
    return 1;
  }

  // Watch the backend's state; the watch goes away with `w`.
  auto w = xs->watch(be + "/state");
  if (!w) return 1;
  (void)xs->write(be + "/state", "4");  // stands in for the backend here
  // Events coalesce and may be spurious: each one means "read the state again".
  for (bool connected = false; !connected;) {
    pollfd p{w->fd(), POLLIN, 0};  // could sit in any event loop next to other fds
    if (::poll(&p, 1, 5000) != 1) return 1;
    while (auto ev = w->try_next()) {
      auto state = xs->read(be + "/state");
      std::printf("event %s%s: backend state %s\n", ev->path.c_str(), ev->lost ? " (events were lost: rescan)" : "",
                  state ? state->c_str() : std::string(state.error().name()).c_str());
      connected = state && *state == "4";
    }
  }
  return 0;
}
