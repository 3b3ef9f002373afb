// xenbus-blkback-bench: requests per second through xenbus-blkback's engine
// (blk::backend_device) over the POSIX machine. The backend runs in its own thread, woken
// by its event channel as the program's loop is; the benchmark thread is the frontend and
// keeps `depth` requests in flight. Each iteration is one request answered. The image is
// in memory (the engine's own cost: checks, grant maps, copies, ring and event channel) or
// a file in /dev/shm (plus preadv/pwritev through the page cache). Each configuration runs
// with the data pages mapped (without and with persistent grants) and grant-copied through
// the bounce buffer (copy = 1; no persistent grants then), side by side.
#include "../tests/blkback_support.hpp"

#include <xenbus/posix/blk/file_image.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>

#include <poll.h>

namespace {

using namespace blktest;

constexpr std::size_t image_bytes = 64 << 20;

/// The image a run uses: memory, or a file on tmpfs.
struct image_holder {
  std::optional<ram_image> ram;
  std::optional<posix::file_image> file;
  std::string path;
  explicit image_holder(bool on_file) {
    if (!on_file) {
      ram.emplace(image_bytes);
      return;
    }
    path = "/dev/shm/xenbus-blkback-bench-" + std::to_string(::getpid());
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f || ::ftruncate(fileno(f), image_bytes) != 0) std::abort();
    std::fclose(f);
    auto img = posix::file_image::open(path, false);
    if (!img) std::abort();
    file.emplace(std::move(*img));
  }
  ~image_holder() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

template <class Image>
void run(benchmark::State& state, Image& img, std::uint8_t op, unsigned segments, unsigned depth, bool persistent,
         blk::data_path path) {
  rig<Image> r{img};
  if (!r.up({.max_indirect_segments = 256, .path = path}, {}, persistent)) {
    state.SkipWithError("the device did not connect");
    return;
  }
  auto& ring = *r.fe->queue_at(0).ring;
  if (depth > ring.size()) depth = ring.size();
  // The backend's loop, in its own thread: only it touches the device from here on.
  std::atomic<bool> stop{false};
  std::thread backend([&] {
    pollfd p{r.bev.fd(), POLLIN, 0};
    while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a stop flag, nothing published
      if (::poll(&p, 1, 50) <= 0) continue;
      while (auto port = r.bev.pending())
        if (!r.dev->on_event(*port)) (void)r.bev.unmask(*port);
      while (r.dev->pending_work()) r.dev->serve();
    }
  });
  // Request k uses pool pages [k * segments, (k + 1) * segments) of its slot: distinct
  // pages for every request in flight (the pool has 512; indirect tables use 480..511).
  const unsigned ind_page = 480;
  auto make = [&](std::uint64_t id) {
    const unsigned slot = static_cast<unsigned>(id % depth);
    const std::uint64_t sector = (id * segments * 8) % (image_bytes / 512 - segments * 8);
    std::vector<blkif::segment> segs;
    for (unsigned i = 0; i < segments; ++i) segs.push_back(r.full((slot * segments + i) % ind_page));
    if (segments <= blkif::max_segments_per_request) return r.rw(op, id, sector, segs);
    return r.indirect_segs(op, id, sector, segs, {ind_page + slot % 32});
  };
  std::uint64_t next = 0, done = 0, errors = 0;
  for (; next < depth; ++next) (void)ring.produce(make(next));
  (void)r.fe->push(0);
  pollfd p{r.fev.fd(), POLLIN, 0};
  for (auto _ : state) {
    for (;;) {
      auto rsp = ring.take_response();
      if (!rsp) {
        state.SkipWithError("ring broken");
        break;
      }
      if (*rsp) {
        if ((*rsp)->status != blkif::rsp_okay) ++errors;
        ++done;
        (void)ring.produce(make(next++));
        (void)r.fe->push(0);
        break;
      }
      auto more = ring.final_check(1);
      if (more && *more) continue;
      (void)::poll(&p, 1, 100);
      while (auto port = r.fev.pending()) (void)r.fev.unmask(*port);
    }
  }
  stop.store(true, std::memory_order_relaxed);
  backend.join();
  if (errors) state.SkipWithError("a request failed");
  state.SetItemsProcessed(static_cast<std::int64_t>(done));
  state.SetBytesProcessed(static_cast<std::int64_t>(done * segments * 4096));
  state.counters["persistent_hits/req"] =
      benchmark::Counter(static_cast<double>(r.dev->stats().persistent_hits) / static_cast<double>(done ? done : 1));
  state.counters["copies/req"] =
      benchmark::Counter(static_cast<double>(r.dev->stats().grant_copies) / static_cast<double>(done ? done : 1));
}

void bm(benchmark::State& state, std::uint8_t op, bool on_file) {
  image_holder h{on_file};
  const auto segments = static_cast<unsigned>(state.range(0));
  const auto depth = static_cast<unsigned>(state.range(1));
  const bool persistent = state.range(2) != 0;
  const auto path = state.range(3) != 0 ? blk::data_path::copy : blk::data_path::map;
  if (h.ram) run(state, *h.ram, op, segments, depth, persistent, path);
  if (h.file) run(state, *h.file, op, segments, depth, persistent, path);
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"segs", "depth", "persistent", "copy"});
  // Each shape mapped, mapped with persistent grants, then grant-copied: adjacent rows.
  for (std::int64_t segs : {1, 16, 64})
    for (std::int64_t depth : {1, 32}) {
      if (segs > 1 && depth == 1) continue;
      b->Args({segs, depth, 0, 0});
      b->Args({segs, depth, 1, 0});
      b->Args({segs, depth, 0, 1});
    }
  b->UseRealTime();
}

}  // namespace

BENCHMARK_CAPTURE(bm, read / ram, blkif::op_read, false)->Apply(args);
BENCHMARK_CAPTURE(bm, write / ram, blkif::op_write, false)->Apply(args);
BENCHMARK_CAPTURE(bm, read / shm_file, blkif::op_read, true)->Apply(args);
BENCHMARK_CAPTURE(bm, write / shm_file, blkif::op_write, true)->Apply(args);

BENCHMARK_MAIN();
