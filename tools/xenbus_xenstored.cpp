// xenbus-xenstored: serves an in-memory xenstore on a unix socket for xenstore-* tools,
// libxenstore programs and tests (no hypervisor needed; every client is domain 0).
#include <xenbus/xenstore/server.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <sys/signalfd.h>
#include <unistd.h>

namespace {

int usage(const char* argv0, int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: %s [--socket PATH] [--pid-file FILE]\n"
               "  --socket PATH    unix socket to serve (default /var/run/xenstored/socket)\n"
               "  --pid-file FILE  write the process id there once the socket listens\n"
               "  --spin-us N      busy-poll N microseconds after activity before sleeping\n"
               "                   (lower latency for back-to-back requests; default 0)\n"
               "Stops cleanly on SIGINT or SIGTERM.\n",
               argv0);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = "/var/run/xenstored/socket";
  std::string pid_file;
  long spin_us = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if ((a == "--socket" || a == "--pid-file") && i + 1 < argc) {
      (a == "--socket" ? socket_path : pid_file) = argv[++i];
    } else if (a == "--spin-us" && i + 1 < argc) {
      spin_us = std::atol(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      return usage(argv[0], 0);
    } else {
      return usage(argv[0], 2);
    }
  }

  // Signals arrive as a readable fd: the loop's stop fd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    std::perror("xenbus-xenstored: signalfd");
    return 1;
  }

  xenbus::xenstore::store store;
  xenbus::xenstore::server server{store};
  if (auto r = server.listen(socket_path); !r) {
    std::fprintf(stderr, "xenbus-xenstored: cannot listen on %s: %s\n", socket_path.c_str(),
                 std::strerror(r.error()));
    return 1;
  }
  if (spin_us > 0) server.set_spin(std::chrono::microseconds{spin_us});
  if (!pid_file.empty()) {
    if (FILE* f = std::fopen(pid_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(getpid()));
      std::fclose(f);
    }
  }
  if (auto r = server.run(sfd); !r) {
    std::fprintf(stderr, "xenbus-xenstored: %s\n", std::strerror(r.error()));
    return 1;
  }
  close(sfd);
  return 0;
}
