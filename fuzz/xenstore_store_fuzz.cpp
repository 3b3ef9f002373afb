// Fuzzes include/xenbus/hosted/xenstore/store.hpp: three connections (dom0, two guests) send
// fuzzer-made requests to a live store; every reply must be well-formed and the tree
// must stay consistent.
#include <xenbus/hosted/xenstore/store.hpp>
#include <xenbus/xenstore/wire.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xs = xenbus::xenstore;

namespace {

// Bytes 0xf0..0xff in a payload expand to these, so that requests often name real nodes.
constexpr std::string_view dict[16] = {
    "/a",
    "/a/b",
    "/a/b/c",
    "/local/domain/5",
    "/local/domain/6/x",
    "@introduceDomain",
    "@releaseDomain",
    "T",
    "F",
    "n0",
    "r5",
    "b6",
    "rel/x",
    "/",
    "5",
    "0",
};

struct conn {
  xs::conn_id id;
  std::vector<std::uint32_t> txs;
  std::unique_ptr<xs::decoder> dec = std::make_unique<xs::decoder>();
};

void drain(xs::store& s, conn& c) {
  // output() hands out one contiguous run of the chunked queue at a time: take them all.
  for (auto out = s.output(c.id); !out.empty(); out = s.output(c.id)) {
    std::size_t used = 0;
    while (used < out.size()) {
      used += c.dec->feed(out.substr(used));
      if (c.dec->broken()) std::abort();  // the store framed a reply wrongly
      if (!c.dec->ready()) continue;
      const auto m = c.dec->current();
      auto r = xs::parse_reply(m);
      if (!r) std::abort();  // the store sent something a client must refuse
      if (m.hdr.kind() == xs::msg_type::transaction_start) {
        c.txs.push_back(static_cast<std::uint32_t>(std::strtoul(std::string{m.payload}.c_str(), nullptr, 10)));
      }
      c.dec->next();
    }
    s.consume(c.id, out.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xs::limits l;
  l.nodes_per_domain = 20;  // small quotas so the fuzzer reaches them
  l.transaction_nodes = 16;
  l.queued_events = 8;
  l.watches = 4;
  l.transactions = 3;
  xs::store s{l};
  conn conns[3];
  conns[0].id = s.connect(0, true);
  conns[1].id = s.connect(5, false);
  conns[2].id = s.connect(6, false);
  std::size_t at = 0;
  while (at + 4 <= size) {
    auto& c = conns[data[at] % 3];
    const auto type = static_cast<xs::msg_type>(data[at + 1] % 24);
    std::uint32_t tx = 0;
    if (const auto sel = data[at + 2]; sel != 0 && !c.txs.empty())
      tx = c.txs[sel % c.txs.size()];
    else if (sel == 0xff)
      tx = 12345;  // an unknown transaction
    std::size_t len = data[at + 3];
    at += 4;
    len = std::min(len, size - at);
    std::string payload;
    for (std::size_t i = 0; i < len; ++i) {
      const auto b = data[at + i];
      if (b >= 0xf0)
        payload += dict[b - 0xf0];
      else
        payload += static_cast<char>(b == 0xef ? 0 : b);
    }
    at += len;
    if (payload.size() > xs::payload_max) payload.resize(xs::payload_max);
    s.handle(c.id, xs::message{
                       xs::header{static_cast<std::uint32_t>(type), 1, tx, static_cast<std::uint32_t>(payload.size())},
                       payload});
    for (auto& d : conns) drain(s, d);
    if (data[at - 1] == 0xee) {  // sometimes a guest reconnects mid-run
      s.disconnect(conns[2].id);
      conns[2].id = s.connect(6, false);
      conns[2].txs.clear();
      conns[2].dec->reset();
    }
  }
  if (!s.consistent()) std::abort();
  return 0;
}
