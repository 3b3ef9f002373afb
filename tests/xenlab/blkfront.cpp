// xenbus-xenlab-blkfront: a user-space blkif frontend in a domU, over the real Xen adapters
// (/dev/xen/xenbus, gntalloc, evtchn) and the library's frontend driver, for the lab's
// scenario 62-blkback-handover: the seed's frontend handover against xenbus-blkback.
//
//   instance 1:  --devid N --write SEED --sectors K [--late-sector L] [--pid-file F]
//       connects device/vbd/N, writes sectors [0, K) with the pattern of SEED, flushes, prints
//       PASS write, then stays connected and idle until SIGTERM/SIGINT. When a newer instance
//       takes the device over, its driver reports the handover; once the backend answers the
//       new instance, it puts one more write (sector L, another pattern) on its old ring,
//       which nobody may answer. At exit it reports both (PASS/FAIL lost-device, no-answer).
//   instance 2:  --devid N --take-over --verify SEED --sectors K
//       takes the device over while instance 1 still runs (frontend_start::handover), reads
//       [0, K) back and checks the pattern, writes 64 sectors after them with the pattern of
//       SEED + 1 and reads them back, flushes, closes cleanly.
//   dom0:        --pattern SEED --first S --sectors K
//       prints the pattern's bytes of sectors [S, S + K) (to compare with the image).
//
// Every result is one line in the lab's relay format: PASS|FAIL name detail, INFO text,
// FIGURE name value unit. Exit status 0 when every check passed.
#include "../blkif_front.hpp"

#include <xenbus/hosted/blk/backend.hpp>
#include <xenbus/hosted/device.hpp>
#include <xenbus/xen/evtchn.hpp>
#include <xenbus/xen/grant.hpp>
#include <xenbus/xen/xs_store.hpp>
#include <xenbus/xenstore/decimal.hpp>

#include <array>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include <poll.h>
#include <unistd.h>

namespace {

using namespace xenbus;
using front_t = frontend<blk::vbd, xen::xs_store, xen::evtchn_handle, xen::gntshr>;
using client_t = blkfront::client<front_t, xen::gntshr>;

volatile std::sig_atomic_t stop_requested = 0;

struct config {
  long devid = -1, domid = -1;
  long seed = -1;  // --write or --verify
  long sectors = -1, first = 0, late = -1;
  bool take_over = false, pattern = false;
  std::string pid_file;
};

int failures = 0;
void line(const char* kind, std::string_view name, std::string_view detail) {
  if (std::string_view(kind) == "FAIL") ++failures;
  std::printf("%s %.*s %.*s\n", kind, static_cast<int>(name.size()), name.data(), static_cast<int>(detail.size()),
              detail.data());
  std::fflush(stdout);
}
void info(std::string_view text) {
  std::printf("INFO %.*s\n", static_cast<int>(text.size()), text.data());
  std::fflush(stdout);
}

double now_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", s);
  return b;
}

int usage() {
  std::fprintf(stderr,
               "usage: xenbus-xenlab-blkfront --devid N --write SEED --sectors K [--late-sector L] [--pid-file F]\n"
               "       xenbus-xenlab-blkfront --devid N --take-over --verify SEED --sectors K\n"
               "       xenbus-xenlab-blkfront --pattern SEED [--first S] --sectors K\n"
               "  [--domid D]: this domain (default: read from xenstore)\n");
  return 2;
}

/// The handles and the driver of one instance, and the wait the client sleeps in.
struct instance {
  xen::xs_store& s;
  xen::evtchn_handle& ev;
  xen::gntshr& gs;
  front_t fe;

