// A consumer program: proves the package's include paths and C++20 requirement reach users.
#include <xenbus/protocol/state.hpp>

#include <cstdio>

int main() {
  auto s = xenbus::parse_state("4");
  if (!s || *s != xenbus::state::connected) return 1;
  std::printf("consumer sees %s\n", xenbus::to_string(*s).data());
  return 0;
}
