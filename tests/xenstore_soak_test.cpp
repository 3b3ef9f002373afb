// Soak test of the xenstore socket server: 100 hostile clients (pipeliners that never
// read, slow readers, watch floods, open transactions, disconnects mid-message) beside 4
// honest clients doing test-xenstore-like work, for a bounded time on a loopback socket.
// Asserts that the server's peak RSS stays under the memory bound its limits state, that
// every honest request is answered and that no committed write is lost; prints RSS and the
// honest clients' latency percentiles.
//
//   xenbus-xenstore-soak [--server PROGRAM] [--seconds N]
//       starts PROGRAM (xenbus-xenstored) with the soak's limits, or, without --server,
//       serves from a forked child of this program
//   xenbus-xenstore-soak --socket PATH --pid PID [--seconds N]
//       drives a server already running there (another xenstored, for comparison);
//       reports figures, asserts only the honest clients' results
#include <xenbus/posix/xenstore/server.hpp>
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace xs = xenbus::xenstore;
using T = xs::msg_type;
using clock_type = std::chrono::steady_clock;
using namespace std::string_view_literals;

// A sanitizer's shadow memory and quarantine of freed blocks dwarf the server's own
// memory: built with one (this program and the server it starts alike), the soak still
// checks the honest clients but reports RSS without holding it to the bound.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

// ---- The server's limits in this soak, and the bound they imply ------------------------

constexpr std::size_t max_connections = 128;

xs::limits soak_limits() {
  xs::limits l;
  l.privileged_outstanding_bytes = 64 * 1024;
  l.queued_event_bytes = 256 * 1024;
  l.privileged_queued_events = 4096;
  l.watch_bytes = 256 * 1024;
  l.transaction_bytes = 256 * 1024;
  l.privileged_transactions = 16;
  return l;
}

/// What one connection may hold, from the limits (see the README's memory bound):
/// input (read buffer 16 KiB, decoder 4112 bytes, bookkeeping), output (flow control
/// threshold, one more reply, two chunks, queued events), watches, transactions.
std::size_t per_connection_bound(const xs::limits& l) {
  const std::size_t input = 16384 + xs::header_size + xs::payload_max + 1024;
  const std::size_t output = xs::store::output_bound(l);
  return input + output + l.watch_bytes + l.transaction_bytes + l.privileged_transactions * 512;
}

// ---- Wire helpers ------------------------------------------------------------------------

std::string frame(T t, std::string_view payload, std::uint32_t req, std::uint32_t tx = 0) {
  std::string out(xs::header_size + payload.size(), '\0');
  const xs::header h{static_cast<std::uint32_t>(t), req, tx, static_cast<std::uint32_t>(payload.size())};
  xs::encode_header(h, std::span<char, xs::header_size>{out.data(), xs::header_size});
  std::memcpy(out.data() + xs::header_size, payload.data(), payload.size());
  return out;
}
std::string arg(std::string_view p) { return std::string{p} + '\0'; }

int connect_to(const std::string& path, bool nonblocking) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// ---- Honest clients ------------------------------------------------------------------------

struct reply {
  T type = T::invalid;
  std::string payload;
  bool ok() const { return type != T::error; }
};