  /// Sleeps up to `ms` on the event channel and the store; delivers what came. False once
  /// the driver is no longer connected, or on a signal.
  bool wait(int ms) {
    pollfd fds[2] = {{ev.fd(), POLLIN, 0}, {s.watch_fd(), POLLIN, 0}};
    (void)::poll(fds, 2, ms);
    while (auto p = ev.pending()) (void)ev.unmask(*p);
    deliver_watch_events(s, 0, fe);
    return fe.connected() && !stop_requested;
  }
  /// Delivers watch events until `done()` or `seconds` pass.
  template <class Done>
  bool until(Done done, double seconds) {
    const double end = now_s() + seconds;
    while (!done() && now_s() < end && !stop_requested) {
      deliver_watch_events(s, 100, fe);
      while (auto p = ev.pending()) (void)ev.unmask(*p);
    }
    return done();
  }
  /// Waits up to 60 s for the driver to connect; a FAIL line for `check` if it does not.
  std::optional<double> connect(std::string_view check) {
    const double t0 = now_s();
    if (until([&] { return fe.connected() || !fe.active(); }, 60) && fe.connected()) return now_s() - t0;
    line("FAIL", check,
         "not Connected in 60 s: " + states() + "; " + (fe.reason_text().empty() ? "running" : fe.reason_text()));
    return std::nullopt;
  }
  std::string node(const std::string& path) { return s.read(no_tx, path).value_or("-"); }
  std::string states() {
    return "frontend " + node(fe.dir() + "/state") + ", backend " + node(fe.peer_dir() + "/state");
  }
};

// ---- instance 1: writes, then idles; loses the device to instance 2 ----------------------------

int run_writer(const config& c, instance& in, std::uint32_t seed) {
  front_t& fe = in.fe;
  const auto k = static_cast<std::uint64_t>(c.sectors);
  const auto took = in.connect("connect");
  if (!took) return 1;
  line("PASS", "connect",
       "instance 1 Connected to backend domain " + std::to_string(fe.backend_domid()) + " in " + secs(*took) +
           " s, ring-page-order " + std::to_string(fe.ring_page_order()));
  auto cl = client_t::make(fe, in.gs, fe.backend_domid());
  if (!cl) {
    line("FAIL", "write", "cannot grant the data pages");
    return 1;
  }
  auto wait = [&](int ms) { return in.wait(ms); };
  const double tw = now_s();
  std::string w = cl->write_pattern(0, k, seed, wait);
  if (w.empty()) w = cl->flush(wait);
  if (!w.empty()) {
    line("FAIL", "write", w);
    return 1;
  }
  line("PASS", "write",
       std::to_string(k) + " sectors written with the pattern of seed " + std::to_string(seed) + " and flushed in " +
           secs(now_s() - tw) + " s (" + std::to_string(cl->answered()) + " requests answered)");

  // Idle and connected until told to exit; the driver tells us if a newer instance takes the
  // device over (our own node written by someone else).
  const std::uint64_t answered_before = cl->answered();
  bool handed = false, late_sent = false;
  double handed_at = 0, late_at = 0;
  std::uint64_t late_answers = 0;
  std::string late_detail = "no late write was put on the ring";
  const std::uint64_t late = c.late >= 0 ? static_cast<std::uint64_t>(c.late) : k + 128;
  while (!stop_requested) {
    deliver_watch_events(in.s, 200, fe);
    while (auto p = in.ev.pending()) (void)in.ev.unmask(*p);
    if (!handed && !fe.active()) {
      handed = true;
      handed_at = now_s();
      info("instance 1 lost the device: " + fe.reason_text() + " (" + std::string(to_string(fe.reason())) + ")");
    }
    if (!handed || fe.queues().empty() || !fe.queue_at(0).ring) continue;
    auto& ring = *fe.queue_at(0).ring;
    if (!late_sent) {
      // Once the backend answers the new instance (InitWait, or Connected to it: our node,
      // which only the new instance writes now, says Connected again), the old ring is
      // nobody's: a request put on it must never be answered, nor reach the image.
      const std::string b = in.node(fe.peer_dir() + "/state"), f = in.node(fe.dir() + "/state");
      if (!(b == "2" || (b == "4" && f == "4"))) continue;
      for (unsigned i = 0; i < blkif::sectors_per_page; ++i)
        blkfront::sector_pattern(cl->data() + i * blkif::sector_bytes, late + i, seed ^ 0xdeadu);
      // A real write, from the client's first data page (still granted): were the backend
      // to serve it, the image would show it.
      const blkif::request r =
          blkfront::rw(blkif::op_write, 0x1a7e, late,
                       {blkif::segment{cl->ref(0), 0, static_cast<std::uint8_t>(blkif::sectors_per_page - 1)}});
      if (!ring.produce(r)) {
        late_detail = "the old ring refused the late write (full or broken)";
        late_sent = true;
        continue;
      }
      (void)ring.push_and_check_notify();
      (void)in.ev.notify(fe.queue_at(0).port);  // whoever is at the other end of our old port
      late_sent = true;
      late_at = now_s();
      late_detail = "a write of sector " + std::to_string(late) + " put on the old ring " + secs(late_at - handed_at) +
                    " s after the handover (backend " + b + ", frontend node " + f + ")";
      info("instance 1: " + late_detail);
    }
    auto rsp = ring.take_response();  // the ring's own checks; never the driver (it is stopped)
    if (rsp && *rsp) ++late_answers;
  }
  // Told to exit: report what we saw.
  if (handed && fe.reason() == close_reason::handed_over)
    line("PASS", "lost-device",
         "instance 1's driver reported the handover: " + fe.reason_text() + "; it wrote its node " +
             std::to_string(fe.state_writes()) + " times, none since");
  else
    line("FAIL", "lost-device",
         "instance 1's driver did not report a handover (" + std::string(to_string(fe.own())) + ", " +
             (fe.reason_text().empty() ? std::string("running") : fe.reason_text()) + ")");
  const bool quiet = late_answers == 0 && cl->answered() == answered_before;
  if (late_sent && quiet)
    line("PASS", "no-answer-after-takeover",
         late_detail + "; no response in the " + secs(now_s() - late_at) + " s since, none at all after the takeover");
  else if (!late_sent)
    line("FAIL", "no-answer-after-takeover", late_detail);
  else
    line("FAIL", "no-answer-after-takeover",
         std::to_string(late_answers) + " response(s) on the old ring after the takeover: " + late_detail);
  return failures ? 1 : 0;
}

