// xenbus-xenstored: an in-memory xenstore served on a unix socket for xenstore-* tools, libxenstore
// programs and tests, and, in a Xen dom0, on dom0's own kernel ring and every guest's ring as the
// host's xenstored (started like Debian's /etc/init.d/xen starts one: it forks, writes --pid-file).
#include <xenbus/posix/xenstore/ring_service.hpp>
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/version.hpp>
#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/xenstored.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <syslog.h>
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

/// The socket libxenstore's xs_daemon_socket() opens: $XENSTORED_PATH, or
/// $XENSTORED_RUNDIR/socket, or /var/run/xenstored/socket.
std::string default_socket() {
  if (const char* p = std::getenv("XENSTORED_PATH"); p && *p) return p;
  const char* dir = std::getenv("XENSTORED_RUNDIR");
  return std::string{dir && *dir ? dir : "/var/run/xenstored"} + "/socket";
}

int usage(const char* argv0, int rc) {
  FILE* out = rc ? stderr : stdout;
  std::fprintf(out,
               "usage: %s [--socket PATH] [--pid-file FILE] [--no-fork] [--log-file FILE | --syslog]\n"
               "          [--domains auto|yes|no] [--orphans dom0|remove] [--spin-us N]\n"
               "          [--max-connections N] [--limit NAME=N]...\n"
               "       %s --help | --version\n"
               "Serves an in-memory xenstore on a unix socket and, in a Xen dom0, on dom0's kernel\n"
               "ring and every introduced guest's ring: the host's xenstored.\n"
               "  --socket PATH        unix socket to serve (default: $XENSTORED_PATH, else\n"
               "                       $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket)\n"
               "  --pid-file FILE      write the server's process id there once it serves\n"
               "  -N, --no-fork        stay in the foreground (default: fork once ready, as\n"
               "                       xenstored does, and exit 0; 1 if setting up failed)\n"
               "  --log-file FILE      append log lines to FILE (default: standard error in the\n"
               "                       foreground, syslog once forked)\n"
               "  --syslog             log to syslog (daemon facility) even in the foreground\n"
               "  --domains MODE       serve the domains' rings: auto (default: where\n"
               "                       /proc/xen/xsd_kva exists, i.e. in dom0), yes (fail when\n"
               "                       not possible), no (the socket only)\n"
               "  --orphans POLICY     nodes of a departed domain: dom0 (default: dom0 owns them)\n"
               "                       or remove (removed with their subtrees)\n"
               "  --spin-us N          busy-poll N microseconds after activity before sleeping\n"
               "                       (lower latency for back-to-back requests; default 0)\n"
               "  --max-connections N  serve at most N socket clients at once; newcomers beyond\n"
               "                       are closed at once, with a log line (default %zu)\n"
               "  --limit NAME=N       set one field of the store's limits (hosted/xenstore/store.hpp):\n"
               "                      ",
               argv0, argv0, xenbus::xenstore::server::default_max_connections);
  for (const auto& f : limit_fields) std::fprintf(out, " %s", f.first);
  std::fprintf(out,
               "\n"
               "  -h, --help           print this help and exit\n"
               "  --version            print the version and exit\n"
               "A lone \"--\" is ignored. Stops cleanly on SIGINT or SIGTERM. See xenbus-xenstored(8).\n");
  return rc;
}

int version() {
  std::printf("xenbus-xenstored (xenbus) %d.%d.%d\n", XENBUS_VERSION_MAJOR, XENBUS_VERSION_MINOR, XENBUS_VERSION_PATCH);
  return 0;
}

/// Where log lines go: standard error, a file, or syslog.
class logger {
 public:
  enum class sink : std::uint8_t { standard_error, file, system_log };

  void to_stderr() { sink_ = sink::standard_error; }
  bool to_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return false;
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    sink_ = sink::file;
    return true;
  }
  void to_syslog() {
    ::openlog("xenbus-xenstored", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    sink_ = sink::system_log;
  }
  sink where() const noexcept { return sink_; }

  void line(std::string_view text, int priority = LOG_INFO) const {
    switch (sink_) {
      case sink::standard_error:
        std::fprintf(stderr, "xenbus-xenstored: %.*s\n", static_cast<int>(text.size()), text.data());
        return;
      case sink::system_log:
        ::syslog(priority, "%.*s", static_cast<int>(text.size()), text.data());
        return;
      case sink::file: {
        char stamp[32];
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        ::localtime_r(&now, &tm);
        const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S ", &tm);
        std::string l{stamp, n};
        l += text;
        l += '\n';
        [[maybe_unused]] const auto w = ::write(fd_, l.data(), l.size());
        return;
      }
    }
  }

 private:
  sink sink_ = sink::standard_error;
  int fd_ = -1;
};

