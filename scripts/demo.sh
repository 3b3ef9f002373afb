#!/usr/bin/env bash
# Installs what is missing, builds, and runs the two-domain demo (xenbus-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$(nproc)" --target xenbus-demo
exec build/dev/examples/xenbus-demo "$@"