// ---- instance 2: takes over, verifies, writes a little more, closes ---------------------------------

int run_taker(const config& c, instance& in, std::uint32_t seed) {
  front_t& fe = in.fe;
  const auto k = static_cast<std::uint64_t>(c.sectors);
  const auto connected = in.connect("take-over");
  if (!connected) return 1;
  const double took = *connected;
  line("PASS", "take-over",
       "instance 2 took the device over from the running instance 1 and is Connected after " + secs(took) +
           " s (backend domain " + std::to_string(fe.backend_domid()) + ")");
  std::printf("FIGURE blkfront.take-over %s s\n", secs(took).c_str());
  auto cl = client_t::make(fe, in.gs, fe.backend_domid());
  if (!cl) {
    line("FAIL", "verify", "cannot grant the data pages");
    return 1;
  }
  auto wait = [&](int ms) { return in.wait(ms); };
  if (auto r = cl->check_pattern(0, k, seed, wait); r.empty())
    line("PASS", "verify",
         std::to_string(k) + " sectors instance 1 wrote read back intact (pattern of seed " + std::to_string(seed) +
             ")");
  else
    line("FAIL", "verify", r);
  constexpr std::uint64_t more = 64;
  std::string r = cl->write_pattern(k, more, seed + 1, wait);
  if (r.empty()) r = cl->flush(wait);
  if (r.empty()) r = cl->check_pattern(k, more, seed + 1, wait);
  if (r.empty())
    line("PASS", "write-read",
         std::to_string(more) + " more sectors written, flushed and read back (" + std::to_string(cl->answered()) +
             " requests answered in all)");
  else
    line("FAIL", "write-read", r);
  const double tc = now_s();
  fe.close();
  if (in.until([&] { return fe.own() == state::closed; }, 20))
    line("PASS", "close", "instance 2 closed cleanly in " + secs(now_s() - tc) + " s (" + in.states() + ")");
  else
    line("FAIL", "close", "not Closed in 20 s: " + in.states());
  return failures ? 1 : 0;
}