/// A blocking client that waits for each reply (skipping watch events) up to 10 s.
class honest_conn {
 public:
  explicit honest_conn(const std::string& path) : fd_{connect_to(path, false)} {}
  ~honest_conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  std::optional<reply> call(T t, std::string_view payload, std::uint32_t tx = 0) {
    const std::string f = frame(t, payload, ++req_, tx);
    std::size_t at = 0;
    while (at < f.size()) {
      const ssize_t n = ::send(fd_, f.data() + at, f.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return std::nullopt;
      at += static_cast<std::size_t>(n);
    }
    const auto deadline = clock_type::now() + std::chrono::seconds{10};
    for (;;) {
      while (dec_->ready()) {
        const auto m = dec_->current();
        const bool mine = m.hdr.kind() != T::watch_event && m.hdr.req_id == req_;
        reply r{m.hdr.kind(), std::string{m.payload}};
        dec_->next();
        if (mine) return r;
      }
      if (used_ < have_) {
        used_ += dec_->feed(std::span<const char>{buf_ + used_, have_ - used_});
        if (dec_->broken()) return std::nullopt;
        continue;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      const ssize_t n = ::read(fd_, buf_, sizeof buf_);
      if (n <= 0) return std::nullopt;
      have_ = static_cast<std::size_t>(n);
      used_ = 0;
    }
  }

 private:
  int fd_;
  std::uint32_t req_ = 0;
  std::unique_ptr<xs::decoder> dec_ = std::make_unique<xs::decoder>();
  char buf_[8192];
  std::size_t have_ = 0;
  std::size_t used_ = 0;
};

struct honest_result {
  std::vector<double> latency_us;
  std::size_t requests = 0;
  std::size_t unanswered = 0;
  std::size_t wrong = 0;  ///< a reply that contradicts what this client committed
  std::size_t lost = 0;   ///< committed data missing or changed at the final re-read
  std::string first_problem;
};

/// test-xenstore-like work on its own subtree: writes, reads back, directories, removals
/// and counter transactions; keeps a model of what it committed and checks it at the end.
void honest_client(const std::string& path, int id, const std::atomic<bool>& stop, honest_result& res) {
  honest_conn c{path};
  auto problem = [&](std::size_t& counter, const std::string& what) {
    ++counter;
    if (res.first_problem.empty()) res.first_problem = "honest " + std::to_string(id) + ": " + what;
  };
  if (!c.ok()) return problem(res.unanswered, "cannot connect");
  auto timed = [&](T t, std::string_view payload, std::uint32_t tx = 0) {
    const auto t0 = clock_type::now();
    auto r = c.call(t, payload, tx);
    res.latency_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    ++res.requests;
    if (!r) problem(res.unanswered, "no reply to request type " + std::to_string(static_cast<unsigned>(t)));
    return r;
  };
  const std::string base = "/honest/" + std::to_string(id);
  std::map<std::string, std::optional<std::string>> model;  // committed: value, or removed
  std::uint64_t counter = 0;
  std::uint64_t seq = 0;
  std::mt19937 rng{static_cast<unsigned>(id) * 7919u + 1};
  while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a flag polled, no data with it
    // A steady pace, not a flat-out loop: latency under load, at modest CPU.
    std::this_thread::sleep_for(std::chrono::microseconds{500});
    const std::string key = base + "/k" + std::to_string(rng() % 40);
    const std::string value = "v" + std::to_string(id) + "-" + std::to_string(++seq) + std::string(rng() % 200, 'x');
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        auto r = timed(T::write, key + '\0' + value);
        if (!r) return;
        if (!r->ok())
          problem(res.wrong, "write " + key + ": " + r->payload);
        else
          model[key] = value;
        break;
      }
      case 3:
      case 4: {
        auto r = timed(T::read, arg(key));
        if (!r) return;
        auto it = model.find(key);
        const bool have = it != model.end() && it->second;
        if (have ? (!r->ok() || r->payload != *it->second) : r->ok())
          problem(res.wrong, "read " + key + " disagrees with what was committed");
        break;
      }
      case 5: {
        auto r = timed(T::directory, arg(base));
        if (!r) return;
        break;
      }
      case 6: {
        auto r = timed(T::rm, arg(key));
        if (!r) return;
        if (!r->ok() && r->payload != std::string_view{"ENOENT\0", 7})
          problem(res.wrong, "rm " + key);
        else
          model[key] = std::nullopt;
        break;
      }
      case 7: {  // counter += 1 in a transaction, retried on EAGAIN
        for (int attempt = 0; attempt < 20; ++attempt) {
          auto s = timed(T::transaction_start, "\0"sv);
          if (!s) return;
          if (!s->ok()) {
            problem(res.wrong, "transaction_start: " + s->payload);
            break;
          }
          const auto tx = static_cast<std::uint32_t>(std::strtoul(s->payload.c_str(), nullptr, 10));
          auto r = timed(T::read, arg(base + "/counter"), tx);
          if (!r) return;
          const std::uint64_t seen = r->ok() ? std::strtoull(r->payload.c_str(), nullptr, 10) : 0;
          if (seen != counter) problem(res.wrong, "counter read in a transaction disagrees");
          auto w = timed(T::write, base + "/counter" + '\0' + std::to_string(counter + 1), tx);
          if (!w) return;
          auto e = timed(T::transaction_end, "T\0"sv, tx);
          if (!e) return;
          if (e->ok()) {
            ++counter;
            break;
          }
          if (e->payload != std::string_view{"EAGAIN\0", 7}) {
            problem(res.wrong, "transaction_end: " + e->payload);
            break;
          }
        }
        break;
      }
    }
  }
  // Every committed write is still there.
  for (const auto& [key, value] : model) {
    auto r = c.call(T::read, arg(key));
    if (!r) return problem(res.unanswered, "final read " + key);
    if (value ? (!r->ok() || r->payload != *value) : r->ok()) problem(res.lost, "lost " + key);
  }
  if (counter > 0) {
    auto r = c.call(T::read, arg(base + "/counter"));
    if (!r) return problem(res.unanswered, "final counter read");
    if (!r->ok() || std::strtoull(r->payload.c_str(), nullptr, 10) != counter) problem(res.lost, "counter");
  }
}

