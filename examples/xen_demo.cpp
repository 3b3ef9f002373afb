// xenbus-xen-demo: the two-domain demo on a real Xen. The toolstack and the backend run in dom0's
// user space over libxenstore (the real xenstored), libxenevtchn and libxengnttab; the
// frontends run in a guest's user space over the kernel's /dev/xen/xenbus, gntalloc and
// evtchn. The roles and the story are demo_story.hpp's, the same that xenbus-demo runs over
// the POSIX machine. Dom0 and the guest coordinate through xenstore only: the guest writes
// under its home's data/ (which libxl lets it write), dom0 reads and writes there too.
//
//   dom0:  xenbus-xen-demo story --domu D      the whole story (the guest must run `guest`)
//   domU:  xenbus-xen-demo guest --domid D     starts and stops frontends when dom0 asks
//   dom0:  xenbus-xen-demo serve               a long-lived backend for every vdemo device
//   dom0:  xenbus-xen-demo create|remove --domu D [--devid N]    the toolstack's two steps
//   domU:  xenbus-xen-demo frontend --domid D [--devid N] --who NAME
#include "demo_story.hpp"

#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace demo;
using xen::xs_store;

constexpr domid_t backend_dom = 0;

struct options {
  std::string mode;
  domid_t domu = 0;  // story, create, remove: the guest; guest, frontend: our own domid
  bool have_domu = false;
  int patience = 10;   // story: every wait of the POSIX demo, times this (TCG is slow)
  int timeout_s = 60;  // remove: how long the ends may take to close
  role_options r;
};

std::string launch_dir(domid_t d) { return data_dir(d) + "/launch"; }
std::string exit_path(domid_t d, std::string_view who) { return data_dir(d) + "/exit/" + std::string(who); }
std::string launcher_path(domid_t d) { return data_dir(d) + "/launcher"; }

std::optional<xs_store> open_store() {
  auto s = xs_store::open();
  if (!s) {
    std::fprintf(stderr, "xenbus-xen-demo: cannot open xenstore (libxenstore)\n");
    return std::nullopt;
  }
  return std::move(*s);
}

/// Runs this program again as `args`, in the background; returns its pid.
pid_t spawn_self(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  std::vector<const char*> argv{"xenbus-xen-demo"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
  ::_exit(127);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
}

// ---- dom0: the backend ----------------------------------------------------------------------

int run_serve(const options& o) {
  stop_on_sigterm();
  auto s = open_store();
  auto ev = xen::evtchn_handle::open();
  auto gt = xen::gnttab::open();
  if (!s || !ev || !gt) {
    std::fprintf(stderr, "xenbus-xen-demo serve: needs xenstore, /dev/xen/evtchn and /dev/xen/gntdev\n");
    return 2;
  }
  backend_pool<xs_store, xen::evtchn_handle, xen::gnttab> pool{*s, *ev, *gt, backend_dom, o.r.who};
  if (!pool.start()) return 3;
  say(o.r.who, "serving every vdemo device of dom0 (pid " + std::to_string(::getpid()) + ")");
  return pool.run(o.r);
}

// ---- the guest: frontends ---------------------------------------------------------------------

int run_frontend_process(const options& o) {
  stop_on_sigterm();
  auto s = open_store();
  auto ev = xen::evtchn_handle::open();
  auto gs = xen::gntshr::open();
  if (!s || !ev || !gs) {
    std::fprintf(stderr, "xenbus-xen-demo frontend: needs /dev/xen/xenbus, /dev/xen/evtchn and /dev/xen/gntalloc\n");
    return 2;
  }
  return run_frontend(o.r, *s, *ev, *gs);
}

/// The guest's launcher: dom0 writes data/xenbus-demo/launch/<who> = fresh | handover | stop;
/// we start or stop that frontend process and write its exit status to exit/<who>. We end
/// when dom0 writes launcher = exit (or at our lifetime), stopping what still runs.
int run_guest(const options& o) {
  stop_on_sigterm();
  auto s = open_store();
  if (!s) return 2;
  const domid_t self = o.r.self;
  if (!s->watch(launch_dir(self), "launch") || !s->watch(launcher_path(self), "launch")) return 3;
  (void)s->write(no_tx, launcher_path(self), "running");
  say("launcher", "waiting for dom0's requests under " + launch_dir(self));
  std::map<std::string, pid_t> running;
  std::set<std::string> started, stopped;
  const auto deadline = clock_type::now() + std::chrono::seconds(o.r.lifetime_s);
  bool finish = false;
  while (!stop_requested && !finish && clock_type::now() < deadline) {
    // Read the requests only when a watch fired (it fires once when set, too).
    bool asked = s->next_watch_event(200).has_value();
    while (s->next_watch_event(0)) asked = true;
    if (asked) finish = s->read(no_tx, launcher_path(self)).value_or("") == "exit";
    const auto whos = asked && !finish ? s->directory(no_tx, launch_dir(self)).value_or(std::vector<std::string>{})
                                       : std::vector<std::string>{};
    for (const std::string& who : whos) {
      const std::string what = s->read(no_tx, launch_dir(self) + "/" + who).value_or("");
      if ((what == "fresh" || what == "handover") && !started.contains(who)) {
        started.insert(who);
        std::vector<std::string> args{"frontend",
                                      "--domid",
                                      std::to_string(self),
                                      "--devid",
                                      std::to_string(o.r.devid),
                                      "--who",
                                      who,
                                      "--requests",
                                      std::to_string(o.r.requests),
                                      "--lifetime",
                                      std::to_string(o.r.lifetime_s),
                                      "--t0",
                                      std::to_string(t0_ns)};
        if (what == "handover") args.push_back("--handover");
        running[who] = spawn_self(args);
        say("launcher", "started " + who + (what == "handover" ? " (handover)" : ""));
      } else if (what == "stop" && running.contains(who) && !stopped.contains(who)) {
        stopped.insert(who);
        ::kill(running[who], SIGTERM);
        say("launcher", "asked " + who + " to stop");
      }
    }
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      if (::waitpid(it->second, &status, WNOHANG) != it->second) {
        ++it;
        continue;
      }
      (void)s->write(no_tx, exit_path(self, it->first), std::to_string(exit_code(status)));
      say("launcher", it->first + " exited with " + std::to_string(exit_code(status)));
      it = running.erase(it);
    }
  }
  for (auto& [who, pid] : running) ::kill(pid, SIGTERM);
  for (auto& [who, pid] : running) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    (void)s->write(no_tx, exit_path(self, who), std::to_string(exit_code(status)));
  }
  (void)s->write(no_tx, launcher_path(self), "done");
  say("launcher", "exits");
  return 0;
}