int run_pattern(const config& c) {
  std::array<std::byte, blkif::sector_bytes> b{};
  for (long i = 0; i < c.sectors; ++i) {
    blkfront::sector_pattern(b.data(), static_cast<std::uint64_t>(c.first + i), static_cast<std::uint32_t>(c.seed));
    if (std::fwrite(b.data(), 1, b.size(), stdout) != b.size()) return 1;
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  bool write = false, verify = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has = i + 1 < argc;
    auto number = [&](long& out, std::uint64_t max) {
      if (!has) return false;
      auto v = xenstore::parse_decimal(argv[++i], max);
      if (!v) return false;
      out = static_cast<long>(*v);
      return true;
    };
    bool ok = true;
    if (a == "--devid")
      ok = number(c.devid, 0xffffffffu);
    else if (a == "--domid")
      ok = number(c.domid, 0x7fef);
    else if (a == "--write")
      ok = number(c.seed, 0xffffffffu), write = true;
    else if (a == "--verify")
      ok = number(c.seed, 0xffffffffu), verify = true;
    else if (a == "--pattern")
      ok = number(c.seed, 0xffffffffu), c.pattern = true;
    else if (a == "--sectors")
      ok = number(c.sectors, 1u << 30);
    else if (a == "--first")
      ok = number(c.first, 1u << 30);
    else if (a == "--late-sector")
      ok = number(c.late, 1u << 30);
    else if (a == "--take-over")
      c.take_over = true;
    else if (a == "--pid-file" && has)
      c.pid_file = argv[++i];
    else
      ok = false;
    if (!ok) return usage();
  }
  if (c.seed < 0 || c.sectors <= 0 || write + verify + c.pattern != 1 || c.take_over != verify) return usage();
  if (c.pattern) return run_pattern(c);
  if (c.devid < 0) return usage();

  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested = 1; };
  ::sigaction(SIGTERM, &sa, nullptr);  // no SA_RESTART: poll() returns at once
  ::sigaction(SIGINT, &sa, nullptr);
  const char* who = verify ? "take-over" : "connect";
  auto s = xen::xs_store::open();
  auto ev = xen::evtchn_handle::open();
  auto gs = xen::gntshr::open();
  if (!s || !ev || !gs) {
    line("FAIL", who, "needs /dev/xen/xenbus, /dev/xen/evtchn and /dev/xen/gntalloc (not in a Xen domain?)");
    return 1;
  }
  if (c.domid < 0) {
    auto d = s->read(no_tx, "domid");  // relative: our own home
    if (!d || !xenstore::parse_decimal(*d, 0x7fef)) {
      line("FAIL", who, "cannot read our domid from xenstore");
      return 1;
    }
    c.domid = static_cast<long>(*xenstore::parse_decimal(*d, 0x7fef));
  }
  const auto self = static_cast<domid_t>(c.domid);
  const auto devid = static_cast<unsigned>(c.devid);
  const std::string dir = device_address{self, 0, "vbd", devid}.frontend_dir();
  if (verify) {
    // The handover is from a running instance: its node must say Connected.
    const std::string st = s->read(no_tx, dir + "/state").value_or("-");
    if (st != "4") {
      line("FAIL", who, dir + "/state is " + st + ", not Connected: no running instance to take over from");
      return 1;
    }
  }
  if (!c.pid_file.empty())
    if (FILE* f = std::fopen(c.pid_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
      std::fclose(f);
    }
  instance in{*s, *ev, *gs,
              front_t{*s, *ev, *gs, self, devid,
                      frontend_options{.start = verify ? frontend_start::handover : frontend_start::fresh}}};
  in.fe.set_logger([](std::string_view l) { info(std::string("driver: ") + std::string(l)); });
  if (auto r = in.fe.start(); !r) {
    line("FAIL", who, "the driver cannot start on " + dir + ": " + std::string(to_string(r.error().code)));
    return 1;
  }
  const auto seed = static_cast<std::uint32_t>(c.seed);
  return verify ? run_taker(c, in, seed) : run_writer(c, in, seed);
}
