// [hosted] blk::service_device: a blkif device for device_service, its image named by the toolstack's `params` and
// `mode`.
#pragma once

#include <xenbus/evtchn.hpp>
#include <xenbus/grant.hpp>
#include <xenbus/hosted/blk/backend.hpp>
#include <xenbus/hosted/blk/engine.hpp>
#include <xenbus/hosted/blk/image.hpp>
#include <xenbus/hosted/device/service.hpp>
#include <xenbus/hosted/device/store.hpp>
#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cerrno>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

XENBUS_BEGIN_NAMESPACE
namespace blk {

/// Why a backend directory's `params` or `mode` cannot name an image this backend serves.
enum class source_errc : std::uint8_t {
  no_params,       ///< no `params` node (or it cannot be read)
  empty_path,      ///< `params` is empty, or only a prefix
  unknown_format,  ///< a `<format>:` prefix other than raw: or aio: (qcow2:, vhd:, ...)
  no_mode,         ///< no `mode` node
  bad_mode,        ///< `mode` is neither "r" nor "w"
};

constexpr std::string_view to_string(source_errc e) noexcept {
  switch (e) {
    case source_errc::no_params:
      return "no params node";
    case source_errc::empty_path:
      return "params names no path";
    case source_errc::unknown_format:
      return "params has an image format other than raw (only a path, raw:PATH or aio:PATH is served)";
    case source_errc::no_mode:
      return "no mode node";
    case source_errc::bad_mode:
      return "mode is neither r nor w";
  }
  return "unknown";
}

/// The image a toolstack named for a device.
struct image_source {
  std::string path;
  bool read_only = false;
};

/// The path in a `params` value, as libxl writes it for a qdisk (`<format>:<target>`, where
/// `aio` means a raw image) or a plain path. A prefix is the text before the first ':' when
/// it holds no '/' (so "/srv/a:b.img" is a path); only `raw` and `aio` are accepted, since
/// this backend serves raw images only.
inline result<std::string_view, source_errc> parse_params(std::string_view params) noexcept {
  const auto colon = params.find(':');
  if (colon != std::string_view::npos && params.substr(0, colon).find('/') == std::string_view::npos) {
    const std::string_view format = params.substr(0, colon);
    if (format != "raw" && format != "aio") return unexpected{source_errc::unknown_format};
    params.remove_prefix(colon + 1);
  }
  if (params.empty()) return unexpected{source_errc::empty_path};
  return params;
}

/// `mode` as libxl writes it: "w" read-write, "r" read-only; anything else is refused
/// rather than guessed.
inline result<bool, source_errc> parse_mode(std::string_view mode) noexcept {
  if (mode == "w") return false;
  if (mode == "r") return true;
  return unexpected{source_errc::bad_mode};
}

/// Reads `params` and `mode` from backend directory `dir`.
template <device_store S>
result<image_source, source_errc> read_image_source(S& store, const std::string& dir) {
  auto params = store.read(no_tx, dir + "/params");
  if (!params) return unexpected{source_errc::no_params};
  auto path = parse_params(*params);
  if (!path) return unexpected{path.error()};
  auto mode = store.read(no_tx, dir + "/mode");
  if (!mode) return unexpected{source_errc::no_mode};
  auto ro = parse_mode(*mode);
  if (!ro) return unexpected{ro.error()};
  return image_source{std::string(*path), *ro};
}

/// One line for a log: what a device served over all its connections.
inline std::string describe(const queue_stats& s) {
  return "served " + to_decimal(s.requests) + " requests: " + to_decimal(s.reads) + " reads (" +
         to_decimal(s.sectors_read) + " sectors), " + to_decimal(s.writes) + " writes (" +
         to_decimal(s.sectors_written) + " sectors), " + to_decimal(s.flushes) + " flushes, " + to_decimal(s.discards) +
         " discards, " + to_decimal(s.refused) + " refused; " + to_decimal(s.persistent_hits) +
         " persistent-grant hits, " + to_decimal(s.persistent_maps) + " pages mapped persistently";
}

/// A blkif device as a device_service driver: the backend_device and the image it serves,
/// which it owns (the image is opened when the device is probed and closed when the driver
/// goes). It forwards the service's calls to the device's driver, and on_notify(q) serves
/// that queue. A queue that stopped at its budget leaves pending_work(): its owner calls
/// serve() again before sleeping (posix::blk_server does it from a poller).
template <device_store S, event_channel E, grant_mapper G, block_image I, class P = vbd>
class service_device {
 public:
  using device_type = backend_device<S, E, G, I, P>;

