// Fuzzes the xenstore client's handling of what a server sends (include/xenbus/posix/xenstore/client.hpp):
// arbitrary bytes, in arbitrary chunks, against outstanding requests of chosen types and a
// small watch queue. Input: [k][k request types][chunk seed][server bytes...].
#include <xenbus/posix/xenstore/client.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

namespace {

using xenbus::detail::xs_type;

// No peer: the harness feeds the connection's parser itself, no reader thread runs.
struct null_transport {
  xenbus::xenstore::status send(std::span<const char>) { return {}; }
  xenbus::xenstore::io_result receive(std::span<char>) { return std::size_t{0}; }
  void interrupt() noexcept {}
  void rearm() noexcept {}
};

constexpr xs_type request_types[] = {
    xs_type::read,
    xs_type::write,
    xs_type::mkdir,
    xs_type::rm,
    xs_type::directory,
    xs_type::get_perms,
    xs_type::set_perms,
    xs_type::watch,
    xs_type::unwatch,
    xs_type::transaction_start,
    xs_type::transaction_end,
    xs_type::get_domain_path,
    xs_type::directory_part,
};

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t k = data[0] % 8;
  if (size < 2 + k) return 0;
  // Waiters first: they must outlive the connection, which fails them on shutdown.
  std::vector<std::unique_ptr<xenbus::detail::xs_pending>> waiters;
  auto conn = std::make_unique<xenbus::detail::xs_conn>(
      std::make_unique<xenbus::detail::xs_transport_box<null_transport>>(null_transport{}));
  for (std::size_t i = 0; i < k; ++i) {
    auto p = std::make_unique<xenbus::detail::xs_pending>();
    p->type = request_types[data[1 + i] % std::size(request_types)];
    auto id = conn->register_pending(*p);
    check(id.has_value() && *id == i + 1);  // req_ids 1..k, as the seeds assume
    waiters.push_back(std::move(p));
  }
  auto watch = conn->new_watch("/w", 3);  // token "xb1"
  check(watch.has_value());
  const std::size_t chunk = 1 + data[1 + k] % 64;
  std::string_view rest(reinterpret_cast<const char*>(data + 2 + k), size - 2 - k);
  bool alive = true;
  while (alive && !rest.empty()) {
    const auto n = rest.size() < chunk ? rest.size() : chunk;
    alive = conn->feed(rest.substr(0, n));
    rest.remove_prefix(n);
    if (chunk % 2) {  // a consumer taking events now and then: paths leave the duplicate set
      std::lock_guard l{(*watch)->mu};
      if (!(*watch)->queue.empty()) (void)(*watch)->pop_locked();
    }
  }
  // What the client promised: a latched connection failed every waiter; an answered
  // waiter holds a reply its typed accessor can use; the watch queue stayed bounded.
  const bool broken = !conn->health().has_value();
  check(broken == !alive);
  for (auto& p : waiters) {
    if (broken) check(p->done);
    if (p->done && !p->failed) {
      check(xenbus::detail::xs_reply_payload_ok(p->type, p->payload));
      if (p->type == xs_type::get_perms) check(!xenbus::detail::xs_parse_perms(p->payload).empty());
      if (p->type == xs_type::directory_part) {
        // A checked part splits into a number and whole, valid names.
        const auto part = xenbus::detail::xs_split_dir_part(p->payload);
        check(xenbus::xenstore::parse_decimal(part.generation).has_value());
        check(part.names.empty() || part.names.back() == '\0');
        for (auto n : xenbus::xenstore::string_list{part.names}) check(xenbus::detail::xs_valid_node_name(n));
      }
    }
  }
  {
    std::lock_guard l{(*watch)->mu};
    check((*watch)->queue.size() <= 3);
    check((*watch)->queued.size() == (*watch)->queue.size());  // the duplicate set in step
  }
  conn->shutdown();
  for (auto& p : waiters) check(p->done);
  return 0;
}
