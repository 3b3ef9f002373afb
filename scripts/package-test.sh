#!/usr/bin/env bash
# Tests the Debian packages as a user meets them:
#   1. builds them with `dpkg-buildpackage -us -uc -b` from a copy of the source in a temporary
#      directory (dpkg-buildpackage writes ../*.deb: nothing lands in the source tree);
#   2. installs libxenbus-dev and xenbus-tools with apt-get;
#   3. builds and runs a find_package consumer, a CMake pkg-config consumer and a plain
#      `c++ $(pkg-config --cflags xenbus)` one against the installed files only;
#   4. runs every installed program with --help and --version, finds its man page, and starts
#      and stops xenbus-xenstored on a private socket;
#   5. removes the packages again (purge), also when a step fails, and checks they are gone.
# Needs root or sudo (apt-get), and debhelper, dpkg-dev, cmake, g++ and pkg-config
# (scripts/deps.sh installs them). --lintian also runs lintian on the result (needs lintian)
# and fails on any error or warning but the one an unreleased first version must carry.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

lintian=0
for arg in "$@"; do
  case $arg in
    --lintian) lintian=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
      exit 0 ;;
    *) echo "usage: $0 [--lintian]" >&2; exit 2 ;;
  esac
done

say() { echo "== xenbus package-test: $* ==" >&2; }
die() { echo "xenbus package-test: $*" >&2; exit 1; }
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
apt_get() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 "$@"; }
pkgs=(libxenbus-dev xenbus-tools)
status() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || echo not-installed; }

# The packages' version must be the project's.
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
upstream=${deb_version%-*}
project_version=$(sed -n 's/^project(xenbus VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ "$upstream" = "$project_version" ] ||
  die "debian/changelog says $deb_version, CMakeLists.txt $project_version"

# Never replace (and then remove) a copy that someone installed: that is not ours to remove.
for p in "${pkgs[@]}"; do
  [ "$(status "$p")" = not-installed ] ||
    die "$p is installed already ($(status "$p")); remove it first: apt-get purge ${pkgs[*]}"
done

# The environment must not point the consumers at anything but the installed files.
unset CMAKE_PREFIX_PATH xenbus_DIR PKG_CONFIG_PATH PKG_CONFIG_LIBDIR

work=$(mktemp -d "${TMPDIR:-/tmp}/xenbus-package.XXXXXX")
chmod 755 "$work"  # apt reads the .debs as user _apt
installed=0
cleanup() {
  local rc=$?
  if ((installed)); then
    say "removing ${pkgs[*]}"
    apt_get purge "${pkgs[@]}" >/dev/null 2>&1 || { echo "xenbus package-test: apt-get purge failed" >&2; rc=1; }
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$SECONDS

say "building the packages from a copy in $work"
tree=$work/xenbus-$upstream
mkdir "$tree"
tar -C "$src" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude='./obj-*' -cf - . |
  tar -C "$tree" -xf -
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log" >&2
  die "dpkg-buildpackage failed (last lines above)"
fi
arch=$(dpkg --print-architecture)
debs=("$work/libxenbus-dev_${deb_version}_all.deb" "$work/xenbus-tools_${deb_version}_${arch}.deb")
for d in "${debs[@]}"; do [ -f "$d" ] || die "no $(basename "$d"): $(cd "$work" && echo *.deb)"; done
build_seconds=$((SECONDS - start))

if ((lintian)); then
  say "lintian"
  # initial-upload-closes-no-bugs: a first version that closes no ITP bug (not in Debian).
  lintian --info --pedantic --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs \
    "$work/xenbus_${deb_version}_${arch}.changes"
fi

say "installing ${pkgs[*]}"
installed=1
apt_get install --no-install-recommends "${debs[@]}" >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; die "apt-get install failed"; }
for p in "${pkgs[@]}"; do [ "$(status "$p")" = installed ] || die "$p: $(status "$p") after install"; done

say "find_package consumer"
cmake -S "$tree/tests/consumers/find_package" -B "$work/find_package" -DCMAKE_BUILD_TYPE=Release >/dev/null
found=$(sed -n 's/^xenbus_DIR:PATH=//p' "$work/find_package/CMakeCache.txt")
[ "$found" = /usr/share/xenbus ] || die "find_package(xenbus) found $found, not /usr/share/xenbus"
cmake --build "$work/find_package" >/dev/null
"$work/find_package/consumer"

say "pkg-config consumers"
[ "$(pkg-config --path xenbus)" = /usr/share/pkgconfig/xenbus.pc ] ||
  die "pkg-config finds $(pkg-config --path xenbus || true), not /usr/share/pkgconfig/xenbus.pc"
[ "$(pkg-config --modversion xenbus)" = "$upstream" ] ||
  die "xenbus.pc says version $(pkg-config --modversion xenbus), not $upstream"
[ -f "$(pkg-config --variable=includedir xenbus)/xenbus/version.hpp" ] ||
  die "xenbus.pc's includedir $(pkg-config --variable=includedir xenbus) has no xenbus/version.hpp"
# shellcheck disable=SC2046  # the flags are words
c++ -std=c++20 $(pkg-config --cflags xenbus) "$tree/tests/consumers/main.cpp" \
  -o "$work/pc-consumer" $(pkg-config --libs xenbus)
"$work/pc-consumer"
cmake -S "$tree/tests/consumers/pkg_config" -B "$work/pkg_config" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/pkg_config" >/dev/null
"$work/pkg_config/consumer"

say "installed programs"
files=$(dpkg -L xenbus-tools)
programs=$(grep -E '^/usr/s?bin/[^/]+$' <<<"$files" || true)
[ -n "$programs" ] || die "xenbus-tools installs no program"
for prog in $programs; do
  name=${prog##*/}
  "$prog" --help >/dev/null || die "$name --help failed"
  v=$("$prog" --version) || die "$name --version failed"
  [ "$v" = "$name (xenbus) $upstream" ] || die "$name --version says '$v', not '$name (xenbus) $upstream'"
  echo "$v"
  section=1; [[ $prog == */sbin/* ]] && section=8
  grep -qx "/usr/share/man/man$section/$name.$section.gz" <<<"$files" ||
    die "$name has no man page in section $section"
done
# The daemon itself: serves a private socket, writes its pid file, stops cleanly on SIGTERM.
xenbus-xenstored --no-fork --socket "$work/xenstored.sock" --pid-file "$work/xenstored.pid" &
daemon=$!
for _ in $(seq 100); do [ -s "$work/xenstored.pid" ] && break; sleep 0.05; done
[ -S "$work/xenstored.sock" ] || { kill "$daemon" 2>/dev/null; die "xenbus-xenstored did not listen"; }
kill -TERM "$daemon"
wait "$daemon" || die "xenbus-xenstored exited $? on SIGTERM"

say "removing ${pkgs[*]}"
apt_get purge "${pkgs[@]}" >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; die "apt-get purge failed"; }
installed=0
for p in "${pkgs[@]}"; do [ "$(status "$p")" = not-installed ] || die "$p: $(status "$p") after purge"; done
for f in /usr/share/pkgconfig/xenbus.pc /usr/share/xenbus /usr/include/xenbus /usr/sbin/xenbus-xenstored /usr/sbin/xenbus-blkback; do
  [ ! -e "$f" ] || die "$f is left after purge"
done
say "passed: package build ${build_seconds} s, all steps $((SECONDS - start)) s"