/// Before the fork: the parent waits on `ready` until the child serves (or fails).
struct detach {
  int ready = -1;  ///< the child's end: one byte, '0' served, '1' failed
};

/// Forks; the parent returns the child's verdict as its exit status, the child returns
/// nullopt and goes on (in a session of its own).
std::optional<int> fork_and_wait(detach& d) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    std::perror("xenbus-xenstored: pipe");
    return 1;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    std::perror("xenbus-xenstored: fork");
    return 1;
  }
  if (child == 0) {
    ::close(p[0]);
    d.ready = p[1];
    ::setsid();
    return std::nullopt;
  }
  ::close(p[1]);
  char verdict = '1';
  ssize_t n;
  while ((n = ::read(p[0], &verdict, 1)) < 0 && errno == EINTR) {
  }
  ::close(p[0]);
  return n == 1 && verdict == '0' ? 0 : 1;
}

/// Tells the waiting parent how setting up went, then lets go of the terminal.
void report(detach& d, bool ok) {
  if (d.ready < 0) return;
  const char verdict = ok ? '0' : '1';
  [[maybe_unused]] const auto w = ::write(d.ready, &verdict, 1);
  ::close(d.ready);
  d.ready = -1;
  if (!ok) return;
  if (::chdir("/") != 0) {
  }
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
}

/// Creates the socket's directory when it is missing (one level, as xenstored makes its rundir).
void make_parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  ::mkdir(path.substr(0, slash).c_str(), 0755);  // EEXIST and the like: listen() will say
}

using ring_service_t =
    xenbus::xenstore::ring_service<xenbus::xen::ring_mapper, xenbus::xen::evtchn_handle, xenbus::xen::domain_info>;

/// The Xen pieces of a dom0 xenstored, alive for as long as the loop runs.
struct xen_side {
  std::optional<xenbus::xen::evtchn_handle> evtchn;
  std::optional<xenbus::xen::ring_mapper> mapper;
  std::optional<xenbus::xen::domain_info> info;
  std::optional<xenbus::xen::local_ring> local;
  std::optional<ring_service_t> service;

