// Ring runs between two domains: our rings and the C macros, notification-driven and streaming, over granted pages.
#pragma once

#include "peer_support.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xenbus_ends.hpp"  // bench/: our ends and their loops, shared with xenbus-bench

namespace xenlab {

/// The shared area of a ring session: page 0 is the control page, the ring starts at page 1
/// and has up to 2^max_ring_order pages.
inline constexpr unsigned max_ring_order = 2;
inline constexpr std::size_t session_pages = 1 + (std::size_t{1} << max_ring_order);

enum class impl : std::uint32_t { c = 0, ours = 1 };
enum class mode : std::uint32_t { notify_standard = 0, notify_moderated = 1, notify_polled = 2, stream = 3, quit = 4 };
enum class payload : std::uint32_t { blkif = 0, netif_tx = 1 };

/// One measured run. The C macros run notify_standard (their standard usage) and stream.
struct run_spec {
  impl implementation;
  mode how;
  payload carried;
  unsigned order;        // ring pages: 2^order
  unsigned outstanding;  // notify: requests in flight at most
};

/// The figure name of a run ("notify.ours.moderated.out32", "stream.c.blkif.order0").
std::string run_name(const run_spec& s);

/// The plan the frontend follows: for each load, the C macros then our default, moderated
/// and polled consumers; then each stream, the C macros then ours; all of it `rounds` times.
std::vector<run_spec> make_plan(const std::vector<unsigned>& loads, const std::vector<run_spec>& streams,
                                unsigned rounds);

struct session_options {
  double seconds = 1.5;          // each run lasts about this long
  xbench::notify_tuning tuning;  // the moderated sleep bound and the polled budget
};

/// The frontend's side of a session on `area` (session_pages pages that it granted, or
/// its own memory in posix-rings): runs `plan`, each run started through the control page
/// and acknowledged by the backend. Returns false if a run failed.
bool front_session(link& l, std::span<std::byte> area, const std::vector<run_spec>& plan, const session_options& opt);

/// The backend's side: follows the frontend's runs (and its tuning) until it says quit,
/// prints a FIGURE line for each measure and the ratios ours/C at the end. Returns false
/// if a run failed.
bool back_session(link& l, std::span<std::byte> area);

}  // namespace xenlab
