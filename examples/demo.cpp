// xenbus-demo: a toolstack, a backend process and frontend processes standing in for two domains.
// They share our xenstore (served on a unix socket from the toolstack process) and pages of a
// POSIX machine (memfd grants, socket event channels). The demo prints the handshake with who
// drove each change, streams requests through the ring, performs the seed's kexec handover to
// a new frontend process while the old one stays quiet, unplugs, and ends with a summary.
// The roles and the story are demo_story.hpp's, which xenbus-xen-demo runs on a real Xen.
// Exit status: 0 if every step passed.
#include "demo_story.hpp"

#include <xenbus/posix/device/client_store.hpp>
#include <xenbus/posix/evtchn.hpp>
#include <xenbus/posix/grant.hpp>
#include <xenbus/posix/xenstore/server.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace demo;

constexpr domid_t backend_dom = 0, frontend_dom = 1;
constexpr unsigned devid = 0;

struct options {
  std::string role = "toolstack", socket;
  int machine_fd = -1;
  role_options r;
};

// ---- the child processes ------------------------------------------------------------------

int run_child(options& o) {
  stop_on_sigterm();
  auto m = posix::machine::attach(o.machine_fd);
  auto s = client_store::connect(o.socket);
  if (!m || !s) return 2;
  o.r.self = o.role == "backend" ? backend_dom : frontend_dom;
  auto ev = posix::evtchn_handle::open(*m, o.r.self);
  if (!ev) return 2;
  posix::grant_table grants{*m, o.r.self};
  if (o.role == "frontend") return run_frontend(o.r, *s, *ev, grants);
  backend_pool<client_store, posix::evtchn_handle, posix::grant_table> pool{*s, *ev, grants, o.r.self, o.r.who};
  if (!pool.start()) return 3;
  return pool.run(o.r);
}

// ---- the toolstack ------------------------------------------------------------------------

/// Forks and execs this program in each role; every process shares the machine's fd.
class posix_launcher {
 public:
  explicit posix_launcher(const options& o) : o_{o} {}
  void start_backend() { pids_["backend"] = spawn("backend", "backend", false); }
  void start_frontend(const char* who, bool handover) { pids_[who] = spawn("frontend", who, handover); }
  void stop_frontend(const char* who) { ::kill(pids_[who], SIGTERM); }
  int wait_all(int seconds) {
    int bad = 0;
    for (const auto& [who, pid] : pids_) {
      int status = 0;
      const auto deadline = clock_type::now() + std::chrono::seconds(seconds);
      pid_t r = 0;
      while ((r = ::waitpid(pid, &status, WNOHANG)) == 0 && clock_type::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (r == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
    }
    return bad;
  }

 private:
  pid_t spawn(const char* role, const char* who, bool handover) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    const std::string fd = std::to_string(o_.machine_fd), t0 = std::to_string(t0_ns), n = std::to_string(o_.r.requests);
    std::vector<const char*> argv{"xenbus-demo",  role,       "--socket",   o_.socket.c_str(),
                                  "--machine-fd", fd.c_str(), "--t0",       t0.c_str(),
                                  "--who",        who,        "--requests", n.c_str()};
    if (handover) argv.push_back("--handover");
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  const options& o_;
  std::map<std::string, pid_t> pids_;
};

int run_toolstack(options o) {
  std::vector<step> setup;
  char tmpl[] = "/tmp/xenbus-demo-XXXXXX";
  if (!::mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl;
  o.socket = dir + "/socket";
  xenstore::server_thread server{o.socket};
  setup.push_back({"xenstore server on a unix socket", o.socket, server.ok()});
  auto m = posix::machine::create({.frames = 256, .domains = 4, .grants_per_domain = 128, .ports_per_domain = 16});
  setup.push_back({"shared memory machine (memfd)", "grant and event-channel tables", m && m->inheritable()});
  auto conn = client_store::connect(o.socket);
  if (!server.ok() || !m || !conn) return 2;
  o.machine_fd = m->fd();

  posix_launcher launch{o};
  const device_address address{frontend_dom, backend_dom, std::string(demo_protocol::type), devid};
  std::vector<step> steps = run_story(*conn, address, launch);
  steps.insert(steps.begin(), setup.begin(), setup.end());
  server.stop();
  ::unlink(o.socket.c_str());
  ::rmdir(dir.c_str());
  return print_summary("xenbus-demo", steps) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  int i = 1;
  if (argc > 1 && (std::strcmp(argv[1], "backend") == 0 || std::strcmp(argv[1], "frontend") == 0)) o.role = argv[i++];
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--socket")
      o.socket = v, ++i;
    else if (a == "--machine-fd")
      o.machine_fd = std::atoi(v), ++i;
    else if (a == "--t0")
      t0_ns = std::atoll(v), ++i;
    else if (a == "--who")
      o.r.who = v, ++i;
    else if (a == "--requests")
      o.r.requests = std::strtoull(v, nullptr, 10), ++i;
    else if (a == "--handover")
      o.r.handover = true;
    else {
      std::fprintf(stderr, "usage: %s [--requests N]\n", argv[0]);
      return 2;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (o.role != "toolstack") return run_child(o);
  t0_ns = now_ns();
  return run_toolstack(o);
}