  /// Opens everything and serves dom0's kernel ring; an error sentence otherwise.
  std::optional<std::string> start(xenbus::xenstore::store& store, xenbus::xenstore::server& server,
                                   const logger& log) {
    auto ev = xenbus::xen::evtchn_handle::open();
    if (!ev) return "cannot open the event-channel device: " + std::string{std::strerror(ev.error().sys_errno)};
    evtchn.emplace(std::move(*ev));
    auto m = xenbus::xen::ring_mapper::open();
    if (!m) return "cannot open the grant device: " + std::string{std::strerror(m.error())};
    mapper.emplace(std::move(*m));
    auto i = xenbus::xen::domain_info::open();
    if (!i)
      return "cannot watch for dying domains (libxenctrl, VIRQ_DOM_EXC): " + std::string{std::strerror(i.error())};
    info.emplace(std::move(*i));
    auto l = xenbus::xen::local_ring::open();
    if (!l) return "cannot map dom0's ring (/proc/xen/xsd_kva, xsd_port): " + std::string{std::strerror(l.error())};
    local.emplace(std::move(*l));
    service.emplace(store, *mapper, *evtchn, *info);
    service->set_log([&log](std::string_view line) { log.line(line, LOG_NOTICE); });
    if (auto r = service->serve_local(0, local->page(), local->port()); !r)
      return "cannot bind dom0's xenstore port " + std::to_string(local->port()) + ": " + std::strerror(r.error());
    if (auto r = server.add_source(*service); !r)
      return "cannot poll the event channels: " + std::string{std::strerror(r.error())};
    return std::nullopt;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  std::string pid_file;
  std::string log_file;
  bool no_fork = false;
  bool use_syslog = false;
  enum class domains_mode : std::uint8_t { autodetect, yes, no } domains = domains_mode::autodetect;
  auto orphans = xenbus::xenstore::orphan_policy::to_dom0;
  long spin_us = 0;
  std::size_t max_connections = xenbus::xenstore::server::default_max_connections;
  limits lim;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--") {
      continue;  // Debian's init script passes one through choom
    } else if ((a == "--socket" || a == "--pid-file" || a == "--log-file") && has_value) {
      (a == "--socket" ? socket_path : a == "--pid-file" ? pid_file : log_file) = argv[++i];
    } else if (a == "--no-fork" || a == "-N") {
      no_fork = true;
    } else if (a == "--syslog") {
      use_syslog = true;
    } else if (a == "--domains" && has_value) {
      const std::string_view v = argv[++i];
      if (v == "auto")
        domains = domains_mode::autodetect;
      else if (v == "yes")
        domains = domains_mode::yes;
      else if (v == "no")
        domains = domains_mode::no;
      else
        return usage(argv[0], 2);
    } else if (a == "--orphans" && has_value) {
      const std::string_view v = argv[++i];
      if (v == "dom0")
        orphans = xenbus::xenstore::orphan_policy::to_dom0;
      else if (v == "remove")
        orphans = xenbus::xenstore::orphan_policy::remove;
      else
        return usage(argv[0], 2);
    } else if (a == "--spin-us" && has_value) {
      auto us = xenbus::xenstore::parse_decimal(argv[++i], 1000000);  // at most one second
      if (!us) return usage(argv[0], 2);
      spin_us = static_cast<long>(*us);
    } else if (a == "--max-connections" && has_value) {
      if (!parse_count(argv[++i], max_connections)) return usage(argv[0], 2);
    } else if (a == "--limit" && has_value) {
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
  if (socket_path.empty()) socket_path = default_socket();
  const bool serve_domains =
      domains == domains_mode::yes || (domains == domains_mode::autodetect && xenbus::xen::local_ring::present());

  detach d;
  if (!no_fork)
    if (auto parent_exit = fork_and_wait(d)) return *parent_exit;

  logger log;
  if (!log_file.empty()) {
    if (!log.to_file(log_file)) {
      std::fprintf(stderr, "xenbus-xenstored: cannot open log file %s: %s\n", log_file.c_str(), std::strerror(errno));
      report(d, false);
      return 1;
    }
  } else if (use_syslog || !no_fork) {
    log.to_syslog();
  }
  // Setup failures go to standard error (the parent is still waiting there) and the log.
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "xenbus-xenstored: %s\n", why.c_str());
    if (log.where() != logger::sink::standard_error) log.line(why, LOG_ERR);
    report(d, false);
    return 1;
  };

  // Signals arrive as a readable fd: the loop's stop fd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return fail(std::string{"signalfd: "} + std::strerror(errno));

  xenbus::xenstore::store store{lim};
  store.set_orphans(orphans);
  xenbus::xenstore::server server{store};
  server.set_max_connections(max_connections);
  server.set_log([&log](std::string_view line) { log.line(line, LOG_WARNING); });
  make_parent_dir(socket_path);
  if (auto r = server.listen(socket_path); !r)
    return fail("cannot listen on " + socket_path + ": " + std::strerror(r.error()));
  if (spin_us > 0) server.set_spin(std::chrono::microseconds{spin_us});
  xen_side xen;
  if (serve_domains)
    if (auto why = xen.start(store, server, log)) return fail(*why);
  if (!pid_file.empty()) {
    FILE* f = std::fopen(pid_file.c_str(), "w");
    if (!f) return fail("cannot write pid file " + pid_file + ": " + std::strerror(errno));
    std::fprintf(f, "%d\n", static_cast<int>(getpid()));
    std::fclose(f);
  }
  if (serve_domains)
    log.line("serving " + socket_path + " and dom0's ring (port " + std::to_string(xen.local->port()) + ")");
  else if (log.where() != logger::sink::standard_error)
    log.line("serving " + socket_path + " (no domains' rings)");
  report(d, true);

  auto ran = server.run(sfd);
  close(sfd);
  if (!ran) {
    log.line(std::string{"stopped: "} + std::strerror(ran.error()), LOG_ERR);
    return 1;
  }
  if (!pid_file.empty()) ::unlink(pid_file.c_str());
  return 0;
}
