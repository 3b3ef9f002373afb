// Builds the event-channel and grant concepts the way a kernel would (no exceptions, RTTI or
// heap): a unikernel can model them over its own hypercalls. Exits non-zero if a check fails.
#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace {

using namespace xenbus;

/// A loopback event channel in static memory: what a kernel port of the concept looks like.
class loop_evtchn {
 public:
  result<evtchn_port, evtchn_error> bind_unbound(domid_t) noexcept { return next_++; }
  result<evtchn_port, evtchn_error> bind_interdomain(domid_t, evtchn_port p) noexcept { return p; }
  result<void, evtchn_error> unbind(evtchn_port) noexcept { return {}; }
  result<void, evtchn_error> notify(evtchn_port p) noexcept {
    if (p >= 8) return unexpected{evtchn_error{evtchn_errc::bad_port}};
    pending_ |= 1u << p;
    return {};
  }
  result<evtchn_port, evtchn_error> pending() noexcept {
    for (evtchn_port p = 0; p < 8; ++p)
      if (pending_ & (1u << p)) {
        pending_ &= ~(1u << p);
        return p;
      }
    return unexpected{evtchn_error{evtchn_errc::would_block}};
  }
  result<void, evtchn_error> unmask(evtchn_port) noexcept { return {}; }
  int fd() noexcept { return -1; }

 private:
  evtchn_port next_ = 1;
  unsigned pending_ = 0;
};
static_assert(event_channel<loop_evtchn>);

/// Grants of pages out of a static pool.
class pool_grants {
 public:
  struct pages {
    void* p;
    std::size_t n;
    void* data() const noexcept { return p; }
    std::size_t size() const noexcept { return n; }
  };
  using shared_pages = pages;
  using mapping = pages;
  result<pages, grant_error> share(domid_t, std::span<grant_ref> refs, bool) noexcept {
    if (refs.size() != 1) return unexpected{grant_error{grant_errc::bad_count}};
    refs[0] = 0;
    return pages{pool_, sizeof pool_};
  }
  result<pages, grant_error> map(domid_t, std::span<const grant_ref> refs, bool) noexcept {
    if (refs.size() != 1 || refs[0] != 0) return unexpected{grant_error{grant_errc::bad_ref}};
    return pages{pool_, sizeof pool_};
  }

 private:
  alignas(xen_page_size) static inline unsigned char pool_[xen_page_size];
};
static_assert(grant_sharer<pool_grants> && grant_mapper<pool_grants>);

volatile evtchn_port sink_port = 3;

}  // namespace

int main() {
  loop_evtchn e;
  pool_grants g;
  grant_ref ref[1];
  bool ok = e.notify(sink_port).has_value() && e.pending().value_or(99) == sink_port;
  ok = ok && e.pending().error().code == evtchn_errc::would_block;
  ok = ok && g.share(0, ref, true).has_value() && g.map(0, std::span<const grant_ref>(ref), true).has_value();
  const grant_ref bad[1] = {sink_port};
  ok = ok && g.map(0, bad, true).error().code == grant_errc::bad_ref;
  return ok ? 0 : 1;
}
