// xenbus-xenstored: serves an in-memory xenstore on a unix socket for xenstore-* tools,
// libxenstore programs and tests (no hypervisor needed; every client is domain 0).
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <sys/signalfd.h>
#include <unistd.h>

namespace {

using xenbus::xenstore::limits;

/// The fields of `limits` that --limit may set, by name.
constexpr std::pair<const char*, std::size_t limits::*> limit_fields[] = {
    {"nodes_per_domain", &limits::nodes_per_domain},
    {"node_size", &limits::node_size},
    {"watches", &limits::watches},
    {"transactions", &limits::transactions},
    {"perms_per_node", &limits::perms_per_node},
    {"outstanding", &limits::outstanding},
    {"transaction_nodes", &limits::transaction_nodes},
    {"queued_events", &limits::queued_events},
    {"privileged_queued_events", &limits::privileged_queued_events},
    {"privileged_outstanding_bytes", &limits::privileged_outstanding_bytes},
    {"queued_event_bytes", &limits::queued_event_bytes},
    {"privileged_watches", &limits::privileged_watches},
    {"watch_bytes", &limits::watch_bytes},
    {"privileged_transactions", &limits::privileged_transactions},
    {"transaction_bytes", &limits::transaction_bytes},
};

/// A whole decimal number within [1, 2^40]; false otherwise.
/// (xenstore/decimal.hpp's strict rules: no sign, no space, no leading zero.)
bool parse_count(std::string_view text, std::size_t& out) {
  auto v = xenbus::xenstore::parse_decimal(text, std::uint64_t{1} << 40);
  if (!v || *v == 0) return false;
  out = static_cast<std::size_t>(*v);
  return true;
}

/// NAME=VALUE into `l`; false for an unknown name or a bad value.
bool set_limit(limits& l, std::string_view arg) {
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos) return false;
  for (const auto& [name, field] : limit_fields)
    if (arg.substr(0, eq) == name) return parse_count(arg.substr(eq + 1), l.*field);
  return false;
}

int usage(const char* argv0, int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: %s [--socket PATH] [--pid-file FILE] [--max-connections N] [--limit NAME=N]...\n"
               "       %s --help | --version\n"
               "Serves an in-memory xenstore on a unix socket (no hypervisor needed).\n"
               "  --socket PATH        unix socket to serve (default /var/run/xenstored/socket)\n"
               "  --pid-file FILE      write the process id there once the socket listens\n"
               "  --spin-us N          busy-poll N microseconds after activity before sleeping\n"
               "                       (lower latency for back-to-back requests; default 0)\n"
               "  --max-connections N  serve at most N clients at once; newcomers beyond are\n"
               "                       closed at once, with a line on stderr (default %zu)\n"
               "  --limit NAME=N       set one field of the store's limits (hosted/xenstore/store.hpp):\n"
               "                      ",
               argv0, argv0, xenbus::xenstore::server::default_max_connections);
  for (const auto& f : limit_fields) std::fprintf(rc ? stderr : stdout, " %s", f.first);
  std::fprintf(rc ? stderr : stdout,
               "\n"
               "  -h, --help           print this help and exit\n"
               "  --version            print the version and exit\n"
               "Stops cleanly on SIGINT or SIGTERM. See xenbus-xenstored(8).\n");
  return rc;
}

int version() {
  std::printf("xenbus-xenstored (xenbus) %d.%d.%d\n", XENBUS_VERSION_MAJOR, XENBUS_VERSION_MINOR, XENBUS_VERSION_PATCH);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = "/var/run/xenstored/socket";
  std::string pid_file;
  long spin_us = 0;
  std::size_t max_connections = xenbus::xenstore::server::default_max_connections;
  limits lim;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if ((a == "--socket" || a == "--pid-file") && i + 1 < argc) {
      (a == "--socket" ? socket_path : pid_file) = argv[++i];
    } else if (a == "--spin-us" && i + 1 < argc) {
      auto us = xenbus::xenstore::parse_decimal(argv[++i], 1000000);  // at most one second
      if (!us) return usage(argv[0], 2);
      spin_us = static_cast<long>(*us);
    } else if (a == "--max-connections" && i + 1 < argc) {
      if (!parse_count(argv[++i], max_connections)) return usage(argv[0], 2);
    } else if (a == "--limit" && i + 1 < argc) {
      if (!set_limit(lim, argv[++i])) {
        std::fprintf(stderr, "xenbus-xenstored: bad --limit %s\n", argv[i]);
        return usage(argv[0], 2);
      }
    } else if (a == "-h" || a == "--help") {
      return usage(argv[0], 0);
    } else if (a == "--version") {
      return version();
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

  xenbus::xenstore::store store{lim};
  xenbus::xenstore::server server{store};
  server.set_max_connections(max_connections);
  server.set_log([](std::string_view line) {
    std::fprintf(stderr, "xenbus-xenstored: %.*s\n", static_cast<int>(line.size()), line.data());
  });
  if (auto r = server.listen(socket_path); !r) {
    std::fprintf(stderr, "xenbus-xenstored: cannot listen on %s: %s\n", socket_path.c_str(), std::strerror(r.error()));
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