  service_device(S& store, E& evtchn, G& grants, I image, domid_t self, domid_t frontend, unsigned devid,
                 device_options opts = {})
      : image_{std::move(image)}, dev_{store, evtchn, grants, image_, self, frontend, devid, opts} {}
  service_device(const service_device&) = delete;
  service_device& operator=(const service_device&) = delete;
  ~service_device() {
    if (dev_.started() && log_) log_("blkif: " + describe(dev_.lifetime_stats()));
  }

  // What device_service needs (service_driver).
  result<void, store_error> start() { return dev_.start(); }
  bool handle(const watch_event& ev) { return dev_.handle(ev); }
  void process() { dev_.process(); }
  void close() { dev_.driver().close(); }
  state own() const noexcept { return dev_.driver().own(); }
  state peer() const noexcept { return dev_.driver().peer(); }
  bool active() const noexcept { return dev_.driver().active(); }
  close_reason reason() const noexcept { return dev_.driver().reason(); }
  const std::string& token() const noexcept { return dev_.driver().token(); }
  std::string dir() const { return dev_.dir(); }

  // Its optional hooks: connected() with the queues' servers built, queues() for the ports
  // the service routes here, and on_notify(q) for a raised port (the loop unmasked it;
  // on_event unmasks again, which only costs a redelivery if the frontend raised it meanwhile).
  bool connected() const noexcept { return dev_.connected(); }
  auto queues() noexcept { return dev_.driver().queues(); }
  void on_notify(unsigned q) {
    if (q < dev_.driver().queues().size()) (void)dev_.on_event(dev_.driver().queue_at(q).port);
  }

  /// True if a queue stopped at its budget: call serve() before sleeping.
  bool pending_work() const noexcept { return dev_.pending_work(); }
  /// Serves every queue up to the budget; true if work is left.
  bool serve() { return dev_.serve(); }

  device_type& device() noexcept { return dev_; }
  const device_type& device() const noexcept { return dev_; }
  I& image() noexcept { return image_; }
  void set_logger(device_logger log) {
    log_ = log;
    dev_.set_logger(std::move(log));
  }

 private:
  I image_;  // before dev_: the device holds its address
  device_type dev_;
  device_logger log_;
};

/// The factory of a device_service of blkif devices: for each device it reads `params` and
/// `mode`, opens the image through `open(source)` and builds the device. A device it cannot
/// serve is refused with the errno and the reason the service writes to the error node
/// after its bounded retries (EINVAL for a refused `params` or `mode`, ENOENT for a missing one).
template <device_store S, event_channel E, grant_mapper G, block_image I, class P = vbd>
auto device_factory(S& store, E& evtchn, G& grants, device_options opts,
                    std::function<result<I, image_error>(const image_source&)> open, device_logger log = {}) {
  using D = service_device<S, E, G, I, P>;
  return [&store, &evtchn, &grants, opts, open = std::move(open),
          log = std::move(log)](device_probe& p) -> std::unique_ptr<D> {
    auto src = read_image_source(store, p.dir);
    if (!src) {
      const bool missing = src.error() == source_errc::no_params || src.error() == source_errc::no_mode;
      p.error = missing ? ENOENT : EINVAL;
      p.reason = std::string(to_string(src.error()));
      return nullptr;
    }
    auto img = open(*src);
    if (!img) {
      const int e = img.error().sys_errno;
      p.error = e ? e : EIO;
      p.reason = "cannot open " + src->path + ": " +
                 (e ? std::string(std::strerror(e)) : std::string(to_string(img.error().code)));
      return nullptr;
    }
    auto d = std::make_unique<D>(store, evtchn, grants, std::move(*img), p.address.backend_domid,
                                 p.address.frontend_domid, p.address.devid, opts);
    if (log) {
      const std::string prefix = p.dir + ": ";
      d->set_logger([log, prefix](std::string_view l) { log(prefix + std::string(l)); });
      log(prefix + "serving " + src->path + (src->read_only ? " read-only" : ""));
    }
    return d;
  };
}

}  // namespace blk
XENBUS_END_NAMESPACE
