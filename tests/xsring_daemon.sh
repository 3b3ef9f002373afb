#!/bin/bash
# The launch conventions of xenbus-xenstored as a host's xenstored (Debian's /etc/init.d/xen starts
# "$XENSTORED -- $XENSTORED_ARGS --pid-file FILE" and expects it to fork): usage: xsring_daemon.sh PROGRAM
set -u
prog=$1
dir=$(mktemp -d /tmp/xenbus-xsring-daemon.XXXXXX)
failures=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
check() {  # check NAME COMMAND...: runs it, reports
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; failures=$((failures + 1)); fi
}
alive() { kill -0 "$1" 2>/dev/null; }
gone_within() {  # gone_within PID SECONDS
  for _ in $(seq $(($2 * 20))); do alive "$1" || return 0; sleep 0.05; done
  return 1
}
xs() { XENSTORED_PATH=$1 "${@:2}"; }

# 1. It forks: the parent returns once the child serves; the pid file names the child.
start=$(date +%s%N)
"$prog" -- --socket "$dir/run/socket" --pid-file "$dir/pid"
rc=$?
check "the parent exits 0 once the server is ready" test "$rc" -eq 0
check "the pid file exists at once" test -s "$dir/pid"
pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
pids+=("$pid")
check "the pid names a live process, not the parent" alive "$pid"
check "the server is in a session of its own" test "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid"
check "the socket's directory was made" test -S "$dir/run/socket"
check "xenstore-write works at once" xs "$dir/run/socket" xenstore-write /a forked
check "xenstore-read reads it back" test "$(xs "$dir/run/socket" xenstore-read /a)" = forked
kill "$pid"
check "SIGTERM stops it" gone_within "$pid" 5
check "the pid file is removed at a clean stop" test ! -e "$dir/pid"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "     (fork, serve, stop: ${elapsed_ms} ms)"

# 2. Without --socket: the path libxenstore opens ($XENSTORED_PATH, else $XENSTORED_RUNDIR/socket).
XENSTORED_PATH=$dir/env.sock "$prog" --pid-file "$dir/pid2"
check "\$XENSTORED_PATH names the default socket" test -S "$dir/env.sock"
pids+=("$(cat "$dir/pid2")")
kill "$(cat "$dir/pid2")"
(unset XENSTORED_PATH; XENSTORED_RUNDIR=$dir/rundir "$prog" --pid-file "$dir/pid3")
check "\$XENSTORED_RUNDIR/socket otherwise" test -S "$dir/rundir/socket"
pids+=("$(cat "$dir/pid3")")
check "xenstore-read -s finds it there, as the init script polls" \
  env -u XENSTORED_PATH XENSTORED_RUNDIR="$dir/rundir" xenstore-write -s /b rundir
kill "$(cat "$dir/pid3")"

# 3. A start that cannot serve fails in the parent, with the reason.
err=$("$prog" --socket /nonexistent/xenbus/socket 2>&1)
rc=$?
check "an impossible socket: exit 1" test "$rc" -eq 1
check "... with the reason on standard error" grep -q "cannot listen on /nonexistent/xenbus/socket" <<<"$err"
if [ ! -e /proc/xen/xsd_kva ]; then
  err=$("$prog" --domains yes --socket "$dir/d.sock" 2>&1)
  rc=$?
  check "--domains yes off dom0: exit 1" test "$rc" -eq 1
  check "... saying what is missing" grep -q "cannot" <<<"$err"
fi

# 4. --no-fork stays in the foreground; --log-file gets the log.
"$prog" --no-fork --socket "$dir/fg.sock" --pid-file "$dir/fg.pid" --log-file "$dir/log" &
fg=$!
pids+=("$fg")
for _ in $(seq 100); do [ -s "$dir/fg.pid" ] && break; sleep 0.05; done
check "--no-fork: the pid file names the process started" test "$(cat "$dir/fg.pid" 2>/dev/null)" = "$fg"
check "--log-file: the start is logged" grep -q "serving $dir/fg.sock" "$dir/log"
kill "$fg"
wait "$fg"
check "--no-fork: a clean stop exits 0" test $? -eq 0

echo "$failures failure(s)"
exit $((failures > 0))
