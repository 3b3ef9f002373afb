#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite:
# g++ (-Werror) in RelWithDebInfo and in Release, clang++ with ASan/UBSan plus short libFuzzer runs, and ThreadSanitizer;
# then builds, installs, consumes and removes the Debian packages (scripts/package-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
for preset in dev release clang-asan tsan; do
  echo "== xenbus: $preset ==" >&2
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
done
echo "== xenbus: Debian packages ==" >&2
scripts/package-test.sh
