#!/usr/bin/env bash
# Runs xsclient-check against a real server.
#   xsclient_against.sh CHECK oxenstored|cxenstored LAUNCHER
#       Xen's daemon, started by LAUNCHER (tests/reference/xenstored.sh) on a private
#       socket; exit 77 (skipped, with the reason) when it cannot run here (e.g. not root)
#   xsclient_against.sh CHECK ours XENBUS_XENSTORED   our server on a private socket
set -euo pipefail
check=${1:?check program}
mode=${2:?mode}
server=${3:?server}
dir=$(mktemp -d /tmp/xenbus-xsclient-against.XXXXXX)
pid=
launched=
cleanup() {
  local rc=$?
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$launched" ]; then bash "$server" stop "$dir/ref" || true; fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
case $mode in
  oxenstored | cxenstored)
    set +e
    sock=$(bash "$server" start "$mode" "$dir/ref")
    rc=$?
    set -e
    [ "$rc" = 77 ] && exit 77
    launched=1
    [ "$rc" = 0 ] || { echo "$mode did not start" >&2; exit 1; }
    export XENSTORED_PATH=$sock
    ;;
  ours)
    "$server" --no-fork --socket "$dir/socket" --pid-file "$dir/pid" &
    pid=$!
    for _ in $(seq 200); do [ -f "$dir/pid" ] && break; sleep 0.02; done
    export XENSTORED_PATH=$dir/socket
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"$check"
