// Stubs for the device-driver compile cases: a store and an event channel that satisfy the
// concepts and do nothing, and run(end), which instantiates the driver loop for `end`.
#pragma once

#include <xenbus/hosted/device/driver.hpp>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace stub {

using namespace xenbus;

struct store {
  static unexpected<store_error> none() { return unexpected{store_error{store_errc::enoent}}; }
  result<std::string, store_error> read(store_tx, std::string_view) { return none(); }
  result<void, store_error> write(store_tx, std::string_view, std::string_view) { return none(); }
  result<void, store_error> remove(store_tx, std::string_view) { return none(); }
  result<std::vector<std::string>, store_error> directory(store_tx, std::string_view) { return none(); }
  result<store_tx, store_error> transaction_start() { return none(); }
  result<void, store_error> transaction_end(store_tx, bool) { return none(); }
  result<void, store_error> watch(std::string_view, std::string_view) { return none(); }
  result<void, store_error> unwatch(std::string_view, std::string_view) { return none(); }
  result<watch_event, store_error> next_watch_event(int) { return none(); }
};

struct evtchn {
  static unexpected<evtchn_error> none() { return unexpected{evtchn_error{evtchn_errc::bad_port}}; }
  result<evtchn_port, evtchn_error> bind_unbound(domid_t) { return none(); }
  result<evtchn_port, evtchn_error> bind_interdomain(domid_t, evtchn_port) { return none(); }
  result<void, evtchn_error> unbind(evtchn_port) { return none(); }
  result<void, evtchn_error> notify(evtchn_port) { return none(); }
  result<evtchn_port, evtchn_error> pending() { return none(); }
  result<void, evtchn_error> unmask(evtchn_port) { return none(); }
  int fd() { return -1; }
};

/// Runs the frontend's loop for `end` (its rows are checked when this is instantiated).
template <class End>
void run(End& end) {
  store s;
  evtchn e;
  detail::device_core<role::frontend, store, evtchn, detail::device_queue<int, int>> core(
      s, e, "/local/domain/1/device/vif/0", 1, "stub");
  core.process(end);
}

/// What a frontend's rows name: the guards and the actions.
struct frontend_base {
  enum class when { always };
  bool holds(when) { return true; }
  void own_node_changed(state) {}
  detail::prep publish() { return detail::prep::ready; }
  detail::prep attach_rings() { return detail::prep::ready; }
  detail::prep stop_io() { return detail::prep::ready; }
  detail::prep release() { return detail::prep::ready; }
  void on_backend_features() {}
  void on_stop_io() {}
  void on_reset() {}
  void ignore() {}
};

}  // namespace stub
