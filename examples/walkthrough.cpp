// Walks one device through startup, the seed's kexec handover and an unplug, printing who drove
// each state change and how every party read it. Exits non-zero if anything is unexpected.
#include <xenbus/protocol/state_machine.hpp>

#include <cstdio>
#include <string_view>

namespace {

using namespace xenbus;

int failures = 0;

void print(std::string_view who, std::string_view what) {
  std::printf("%-22.*s %.*s\n", static_cast<int>(who.size()), who.data(), static_cast<int>(what.size()), what.data());
}

void unexpected_event(std::string_view what) {
  ++failures;
  print("UNEXPECTED", what);
}

// One party writes its node (or the toolstack writes one); the table must allow it.
template <class Result>
void wrote(std::string_view who, const Result& r, std::string_view rule) {
  if (!r) return unexpected_event(describe(r.error()).view());
  print(who, describe(*r).view());
  if (r->rule != rule) unexpected_event(rule);
}

// One party reads a watch event; the reading must be the expected kind.
void saw(std::string_view who, const observation& o, change_kind expected) {
  print(who, describe(o).view());
  if (o.kind != expected) unexpected_event(to_string(expected));
}

}  // namespace

int main() {
  toolstack_machine toolstack;
  frontend_machine front;  // the running guest kernel's frontend
  backend_machine back;
  const std::string_view T = "toolstack", F = "frontend", B = "backend";

  std::printf("== startup (blkif.h diagram) ==\n");
  const auto created_f = toolstack.request(role::frontend, state::initialising);
  wrote(T, created_f, "toolstack-creates-device");
  wrote(T, toolstack.request(role::backend, state::initialising), "toolstack-creates-device");
  wrote(B, back.request(state::init_wait), "backend-publishes-features");
  saw(F, front.observe_peer(state::init_wait), change_kind::step);
  saw(T, toolstack.observe(role::backend, state::init_wait), change_kind::step);
  wrote(F, front.request(state::initialised), "frontend-publishes-transport");
  saw(B, back.observe_peer(state::initialised), change_kind::step);
  saw(T, toolstack.observe(role::frontend, state::initialised), change_kind::step);
  wrote(B, back.request(state::connected), "backend-connects");
  saw(F, front.observe_peer(state::connected), change_kind::step);
  wrote(F, front.request(state::connected), "frontend-connects");
  saw(B, back.observe_peer(state::connected), change_kind::step);
  saw(T, toolstack.observe(role::backend, state::connected), change_kind::step);
  saw(T, toolstack.observe(role::frontend, state::connected), change_kind::step);

  std::printf("== kexec: the old kernel hands its frontend over to the new one ==\n");
  frontend_machine fresh = front.hand_over();
  const std::string_view old_f = "frontend (old kernel)", new_f = "frontend (new kernel)";
  print(old_f, "handed over: no longer acts or reacts");
  wrote(new_f, fresh.request(state::initialising), "frontend-hands-over");
  saw(B, back.observe_peer(state::initialising), change_kind::reset);
  wrote(B, back.request(state::init_wait), "backend-resets-at-once");
  saw(old_f, front.observe_peer(state::init_wait), change_kind::ignored);
  if (front.request(state::initialised)) unexpected_event("the old kernel's frontend could act");
  saw(new_f, fresh.observe_peer(state::init_wait), change_kind::reset);
  wrote(new_f, fresh.request(state::initialised), "frontend-publishes-transport");
  saw(B, back.observe_peer(state::initialised), change_kind::step);
  wrote(B, back.request(state::connected), "backend-connects");
  saw(new_f, fresh.observe_peer(state::connected), change_kind::step);
  wrote(new_f, fresh.request(state::connected), "frontend-connects");
  saw(B, back.observe_peer(state::connected), change_kind::step);
  // The toolstack's watch fires once more; it reads the same Connected it saw before.
  saw(T, toolstack.observe(role::frontend, state::connected), change_kind::unchanged);

  std::printf("== unplug: the toolstack closes the backend, both ends follow ==\n");
  wrote(T, toolstack.request(role::backend, state::closing), "toolstack-unplugs");
  saw(B, back.observe_toolstack(state::closing), change_kind::step);
  saw(new_f, fresh.observe_peer(state::closing), change_kind::step);
  wrote(new_f, fresh.request(state::closed), "frontend-closes-at-once");
  saw(B, back.observe_peer(state::closed), change_kind::step);
  wrote(B, back.request(state::closed), "backend-closed");
  saw(new_f, fresh.observe_peer(state::closed), change_kind::step);
  saw(T, toolstack.observe(role::frontend, state::closed), change_kind::step);
  saw(T, toolstack.observe(role::backend, state::closed), change_kind::step);
  wrote(T, toolstack.request(role::frontend, state::unknown), "toolstack-removes-device");
  wrote(T, toolstack.request(role::backend, state::unknown), "toolstack-removes-device");
  saw(old_f, front.observe_peer(state::unknown), change_kind::ignored);

  if (failures != 0) {
    std::printf("%d unexpected event(s)\n", failures);
    return 1;
  }
  std::printf("all changes as the standard table says\n");
  return 0;
}
