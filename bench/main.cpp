// xenbus-bench's entry point: registers every measure in order and names the machine.
#include "harness.hpp"
#include "xen_peer.h"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace xbench {

bool pin_this_thread(unsigned cpu) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

shared_pages::shared_pages(std::size_t bytes) : bytes_(bytes) {
  p_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p_ == MAP_FAILED) {
    std::perror("xenbus-bench: mmap");
    std::abort();
  }
}

shared_pages::~shared_pages() { munmap(p_, bytes_); }

event_channel::event_channel() : fd_(eventfd(0, EFD_CLOEXEC)) {
  if (fd_ < 0) {
    std::perror("xenbus-bench: eventfd");
    std::abort();
  }
}

event_channel::~event_channel() { close(fd_); }

namespace {

// Wraps the reporter the command line asked for and remembers whether any benchmark
// reported an error (a wrong id, a wrong byte): the smoke test then fails.
template <class Base>
class error_tracking : public Base {
 public:
  void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>& runs) override {
    for (const auto& run : runs)
      if (run.error_occurred) failed = true;
    Base::ReportRuns(runs);
  }
  bool failed = false;
};

template <class Base>
int run_with() {
  error_tracking<Base> display;
  benchmark::RunSpecifiedBenchmarks(&display);
  return display.failed ? 1 : 0;
}

}  // namespace
}  // namespace xbench

int main(int argc, char** argv) {
  using namespace xbench;
  xp_pattern_source();  // fills the byte rings' pattern once, before any thread runs
  for (measure m : {measure::round_trip, measure::stream, measure::notify, measure::bytes}) {
    register_floor(m);
    register_xenbus(m);
    register_xen_macros(m);
    register_flex_ring(m);
    register_boost_spsc(m);
  }
  // The display format (console or json), to wrap the reporter Google Benchmark would
  // have chosen; and our short default run time unless the command line sets one.
  std::string display_format = "console";
  bool min_time_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--benchmark_format=")) display_format = arg.substr(19);
    if (arg.starts_with("--benchmark_min_time=")) min_time_given = true;
  }
  std::string min_time_arg = std::string("--benchmark_min_time=") + default_min_time;
  std::vector<char*> args(argv, argv + argc);
  if (!min_time_given) args.insert(args.begin() + 1, min_time_arg.data());
  int nargs = static_cast<int>(args.size());
  args.push_back(nullptr);  // argv[argc], as the C runtime gives it
  benchmark::Initialize(&nargs, args.data());
  if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return 1;

  // The two threads of each benchmark run on CPUs 0 and 1; the benchmark thread stays
  // on CPU 0 for the whole run.
  const bool pinned = pin_this_thread(front_cpu) && std::thread::hardware_concurrency() >= 2;
  if (!pinned)
    std::fprintf(stderr, "xenbus-bench: cannot pin threads to CPUs %d and %d: figures are not comparable\n", front_cpu,
                 back_cpu);
  benchmark::AddCustomContext("xenbus_threads", pinned ? "pinned to CPUs 0 and 1" : "not pinned");
  const int rc =
      display_format == "json" ? run_with<benchmark::JSONReporter>() : run_with<benchmark::ConsoleReporter>();
  benchmark::Shutdown();
  return rc;
}
