#!/usr/bin/env bash
# Runs a real xenstore client against xenbus-xenstored on a private socket.
#   xenstore_interop.sh SERVER test-xenstore TEST   Xen's test-xenstore -t TEST
#   xenstore_interop.sh SERVER tools                the xenstore-* tools of xenstore-utils
set -euo pipefail
server=${1:?server binary}
mode=${2:?mode}
dir=$(mktemp -d /tmp/xenbus-interop.XXXXXX)
sock=$dir/socket
"$server" --no-fork --socket "$sock" --pid-file "$dir/pid" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 200); do [ -f "$dir/pid" ] && break; sleep 0.02; done
[ -f "$dir/pid" ] || { echo "server did not start" >&2; exit 1; }
export XENSTORED_PATH=$sock

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # expect "what" expected actual
  [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"
}

case $mode in
  test-xenstore)
    name=${3:?test name}
    out=$(/usr/lib/xen-4.17/bin/test-xenstore -t "$name" -i "${ITERATIONS:-20}") || fail "test-xenstore -t '$name': $out"
    echo "$out"
    if grep -q failed <<<"$out"; then fail "$out"; fi
    ;;
  test-xenstore-all)
    out=$(/usr/lib/xen-4.17/bin/test-xenstore -i "${ITERATIONS:-20}") || fail "test-xenstore: $out"
    echo "$out"
    [ "$(grep -c ' ns' <<<"$out")" -eq "$(/usr/lib/xen-4.17/bin/test-xenstore -l | wc -l)" ] || fail "not every test reported"
    ;;
  tools)
    xenstore-write /vm/1/name guest /vm/1/uuid 1234
    expect read guest "$(xenstore-read /vm/1/name)"
    expect read-relative "" "$(xenstore-write rel v && xenstore-read /local/domain/0/rel | tr -d v)"
    expect ls "name = \"guest\"
uuid = \"1234\"" "$(xenstore-ls /vm/1)"
    expect list "name
uuid" "$(xenstore-list /vm/1)"
    expect exists 0 "$(xenstore-exists /vm/1/uuid; echo $?)"
    xenstore-chmod /vm/1/name n0 r5
    expect perms '(n0,r5)' "$(xenstore-ls -p /vm/1 | grep -o '(n0,r5)' || true)"
    # A watch sees its registration and the next change, then exits (-n 2).
    watch_out=$dir/watch
    xenstore-watch -n 2 /vm/1 >"$watch_out" &
    wpid=$!
    for _ in $(seq 100); do [ -s "$watch_out" ] && break; sleep 0.02; done
    xenstore-write /vm/1/state 4
    wait "$wpid" || fail "xenstore-watch failed"
    expect watch "/vm/1
/vm/1/state" "$(cat "$watch_out")"
    xenstore-rm /vm/1
    expect rm 1 "$(xenstore-exists /vm/1 2>/dev/null; echo $?)"
    if xenstore-read /vm/1/name 2>/dev/null; then fail "read after rm"; fi
    echo "xenstore-utils: ok"
    ;;
  *) fail "unknown mode $mode" ;;
esac
