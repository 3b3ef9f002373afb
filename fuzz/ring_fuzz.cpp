// libFuzzer target: the input plays the peer's side of shared ring pages (indices, slots,
// xenstore control fields, flex ring order) between calls to our consumers and producers.
// Any crash, sanitizer report, hang or broken invariant below is a bug in the rings.
#include <xenbus/ring/byte_ring.hpp>
#include <xenbus/ring/console.hpp>
#include <xenbus/ring/response_ids.hpp>
#include <xenbus/ring/request_ring.hpp>
#include <xenbus/ring/xenstore_page.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>

extern "C" {
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/blkif.h>
}

namespace {

// Reads the script; past the end everything is zero, so any input is a valid script.
struct script {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t u8() noexcept { return n ? (--n, *p++) : 0; }
  std::uint32_t u32() noexcept {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | u8();
    return v;
  }
  bool done() const noexcept { return n == 0; }
};

#define XENBUS_FUZZ_CHECK(cond) \
  do {                          \
    if (!(cond)) std::abort();  \
  } while (0)

using front_t = xenbus::front_ring<blkif_request, blkif_response>;
using back_t = xenbus::back_ring<blkif_request, blkif_response>;

struct alignas(4096) page {
  std::byte b[4096];
};

// A handler that validates the copy it is given and then acts on it; it also proves the
// copy is private: it is not inside the shared pages.
struct checker {
  const page* pages;
  std::size_t npages;
  std::uint64_t acted = 0;
  void operator()(const blkif_request& r) noexcept {
    const auto* a = reinterpret_cast<const std::byte*>(&r);
    const auto* lo = reinterpret_cast<const std::byte*>(pages);
    XENBUS_FUZZ_CHECK(a + sizeof r <= lo || a >= lo + npages * sizeof(page));
    if (r.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST) return;  // reject
    std::uint32_t sum = 0;
    for (unsigned i = 0; i < r.nr_segments; ++i) sum += r.seg[i].first_sect;  // in bounds
    acted += sum + 1;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // 0: our back end vs the input's frontend; 1: our front end vs its backend;
  // 2: xenstore page, our guest; 3: xenstore page, our server; 4: console (our guest);
  // 5: flex indexes page; 6-7: flex data (order <= 1).
  static page pages[8];
  std::memset(pages, 0, sizeof pages);
  script in{data, size};
  const auto span_of = [](int i, std::size_t n = 1) { return std::span<std::byte>(pages[i].b, n * sizeof(page)); };

  const xenbus::ring_idx start = in.u32();
  auto back = back_t::attach(span_of(0), start);
  auto front = front_t::init(span_of(1), start);
  XENBUS_FUZZ_CHECK(back && front);
  // The input's frontend initialised page 0 at `start`, as a peer that has carried traffic.
  auto* back_page = reinterpret_cast<xenbus::sring<blkif_request, blkif_response>*>(pages[0].b);
  back_page->req_prod = back_page->rsp_prod = start;

  auto xs_g = xenbus::xenstore_ring_guest::attach(span_of(2));
  auto xs_s = xenbus::xenstore_ring_server::attach(span_of(3), in.u8() & 3);
  auto cons = xenbus::console_ring::attach(xenbus::console_end::guest, span_of(4));
  XENBUS_FUZZ_CHECK(xs_g && xs_s && cons);
  auto* flex_intf = reinterpret_cast<xenbus::flex_ring_intf*>(pages[5].b);
  flex_intf->ring_order = in.u8();  // the peer's claim, validated by attach
  auto flex =
      xenbus::flex_ring::attach(xenbus::flex_end::frontend, span_of(5), span_of(6, 2), flex_intf->ring_order, 1);
  XENBUS_FUZZ_CHECK(flex.has_value() == (flex_intf->ring_order <= 1));

  xenbus::id_tracker<32, std::uint8_t> ids;
  checker check{pages, 8};
  std::byte buf[4096];
  const xenbus::ring_idx ring_size = back->size();

  for (int step = 0; step < 4096 && !in.done(); ++step) {
    const std::uint8_t op = in.u8();
    switch (op % 20) {
      // ---- the peer writes the shared pages ----
      case 0: {  // any 32-bit field in the first 64 bytes of a request/response ring page
        const std::uint8_t w = in.u8();
        auto* f = reinterpret_cast<xenbus::ring_idx*>(pages[w & 1].b) + ((w >> 1) % 16);
        *f = in.u32();
        break;
      }
      case 1: {  // a few bytes anywhere in a ring page (slots, indices, control fields)
        const std::uint8_t which = in.u8() % 8;
        const std::uint32_t off = (static_cast<std::uint32_t>(in.u8()) << 8 | in.u8()) % sizeof(page);
        const std::uint8_t len = in.u8() % 16;
        for (std::uint8_t i = 0; i < len && off + i < sizeof(page); ++i) pages[which].b[off + i] = std::byte{in.u8()};
        break;
      }
      case 2: {  // a polite peer move: advance an index by a small amount
        const std::uint8_t w = in.u8();
        auto* f = reinterpret_cast<xenbus::ring_idx*>(pages[w & 1].b) + ((w >> 1) % 4);
        *f += in.u8() % 8;
        break;
      }
      // ---- our back end: consume requests, answer them ----
      case 3: {
        const xenbus::ring_idx max = in.u8();
        auto n = back->consume_requests(max, check);
        if (n)
          XENBUS_FUZZ_CHECK(*n <= max && *n <= ring_size);
        else
          XENBUS_FUZZ_CHECK(back->broken().has_value());
        break;
      }
      case 4: {
        auto r = back->take_request();
        if (r && r->has_value()) check(**r);
        XENBUS_FUZZ_CHECK(r.has_value() != back->broken().has_value());
        break;
      }
      case 5: {
        blkif_response rsp{};
        rsp.id = in.u32();
        const bool ok = back->produce(rsp);
        XENBUS_FUZZ_CHECK(!ok || !back->broken());
        XENBUS_FUZZ_CHECK(back->awaiting_response() <= ring_size);
        break;
      }
      case 6: {
        auto n = back->push_and_check_notify();
        XENBUS_FUZZ_CHECK(n.has_value() != back->broken().has_value());
        break;
      }
      case 7: {
        auto w = back->final_check(in.u8());
        XENBUS_FUZZ_CHECK(w.has_value() != back->broken().has_value());
        break;
      }
      // ---- our front end: send requests, check responses against outstanding ids ----
      case 8: {
        const std::uint8_t k = in.u8() % 8;
        for (std::uint8_t i = 0; i < k; ++i) {
          auto id = ids.issue(in.u8());
          if (!id) break;
          blkif_request* slot = front->claim();
          if (slot == nullptr) {
            (void)ids.complete(*id);
            break;
          }
          slot->id = *id;
          slot->operation = BLKIF_OP_READ;
          slot->nr_segments = 1;
        }
        XENBUS_FUZZ_CHECK(front->outstanding() <= ring_size);
        auto n = front->push_and_check_notify();
        XENBUS_FUZZ_CHECK(n.has_value() != front->broken().has_value());
        break;
      }
      case 9: {
        const xenbus::ring_idx max = in.u8();
        auto n = front->consume_responses(max, [&](const blkif_response& r) {
          // Peer data: the id decides nothing until the tracker accepts it.
          if (auto tag = ids.complete(r.id)) (void)*tag;
        });
        if (n)
          XENBUS_FUZZ_CHECK(*n <= max);
        else
          XENBUS_FUZZ_CHECK(front->broken().has_value());
        XENBUS_FUZZ_CHECK(ids.outstanding() <= 32);
        break;
      }
      case 10: {
        auto w = front->final_check(in.u8());
        XENBUS_FUZZ_CHECK(w.has_value() != front->broken().has_value());
        auto u = front->unconsumed_responses();
        if (u) XENBUS_FUZZ_CHECK(*u <= ring_size);
        break;
      }
      // ---- byte rings ----
      case 11: {
        auto r = xs_g->read(std::span(buf, in.u8() * 8u));
        if (r) XENBUS_FUZZ_CHECK(*r <= 1024);
        break;
      }
      case 12: {
        auto w = xs_g->write(std::span(buf, in.u8() * 8u));
        if (w) XENBUS_FUZZ_CHECK(*w <= 1024);
        break;
      }
      case 13: {
        if (in.u8() & 1)
          (void)xs_g->begin_reconnect();
        else
          (void)xs_g->reconnected();
        break;
      }
      case 14: {
        auto r = xs_s->read(std::span(buf, in.u8() * 8u));
        if (r) XENBUS_FUZZ_CHECK(*r <= 1024);
        break;
      }
      case 15: {
        auto w = xs_s->write(std::span(buf, in.u8() * 8u));
        if (w) XENBUS_FUZZ_CHECK(*w <= 1024);
        (void)xs_s->handle_reconnect();
        break;
      }
      case 16: {
        auto r = cons->read(std::span(buf, in.u8() * 8u));
        if (r) XENBUS_FUZZ_CHECK(*r <= 1024);
        auto w = cons->write(std::span(buf, in.u8() * 12u));
        if (w) XENBUS_FUZZ_CHECK(*w <= 2048);
        break;
      }
      case 17: {
        if (!flex) break;
        auto r = flex->read(std::span(buf, in.u8() * 12u));
        if (r) XENBUS_FUZZ_CHECK(*r <= flex->size());
        auto w = flex->write(std::span(buf, in.u8() * 12u));
        if (w) XENBUS_FUZZ_CHECK(*w <= flex->size());
        break;
      }
      case 18: {  // the peer sets a xenstore control field
        auto* x = reinterpret_cast<xenbus::xenstore_domain_interface_layout*>(pages[2 + (in.u8() & 1)].b);
        const std::uint32_t v = in.u8() % 4;
        switch (in.u8() % 3) {
          case 0:
            x->server_features = v;
            break;
          case 1:
            x->connection = v;
            break;
          default:
            x->error = v;
            break;
        }
        break;
      }
      default: {  // our producers publish without the notify check
        XENBUS_FUZZ_CHECK(front->push().has_value() != front->broken().has_value());
        XENBUS_FUZZ_CHECK(back->push().has_value() != back->broken().has_value());
        break;
      }
    }
  }
  return 0;
}