// ---- dom0: the toolstack ------------------------------------------------------------------------

device_address address_of(const options& o) {
  return device_address{o.domu, backend_dom, std::string(demo_protocol::type), o.r.devid};
}

/// The story's processes: the backend pool is a child of ours in dom0; the frontends are
/// started in the guest by its launcher, which we ask through xenstore.
class xen_launcher {
 public:
  xen_launcher(xs_store& s, const options& o) : s_{s}, o_{o} {}
  void start_backend() {
    backend_ = spawn_self({"serve", "--until-idle", "--who", "backend", "--lifetime", std::to_string(o_.r.lifetime_s),
                           "--t0", std::to_string(t0_ns)});
  }
  void start_frontend(const char* who, bool handover) {
    started_.push_back(who);
    (void)s_.write(no_tx, launch_dir(o_.domu) + "/" + who, handover ? "handover" : "fresh");
  }
  void stop_frontend(const char* who) { (void)s_.write(no_tx, launch_dir(o_.domu) + "/" + who, "stop"); }
  int wait_all(int seconds) {
    const auto deadline = clock_type::now() + std::chrono::seconds(seconds);
    int bad = 0;
    int status = 0;
    pid_t r = 0;
    while ((r = ::waitpid(backend_, &status, WNOHANG)) == 0 && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (r == 0) {
      say("toolstack", "the backend did not exit: killing it");
      ::kill(backend_, SIGKILL);
      ::waitpid(backend_, &status, 0);
    }
    if (exit_code(status) != 0) ++bad;
    for (const std::string& who : started_) {
      std::string code;
      for (;;) {
        code = s_.read(no_tx, exit_path(o_.domu, who)).value_or("");
        if (!code.empty() || clock_type::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (code != "0") {
        say("toolstack", who + " exit status: " + (code.empty() ? std::string("none (still running?)") : code));
        ++bad;
      }
    }
    (void)s_.write(no_tx, launcher_path(o_.domu), "exit");
    return bad;
  }

 private:
  xs_store& s_;
  const options& o_;
  pid_t backend_ = -1;
  std::vector<std::string> started_;
};

int run_xen_story(const options& o) {
  auto s = open_store();
  if (!s) return 2;
  for (const char* sub : {"/result", "/quiet", "/exit", "/launch"}) (void)s->remove(no_tx, data_dir(o.domu) + sub);
  xen_launcher launch{*s, o};
  std::vector<step> steps = run_story(*s, address_of(o), launch, o.patience);
  return print_summary("xenbus-xen-demo", steps) ? 1 : 0;
}

int run_create(const options& o) {
  auto s = open_store();
  if (!s) return 2;
  toolstack<xs_store> tk{*s, address_of(o)};
  tk.set_logger([](std::string_view l) { say("toolstack", l); });
  auto r = tk.create();
  if (!r) say("toolstack", "create failed");
  return r ? 0 : 1;
}

/// Unplugs the device if its frontend is still there, waits for both ends (or what is left of
/// them) to close, then removes it. Writes nothing under a guest home that is gone.
int run_remove(const options& o) {
  auto s = open_store();
  if (!s) return 2;
  const device_address a = address_of(o);
  const std::string home = "/local/domain/" + std::to_string(o.domu);
  const bool home_gone = node_gone(*s, home);
  toolstack<xs_store> tk{*s, a};
  tk.set_logger([](std::string_view l) { say("toolstack", l); });
  auto read = [&](const std::string& dir) { return s->read(no_tx, dir + "/state").value_or(""); };
  const std::string closing(to_node_text(state::closing)), closed(to_node_text(state::closed));
  if (!node_gone(*s, a.frontend_dir() + "/state") && read(a.backend_dir()) != closing &&
      read(a.backend_dir()) != closed) {
    if (!tk.unplug()) {
      say("toolstack", "unplug failed");
      return 1;
    }
  }
  const auto deadline = clock_type::now() + std::chrono::seconds(o.timeout_s);
  auto settled = [&] {
    const std::string f = read(a.frontend_dir());
    return read(a.backend_dir()) == closed && (f.empty() || f == closed);
  };
  while (!settled() && clock_type::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!settled()) {
    say("toolstack",
        "the ends did not close: frontend " + read(a.frontend_dir()) + ", backend " + read(a.backend_dir()));
    return 1;
  }
  if (!tk.remove()) {
    say("toolstack", "remove failed");
    return 1;
  }
  if (home_gone && !node_gone(*s, home)) {
    say("toolstack", "FAILED: " + home + " was re-created");
    return 1;
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: xenbus-xen-demo story --domu D [--requests N] [--patience P]\n"
               "       xenbus-xen-demo serve [--until-idle] [--lifetime S]\n"
               "       xenbus-xen-demo create|remove --domu D [--devid N] [--timeout S]\n"
               "       xenbus-xen-demo guest --domid D [--requests N] [--lifetime S]\n"
               "       xenbus-xen-demo frontend --domid D --who NAME [--devid N] [--handover] [--requests N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  options o;
  o.mode = argv[1];
  o.r.until_idle = false;
  o.r.lifetime_s = 600;
  o.r.who = o.mode == "serve" ? "backend" : o.mode;
  bool have_t0 = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    auto number = [&](unsigned long long max) {
      ++i;
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v, &end, 10);
      if (!*v || *end || n > max) {
        std::fprintf(stderr, "xenbus-xen-demo: %.*s wants a number up to %llu\n", static_cast<int>(a.size()), a.data(),
                     max);
        std::exit(2);
      }
      return n;
    };
    if (a == "--domu" || a == "--domid") {
      o.domu = static_cast<domid_t>(number(0x7fef));
      o.have_domu = true;
    } else if (a == "--devid")
      o.r.devid = static_cast<unsigned>(number(0xffffffffu));
    else if (a == "--who")
      o.r.who = v, ++i;
    else if (a == "--requests")
      o.r.requests = number(~0ull);
    else if (a == "--lifetime")
      o.r.lifetime_s = static_cast<int>(number(86400));
    else if (a == "--patience")
      o.patience = static_cast<int>(number(1000));
    else if (a == "--timeout")
      o.timeout_s = static_cast<int>(number(86400));
    else if (a == "--t0")
      t0_ns = static_cast<std::int64_t>(number(~0ull >> 1)), have_t0 = true;
    else if (a == "--handover")
      o.r.handover = true;
    else if (a == "--until-idle")
      o.r.until_idle = true;
    else
      return usage();
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (!have_t0) t0_ns = now_ns();
  o.r.self = o.mode == "guest" || o.mode == "frontend" ? o.domu : backend_dom;
  if (o.mode == "serve") return run_serve(o);
  if (!o.have_domu) return usage();
  if (o.mode == "story") return run_xen_story(o);
  if (o.mode == "create") return run_create(o);
  if (o.mode == "remove") return run_remove(o);
  if (o.mode == "guest") return run_guest(o);
  if (o.mode == "frontend") return run_frontend_process(o);
  return usage();
}
