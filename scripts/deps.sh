#!/usr/bin/env bash
# Installs the Debian packages xenbus needs, and only those that are missing.
set -euo pipefail
pkgs=(
  cmake make g++ gcc clang libclang-rt-14-dev   # compilers, sanitizers, libFuzzer
  clang-format                                  # the committed .clang-format (test xenbus-format)
  libxen-dev                                    # Xen public headers, libxenstore, libxenevtchn, libxengnttab
  doctest-dev libbenchmark-dev libboost-dev     # tests, benchmarks, the SPSC reference
  xenstore-utils xen-utils-4.17                 # real xenstore clients, test-xenstore, oxenstored, xenstored
  util-linux                                    # unshare: tests/reference/xenstored.sh runs oxenstored in a private mount namespace
  qemu-system-x86 cpio xz-utils kmod            # the QEMU Xen lab (scripts/xenlab.sh): emulator, images, module dependencies
  gnuplot-nox python3                           # benchmark plot and tables
  debhelper dpkg-dev pkg-config groff-base      # Debian packages, xenbus.pc, man pages (package-test.sh)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "xenbus: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