// ---- Hostile clients ---------------------------------------------------------------------

enum class kind { pipeliner, slow_reader, deaf_watcher, flooder, open_tx, midmessage };

struct hostile {
  kind k = kind::pipeliner;
  int fd = -1;
  std::uint32_t req = 0;
  std::string pending;  ///< bytes not yet sent
  clock_type::time_point next{};
  int stage = 0;
  std::unique_ptr<xs::decoder> dec = std::make_unique<xs::decoder>();
  std::vector<std::uint32_t> txs;  ///< transactions it opened
};

void send_some(hostile& h) {
  while (!h.pending.empty()) {
    const ssize_t n = ::send(h.fd, h.pending.data(), h.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) return;
    h.pending.erase(0, static_cast<std::size_t>(n));
  }
}
/// Reads up to `at_most` bytes of replies, noting the transactions it was given.
void read_some(hostile& h, std::size_t at_most) {
  char buf[65536];
  while (at_most > 0) {
    const ssize_t n = ::recv(h.fd, buf, std::min(at_most, sizeof buf), MSG_DONTWAIT);
    if (n <= 0) return;
    at_most -= static_cast<std::size_t>(n);
    if (h.k != kind::open_tx) continue;
    std::size_t used = 0;
    while (used < static_cast<std::size_t>(n) && !h.dec->broken()) {
      used += h.dec->feed(std::span<const char>{buf + used, static_cast<std::size_t>(n) - used});
      if (!h.dec->ready()) continue;
      const auto m = h.dec->current();
      if (m.hdr.kind() == T::transaction_start)
        h.txs.push_back(static_cast<std::uint32_t>(std::strtoul(std::string{m.payload}.c_str(), nullptr, 10)));
      h.dec->next();
    }
  }
}

