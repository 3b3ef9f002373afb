// [posix] posix::blk_server: every blkif device of backend/<type>/ served from its raw image file on an event_loop.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/hosted/blk/backend.hpp>
#include <xenbus/hosted/blk/service.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/posix/blk/file_image.hpp>
#include <xenbus/posix/device/service_loop.hpp>
#include <xenbus/posix/event_loop.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <optional>
#include <string>
#include <utility>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Opens the image a toolstack named (a raw file or a block device), read-only for mode "r".
inline result<file_image, blk::image_error> open_file_image(const blk::image_source& src) {
  return file_image::open(src.path, src.read_only);
}

/// A user-space block backend for every device of one type (`P::type`: backend/vbd or
/// backend/qdisk) in this domain: a device_service creates a blk::service_device for each
/// device that appears, with the image its `params` names opened as its `mode` says, and
/// everything runs on `loop`: the store's watch descriptor and the service's deadlines
/// (service_runner), the event channels (each raised port to its device's queue), and a
/// poller that serves queues left with work by their budget. A device that cannot be served
/// (a refused `params`, an image that does not open) is retried and then given up with the
/// reason in its error node, by the service. The store connection must be the service's
/// own (its drivers share it); store, event channels and grants must outlive the server.
template <device_store S, event_channel E, grant_mapper G, class P = blk::vbd>
class blk_server {
 public:
  using driver_type = blk::service_device<S, E, G, file_image, P>;
  using service_type = device_service<S, driver_type>;

  /// `cfg` gives the domain, retries and timeouts; its side and type are set here.
  blk_server(event_loop& loop, S& store, E& evtchn, G& grants, service_config cfg, blk::device_options opts = {},
             device_logger log = {})
      : loop_{&loop},
        evtchn_{&evtchn},
        svc_{store, backend_config(std::move(cfg)),
             blk::device_factory<S, E, G, file_image, P>(store, evtchn, grants, opts, open_file_image, log)} {
    if (log) svc_.set_logger(std::move(log));
  }
  blk_server(const blk_server&) = delete;
  blk_server& operator=(const blk_server&) = delete;
  /// Takes everything out of the loop, then drops every driver without closing it (call
  /// shut_down() first for an orderly close).
  ~blk_server() {
    loop_->remove(ports_);
    loop_->remove(work_);
    runner_.reset();
  }

  /// Starts the service (probing the devices already there) and puts it on the loop.
  result<void, store_error> start() {
    if (runner_) return {};
    if (auto s = svc_.start(); !s) return s;
    runner_.emplace(*loop_, svc_);
    ports_ = attach_evtchn(*loop_, *evtchn_, svc_);
    work_ = loop_->add_poller([this] {
      bool more = false;
      svc_.for_each([&more](const device_address&, driver_type& d) {
        if (d.pending_work()) more |= d.serve();
      });
      return more;
    });
    return {};
  }

  /// Closes every device at once and runs the loop until each has closed or the close
  /// timeout has passed (one timeout for all). True if every frontend closed in time.
  bool shut_down() { return runner_ ? posix::shut_down(*loop_, *runner_) : true; }

  service_type& service() noexcept { return svc_; }
  const service_type& service() const noexcept { return svc_; }
  /// The device `devid` of domain `frontend`, if it is being served.
  driver_type* find(unsigned devid, domid_t frontend) { return svc_.find(devid, frontend); }

 private:
  static service_config backend_config(service_config c) {
    c.side = service_side::backend;
    c.type = std::string(P::type);
    return c;
  }

  event_loop* loop_;
  E* evtchn_;
  service_type svc_;
  std::optional<service_runner<service_type>> runner_;
  event_loop::handle ports_ = 0, work_ = 0;
};

}  // namespace posix
XENBUS_END_NAMESPACE
