#!/usr/bin/env bash
# Starts one of Xen's own xenstore daemons (Debian package xen-utils-4.17) without a
# hypervisor, on a private socket, as a reference server for the differential tests.
# See docs/reference-servers.md.
#
#   xenstored.sh start oxenstored DIR   Xen's OCaml daemon
#   xenstored.sh start cxenstored DIR   Xen's C daemon
#       DIR (created if missing, not under /run) keeps the compiled shim, configuration,
#       logs and pid. Prints the socket path on standard output once the daemon accepts
#       connections. Exit 77 (skipped, with the reason on standard error) when this
#       machine cannot run it: not root, the daemon, a C compiler, the Xen headers
#       (libxen-dev) or, for oxenstored, unshare (util-linux) missing.
#   xenstored.sh stop DIR               stops the daemon started with DIR
#
# Both run as root under tests/reference/shim.c (LD_PRELOAD), which answers the
# hypervisor calls they make at start-up.
# - cxenstored honours XENSTORED_RUNDIR and XENSTORED_PATH (libxenstore's xs_daemon_rundir,
#   xs_daemon_socket): its socket is DIR/socket and its in-memory database needs no file.
# - oxenstored has its socket path compiled in (/var/run/xenstored/socket). It runs in a
#   private mount namespace (unshare -m) in which DIR/run is bind-mounted over /run, so
#   the socket it creates is DIR/run/xenstored/socket; the machine's /run, and a system
#   xenstored's socket there, are never touched. A Unix socket is reached through any
#   path to its inode, so clients outside the namespace connect to DIR/run/... directly.
set -euo pipefail

XEN_BIN=${XENBUS_XEN_BIN:-/usr/lib/xen-4.17/bin}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

skip() { echo "skipped: $*" >&2; exit 77; }
die() { echo "xenstored.sh: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 start oxenstored|cxenstored DIR | $0 stop DIR" >&2
  exit 2
}

# Waits until the socket accepts a connection (or at least exists, without python3).
wait_ready() {
  local sock=$1 pid=$2
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -S "$sock" ]; then
      if ! command -v python3 >/dev/null; then return 0; fi
      python3 - "$sock" <<'PY' 2>/dev/null && return 0
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
PY
    fi
    sleep 0.05
  done
  return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  [ -n "$pid" ] || return 0
  # The pid file names the daemon only while its /proc entry is the daemon we started.
  if kill -0 "$pid" 2>/dev/null && grep -qs "xenstored" "/proc/$pid/cmdline"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

start() {
  local mode=$1 dir=$2 daemon pid sock
  case $mode in
    oxenstored) daemon=$XEN_BIN/oxenstored ;;
    cxenstored) daemon=$XEN_BIN/xenstored ;;
    *) usage ;;
  esac
  [ "$(id -u)" = 0 ] || skip "$mode needs root"
  [ -x "$daemon" ] || skip "$daemon missing (Debian package xen-utils-4.17; scripts/deps.sh)"
  local cc=${CC:-cc}
  command -v "$cc" >/dev/null || skip "no C compiler ($cc) to build the shim"
  [ -f /usr/include/xenctrl.h ] || skip "Xen headers missing (Debian package libxen-dev)"
  if [ "$mode" = oxenstored ]; then
    command -v unshare >/dev/null || skip "unshare missing (Debian package util-linux)"
  fi

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  local run
  run=$(readlink -f /var/run)
  case $dir/ in
    /run/* | "$run"/*) die "DIR must not be under /run: oxenstored's /run is replaced" ;;
  esac
  stop "$dir"
  "$cc" -shared -fPIC -O1 -Wall -Wextra -Werror -o "$dir/shim.so" "$here/shim.c" -ldl \
    2>"$dir/shim.log" || { cat "$dir/shim.log" >&2; die "the shim did not compile"; }

  case $mode in
    cxenstored)
      sock=$dir/socket
      rm -f "$sock" "$dir/xenstored.pid"
      # -N: stay in the foreground, so that our pid is the daemon's. Without -D it runs
      # domain_init and dom0_init, which the shim answers (see shim.c).
      XENSTORED_RUNDIR=$dir XENSTORED_PATH=$sock LD_PRELOAD=$dir/shim.so \
        setsid "$daemon" --no-fork --pid-file "$dir/xenstored.pid" \
        </dev/null >"$dir/out" 2>&1 &
      pid=$!
      ;;
    oxenstored)
      mkdir -p "$dir/run"
      sock=$dir/run/xenstored/socket
      rm -f "$sock"
      cat >"$dir/oxenstored.conf" <<CONF
pid-file = $dir/oxenstored.pid
persistent = false
xenstored-log-file = $dir/oxenstored.log
access-log-file = $dir/access.log
CONF
      # unshare execs sh, which execs oxenstored: our pid is the daemon's. The bind mount
      # exists only in the new namespace (unshare makes its mounts private).
      LD_PRELOAD= setsid unshare --mount --propagation private \
        sh -c 'mount --no-mtab --bind "$1" "$2" && mkdir -p "$2/xenstored" && shift 2 && exec env LD_PRELOAD="$0" "$@"' \
        "$dir/shim.so" "$dir/run" "$run" \
        "$daemon" --no-fork --no-domain-init --config-file "$dir/oxenstored.conf" \
        </dev/null >"$dir/out" 2>&1 &
      pid=$!
      ;;
  esac
  echo "$pid" >"$dir/pid"
  if ! wait_ready "$sock" "$pid"; then
    echo "xenstored.sh: $mode did not start; its output:" >&2
    cat "$dir/out" >&2 || true
    stop "$dir"
    exit 1
  fi
  echo "$sock"
}

case ${1:-} in
  start) [ $# = 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# = 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
