#!/usr/bin/env bash
# Runs xsclient-check against a real server.
#   xsclient_against.sh CHECK oxenstored RUN_SCRIPT   Xen's oxenstored on /var/run/xenstored/socket
#                                                     (exit 77, skipped, without root or if that
#                                                     socket is served already)
#   xsclient_against.sh CHECK ours XENBUS_XENSTORED   our server on a private socket
set -euo pipefail
check=${1:?check program}
mode=${2:?mode}
server=${3:?server}
dir=$(mktemp -d /tmp/xenbus-xsclient-against.XXXXXX)
pid=
cleanup() {
  local rc=$?
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true  # oxenstored is not our child: nothing to reap then
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
case $mode in
  oxenstored)
    [ "$(id -u)" = 0 ] || { echo "skipped: oxenstored needs root"; exit 77; }
    [ -x /usr/lib/xen-4.17/bin/oxenstored ] || { echo "skipped: no oxenstored"; exit 77; }
    [ -f "$server" ] || { echo "skipped: no $server to start oxenstored"; exit 77; }
    if python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect("/var/run/xenstored/socket")' 2>/dev/null; then
      echo "skipped: /var/run/xenstored/socket is already served"; exit 77
    fi
    bash "$server" "$dir" >/dev/null
    pid=$(cat "$dir/pid")
    unset XENSTORED_PATH XENSTORED_RUNDIR  # the client's default path, as libxenstore's
    ;;
  ours)
    "$server" --socket "$dir/socket" --pid-file "$dir/pid" &
    pid=$!
    for _ in $(seq 200); do [ -f "$dir/pid" ] && break; sleep 0.02; done
    export XENSTORED_PATH=$dir/socket
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"$check"