/// Drives the 100 hostile clients from one thread, each at its own modest pace.
void hostile_loop(const std::string& path, const std::atomic<bool>& stop, std::size_t& reconnects) {
  std::vector<hostile> hs;
  const kind kinds[] = {kind::pipeliner, kind::slow_reader, kind::deaf_watcher,
                        kind::flooder,   kind::open_tx,     kind::midmessage};
  const int counts[] = {20, 20, 10, 10, 20, 20};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < counts[i]; ++j) {
      hs.emplace_back();
      hs.back().k = kinds[i];
    }
  std::mt19937 rng{42};
  while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a flag polled, no data with it
    const auto now = clock_type::now();
    for (auto& h : hs) {
      if (now < h.next) continue;
      if (h.fd < 0) {
        h.fd = connect_to(path, true);
        h.stage = 0;
        h.pending.clear();
        h.txs.clear();
        h.dec = std::make_unique<xs::decoder>();
        if (h.fd < 0) {
          h.next = now + std::chrono::milliseconds{100};
          continue;
        }
      }
      switch (h.k) {
        case kind::pipeliner:  // reads of a 4000-byte node, as fast as the socket takes them; never reads
          if (h.pending.size() < 4096)
            for (int i = 0; i < 64; ++i) h.pending += frame(T::read, "/soak/big\0"sv, ++h.req);
          send_some(h);
          h.next = now + std::chrono::milliseconds{20};
          break;
        case kind::slow_reader:  // asks for 64 KiB of replies every 20 ms but takes only 32 KiB:
                                 // always behind, never idle (the output never drains)
          if (h.pending.size() < 4096)
            for (int i = 0; i < 16; ++i) h.pending += frame(T::read, "/soak/big\0"sv, ++h.req);
          send_some(h);
          read_some(h, 32 * 1024);
          h.next = now + std::chrono::milliseconds{20};
          break;
        case kind::deaf_watcher:  // watches with long tokens on the hot subtree; never reads
          if (h.stage < 200) {
            for (int i = 0; i < 20; ++i, ++h.stage)
              h.pending +=
                  frame(T::watch, arg("/soak/hot") + std::string(400, 'w') + std::to_string(h.stage) + '\0', ++h.req);
          }
          send_some(h);
          h.next = now + std::chrono::milliseconds{50};
          break;
        case kind::flooder:  // writes under the hot subtree, reading its replies
          for (int i = 0; i < 1; ++i)
            h.pending +=
                frame(T::write, "/soak/hot/" + std::to_string(rng() % 16) + '\0' + std::string(64, 'f'), ++h.req);
          send_some(h);
          read_some(h, 1 << 20);
          h.next = now + std::chrono::milliseconds{10};
          break;
        case kind::open_tx:  // opens transactions, fills them with 4000-byte writes, never ends them
          if (h.stage < 16) {
            h.pending += frame(T::transaction_start, "\0"sv, ++h.req);
            ++h.stage;
          } else if (h.stage < 16 + 200 && !h.txs.empty()) {
            // Spread over the transactions it holds (the connection's cap answers ENOSPC).
            for (int i = 0; i < 5; ++i, ++h.stage)
              h.pending += frame(T::write, "/soak/tx/" + std::to_string(h.stage) + '\0' + std::string(4000, 't'),
                                 ++h.req, h.txs[static_cast<std::size_t>(h.stage) % h.txs.size()]);
          }
          send_some(h);
          read_some(h, 1 << 20);
          h.next = now + std::chrono::milliseconds{50};
          break;
        case kind::midmessage: {  // half a message, then gone
          const std::string f = frame(T::write, arg("/soak/half") + std::string(3000, 'h'), 1);
          (void)::send(h.fd, f.data(), f.size() / 2, MSG_NOSIGNAL | MSG_DONTWAIT);
          ::close(h.fd);
          h.fd = -1;
          ++reconnects;
          h.next = now + std::chrono::milliseconds{20 + rng() % 80};
          break;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  for (auto& h : hs)
    if (h.fd >= 0) ::close(h.fd);
}

// ---- Measuring ---------------------------------------------------------------------------

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat fields 14, 15.
double cpu_seconds(pid_t pid) {
  std::ifstream f{"/proc/" + std::to_string(pid) + "/stat"};
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  const char* p = all.c_str() + close + 2;  // field 3 onwards
  long v[16] = {};
  for (int i = 3; i <= 15; ++i) {
    char* e = nullptr;
    if (i >= 4)
      v[i] = std::strtol(p, &e, 10);
    else
      e = const_cast<char*>(std::strchr(p, ' '));
    if (!e) return -1;
    p = e + 1;
  }
  return static_cast<double>(v[14] + v[15]) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or -1.
long status_kib(pid_t pid, const char* field) {
  std::ifstream f{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  const std::string want = std::string{field} + ":";
  while (std::getline(f, line))
    if (line.rfind(want, 0) == 0) return std::strtol(line.c_str() + want.size(), nullptr, 10);
  return -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

bool wait_for_socket(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    const int fd = connect_to(path, false);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server_prog, socket_path;
  pid_t pid = -1;
  int seconds = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--server" && i + 1 < argc)
      server_prog = argv[++i];
    else if (a == "--socket" && i + 1 < argc)
      socket_path = argv[++i];
    else if (a == "--pid" && i + 1 < argc)
      pid = static_cast<pid_t>(std::atoi(argv[++i]));
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::max(1, std::min(50, std::atoi(argv[++i])));
    else {
      std::fprintf(stderr, "usage: %s [--server PROGRAM | --socket PATH --pid PID] [--seconds N<=50]\n", argv[0]);
      return 2;
    }
  }
  std::signal(SIGPIPE, SIG_IGN);
  const bool external = !socket_path.empty();
  if (external != (pid > 0)) {
    std::fprintf(stderr, "--socket and --pid go together\n");
    return 2;
  }
  const xs::limits lim = soak_limits();
  if (!external) {
    socket_path = "/tmp/xenbus-xs-soak-" + std::to_string(::getpid()) + ".sock";
    pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      if (!server_prog.empty()) {
        auto l = [](const char* name, std::size_t v) {
          return std::string{"--limit="} + name + "=" + std::to_string(v);
        };
        std::vector<std::string> args{server_prog, "--no-fork",         "--socket",
                                      socket_path, "--max-connections", std::to_string(max_connections)};
        for (const auto& s : {l("privileged_outstanding_bytes", lim.privileged_outstanding_bytes),
                              l("queued_event_bytes", lim.queued_event_bytes),
                              l("privileged_queued_events", lim.privileged_queued_events),
                              l("watch_bytes", lim.watch_bytes), l("transaction_bytes", lim.transaction_bytes),
                              l("privileged_transactions", lim.privileged_transactions)}) {
          args.push_back("--limit");
          args.push_back(s.substr(std::strlen("--limit=")));
        }
        std::vector<char*> av;
        for (auto& s : args) av.push_back(s.data());
        av.push_back(nullptr);
        ::execv(av[0], av.data());
        ::_exit(127);
      }
      xs::store st{lim};
      xs::server srv{st};
      srv.set_max_connections(max_connections);
      if (!srv.listen(socket_path)) ::_exit(1);
      const int stop = ::eventfd(0, EFD_CLOEXEC);
      (void)srv.run(stop);
      ::_exit(0);
    }
  }
  struct reap {
    pid_t pid;
    bool own;
    std::string path;
    ~reap() {
      if (!own) return;
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      ::unlink(path.c_str());
    }
  } guard{pid, !external, socket_path};
  if (!wait_for_socket(socket_path)) {
    std::fprintf(stderr, "soak: server did not come up on %s\n", socket_path.c_str());
    return 1;
  }
  {
    honest_conn setup{socket_path};
    if (!setup.call(T::write, arg("/soak/big") + std::string(4000, 'b')) || !setup.call(T::mkdir, "/soak/hot\0"sv)) {
      std::fprintf(stderr, "soak: setup failed\n");
      return 1;
    }
  }
  const long baseline_kib = status_kib(pid, "VmRSS");
  const double cpu0 = cpu_seconds(pid);

  std::atomic<bool> stop{false};
  std::size_t reconnects = 0;
  long peak_rss_kib = baseline_kib;
  std::thread hostile_thread{[&] { hostile_loop(socket_path, stop, reconnects); }};
  std::this_thread::sleep_for(std::chrono::milliseconds{500});  // let the hostile load build up
  std::vector<honest_result> results(4);
  std::vector<std::thread> honest;
  for (int i = 0; i < 4; ++i)
    honest.emplace_back([&, i] { honest_client(socket_path, i, stop, results[static_cast<std::size_t>(i)]); });
  const auto end = clock_type::now() + std::chrono::seconds{seconds};
  while (clock_type::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
    peak_rss_kib = std::max(peak_rss_kib, status_kib(pid, "VmRSS"));
  }
  stop.store(true, std::memory_order_relaxed);  // relaxed: the joins below order everything
  for (auto& t : honest) t.join();
  hostile_thread.join();
  const double server_cpu = cpu_seconds(pid) - cpu0;
  // VmHWM is updated lazily by the kernel: take the larger of it and the sampled peak.
  const long hwm_kib = std::max(status_kib(pid, "VmHWM"), peak_rss_kib);

  // The bound: the server as it started, every connection at its limits, and 4 MiB for
  // the nodes the run adds to the store (the honest clients' ~200 keys and the hostile
  // ones' few).
  const std::size_t bound_kib =
      static_cast<std::size_t>(baseline_kib) + (max_connections * per_connection_bound(lim)) / 1024 + 4096;
  std::vector<double> all;
  std::size_t requests = 0, unanswered = 0, wrong = 0, lost = 0;
  std::string problem;
  for (auto& r : results) {
    all.insert(all.end(), r.latency_us.begin(), r.latency_us.end());
    requests += r.requests;
    unanswered += r.unanswered;
    wrong += r.wrong;
    lost += r.lost;
    if (problem.empty()) problem = r.first_problem;
  }
  std::printf("soak: %d s, 100 hostile clients (%zu mid-message disconnects) and 4 honest ones\n", seconds, reconnects);
  std::printf("soak: server RSS at start %ld KiB, peak sampled %ld KiB, peak (with VmHWM) %ld KiB", baseline_kib,
              peak_rss_kib, hwm_kib);
  if (external)
    std::printf(" (its own limits: no bound checked)\n");
  else if (sanitized)
    std::printf("; bound %zu KiB not checked: built with a sanitizer\n", bound_kib);
  else
    std::printf("; bound %zu KiB\n", bound_kib);
  std::printf("soak: server CPU %.1f s over the run\n", server_cpu);
  std::printf("soak: honest requests %zu, unanswered %zu, wrong %zu, lost %zu\n", requests, unanswered, wrong, lost);
  std::printf("soak: honest latency p50 %.0f us, p99 %.0f us, max %.0f us\n", percentile(all, 0.5),
              percentile(all, 0.99), percentile(all, 1.0));
  if (!problem.empty()) std::printf("soak: first problem: %s\n", problem.c_str());
  bool ok = unanswered == 0 && wrong == 0 && lost == 0 && requests > 0;
  if (!external && !sanitized && (hwm_kib < 0 || static_cast<std::size_t>(hwm_kib) > bound_kib)) {
    std::printf("soak: FAIL: peak RSS over the bound\n");
    ok = false;
  }
  std::printf("soak: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
