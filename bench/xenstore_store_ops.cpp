// In-process cost of the store itself (no socket): the requests test-xenstore makes, through
// store::handle() and the wire codec, timed per operation. Built and run by
// bench/xenstore_vs_oxenstored.py to show how much of a round trip is the server's own work.
#include <xenbus/hosted/xenstore/store.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace xs = xenbus::xenstore;
using namespace std::string_view_literals;

namespace {

xs::store st;
xs::conn_id id = st.connect(0, true);
std::uint32_t req = 0;

std::string_view call(xs::msg_type t, std::string_view payload, std::uint32_t tx = 0) {
  st.handle(
      id, xs::message{xs::header{static_cast<std::uint32_t>(t), ++req, tx, static_cast<std::uint32_t>(payload.size())},
                      payload});
  // The output queue is chunked and frees what is consumed: copy the reply out first.
  static std::string reply;
  reply.clear();
  for (auto out = st.output(id); !out.empty(); out = st.output(id)) {
    reply.append(out);
    st.consume(id, out.size());
  }
  return std::string_view{reply}.substr(xs::header_size);
}

template <class F>
void time_it(const char* name, int iters, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  std::printf("| %s | %.0f |\n", name, ns / iters);
}

}  // namespace

int main() {
  const std::string path = "xenstore-test/1/a";
  const std::string v1 = path + '\0' + "a";
  const std::string v2000 = path + '\0' + std::string(2000, 'a');
  const std::string rd = path + '\0';
  std::printf("| operation (in-process, no socket) | ns/op |\n|---|---:|\n");
  call(xs::msg_type::write, v1);
  time_it("read 1", 200000, [&] { (void)call(xs::msg_type::read, rd); });
  call(xs::msg_type::write, v2000);
  time_it("read 2000", 200000, [&] { (void)call(xs::msg_type::read, rd); });
  time_it("write 1", 200000, [&] { (void)call(xs::msg_type::write, v1); });
  time_it("write 2000", 200000, [&] { (void)call(xs::msg_type::write, v2000); });
  time_it("dir", 200000, [&] { (void)call(xs::msg_type::directory, "xenstore-test/1\0"sv); });
  time_it("write + rm node", 100000, [&] {
    (void)call(xs::msg_type::write, v1);
    (void)call(xs::msg_type::rm, rd);
  });
  time_it("ta rmw (start, read, write, read, end)", 100000, [&] {
    const auto t = call(xs::msg_type::transaction_start, "\0"sv);
    const auto tx = static_cast<std::uint32_t>(std::stoul(std::string{t}));
    (void)call(xs::msg_type::read, rd, tx);
    (void)call(xs::msg_type::write, v1, tx);
    (void)call(xs::msg_type::read, rd, tx);
    (void)call(xs::msg_type::transaction_end, "T\0"sv, tx);
  });
  return 0;
}
