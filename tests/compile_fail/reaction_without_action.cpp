// Must not compile: a reaction row without its action (it would call through a null
// member pointer when it fires).
#include "device_end_stub.hpp"

using namespace xenbus;
using st = state;

struct end : stub::frontend_base {
  using row = detail::reaction<end, when>;
  using duty_row = detail::duty_row<end>;
  // clang-format off
  static constexpr std::array<row, 4> reactions{{
    {st::initialising, state_set{st::init_wait},                st::initialised, when::always, &end::publish},       // frontend-publishes-transport
    {st::initialised,  state_set{st::connected},                st::connected,   when::always, &end::attach_rings},  // frontend-connects
    {st::connected,    state_set{st::closing, st::closed},      st::closing,     when::always, &end::stop_io},       // frontend-closes
    {st::closing,      state_set{st::closing, st::closed},      st::closed,      when::always},                          // frontend-closed
  }};
  static constexpr std::array<duty_row, duty_count> duties{{
    {duty::forget_device,           &end::ignore},
    {duty::reconfigure,             &end::ignore},
    {duty::reset_for_new_peer,      &end::on_reset},
    {duty::release_transport,       &end::ignore},
    {duty::stop_io,                 &end::on_stop_io},
    {duty::read_backend_properties, &end::ignore},
    {duty::connect_transport,       &end::ignore},
    {duty::read_backend_features,   &end::on_backend_features},
  }};
  // clang-format on
  static constexpr detail::prep (end::*close_action)() = &end::stop_io;
};

int main() {
  end e;
  stub::run(e);
}
