#!/usr/bin/env bash
# Builds xenbus-bench with the dev preset, runs every benchmark with repetitions, and
# writes bench/results/{results.json,table.md,plot.png} naming the machine.
#   bench/run.sh                 # the full run: about two minutes
#   REPETITIONS=5 bench/run.sh   # fewer repetitions (MIN_TIME sets seconds per repetition)
#   bench/run.sh --benchmark_filter=stream   # extra arguments go to xenbus-bench
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$(nproc)" --target xenbus-bench

out=bench/results
mkdir -p "$out"
model=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
cpus=$(nproc)
cores=$(lscpu | sed -n 's/^Core(s) per socket: *//p' | head -n1)
hv=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -n1)
machine="${model:-unknown CPU}, ${cpus} CPUs (${cores:-?} cores per socket)${hv:+, $hv guest}, $(uname -sr)"
echo "xenbus-bench on: $machine; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Many short repetitions in random order, so that the machine's noise falls on every
# implementation alike; report.py compares the rates of the median iterations.
build/dev/bench/xenbus-bench \
  --benchmark_repetitions="${REPETITIONS:-20}" \
  --benchmark_min_time="${MIN_TIME:-0.03}" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$out/results.json" --benchmark_out_format=json \
  --benchmark_context=machine="${machine//,/;}" \
  "$@"

python3 bench/report.py "$out/results.json" --table "$out/table.md" --plot "$out/plot.png" --machine "$machine"
echo "xenbus-bench: wrote $out/results.json, $out/table.md, $out/plot.png" >&2
