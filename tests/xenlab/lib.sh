# Functions for the lab's scenarios (busybox sh, in dom0). Sourced by dom0's /init and by each
# scenario; every check prints one line: XENLAB PASS|FAIL <check> [detail].
XENLAB_RESULTS=/tmp/xenlab.results

pass() { c=$1; shift; echo "XENLAB PASS $c${*:+ : $*}"; echo "PASS $c" >>"$XENLAB_RESULTS"; }
fail() { c=$1; shift; echo "XENLAB FAIL $c${*:+ : $*}"; echo "FAIL $c" >>"$XENLAB_RESULTS"; }
info() { echo "XENLAB INFO $*"; }
# figure NAME VALUE UNIT: a measured figure, for the README's table (under TCG only ratios count).
figure() { echo "XENLAB FIGURE $1 $2 ${3:-}"; }
# check NAME COMMAND...: passes when COMMAND exits 0; its last output line is the detail.
check() {
  c=$1; shift
  out=$("$@" 2>&1); rc=$?
  echo "$out" | sed 's/^/    /' | tail -n 30
  if [ $rc = 0 ]; then pass "$c" "$(echo "$out" | tail -n 1)"; else fail "$c" "exit $rc: $(echo "$out" | tail -n 1)"; fi
  return $rc
}

# relay WHO FILE: the program's "PASS|FAIL name detail", "INFO text" and "FIGURE name value unit"
# lines (or the same from a domU, as domu_run prefixes them) as the lab's results.
relay() {
  while IFS= read -r line; do
    case $line in "  [dom"*"] "*) line=${line#*] } ;; esac
    kind=${line%% *} rest=${line#* }
    name=${rest%% *}
    detail=${rest#"$name"}
    case $kind in
      PASS) pass "$1.$name" "${detail# }" ;;
      FAIL) fail "$1.$name" "${detail# }" ;;
      INFO) info "$1: $rest" ;;
      FIGURE) set -f; set -- "$1" $rest; set +f; figure "$2" "$3" "$4" ;;
      *) [ -n "$line" ] && echo "    $line" ;;
    esac
  done <"$2"
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# seconds_since T: seconds (one decimal) since uptime T.
seconds_since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

# Every domU boots our image: busybox, the xenstore tools, /xenlab/bin, and an agent (its /init)
# that runs the commands dom0 writes to <home>/data/xenlab/cmd.
domu_console() { echo "/var/log/xen/console/guest-$(timeout 5 xenstore-read "/local/domain/$1/name" 2>/dev/null).log"; }

# domu_wait_ready D: waits (up to 120 s) for D's agent to say it is ready.
domu_wait_ready() {
  i=0
  while [ "$(timeout 5 xenstore-read "/local/domain/$1/data/xenlab/ready" 2>/dev/null)" != 1 ]; do
    i=$((i + 1))
    if [ $i -gt 600 ] || [ -z "$(timeout 5 xenstore-read "/local/domain/$1/name" 2>/dev/null)" ]; then
      echo "domU $1: its agent never became ready; console: $(tail -n 5 "$(domu_console "$1")" | tr '\n' ' ')" >&2
      return 1
    fi
    sleep 0.2
  done
}

# domu_create NAME [xl config line...]: prints the domid once the domU's agent is ready.
# XENLAB_DOMU_TYPE=pvh makes a PVH guest (default pv), XENLAB_DOMU_MEM its memory in MiB (128).
domu_create() {
  name=$1; shift
  cfg=/tmp/$name.cfg
  {
    echo "name = \"$name\""
    echo "type = \"${XENLAB_DOMU_TYPE:-pv}\""
    # PVH under TCG: QEMU's emulated SVM has no NRIP-save, so Xen cannot step over an
    # intercepted RDTSCP; with a native TSC mode RDTSC(P) is not intercepted.
    [ "${XENLAB_DOMU_TYPE:-pv}" = pvh ] && echo 'tsc_mode = "native"'
    echo 'kernel = "/xenlab/domu/vmlinux"'
    echo 'ramdisk = "/xenlab/domu/initrd.cpio"'
    echo 'extra = "console=hvc0 loglevel=4 clocksource=xen"'
    echo "memory = ${XENLAB_DOMU_MEM:-128}"
    echo 'vcpus = 1'
    echo 'on_poweroff = "destroy"'
    echo 'on_crash = "destroy"'
    for line in "$@"; do echo "$line"; done
  } >"$cfg"
  if ! timeout 150 xl create ${XENLAB_DOMU_PAUSED:+-p} "$cfg" >"/tmp/$name.create" 2>&1; then
    echo "xl create $name failed: $(tail -n 3 "/tmp/$name.create" | tr '\n' ' ')" >&2
    return 1
  fi
  # The domid from the store: `xl domid` right after `xl create` crashed once in CI (a
  # segmentation fault in xl), and the store is what the rest of the lab reads anyway.
  d=""
  for id in $(timeout 10 xenstore-list /local/domain 2>/dev/null); do
    [ "$(timeout 5 xenstore-read "/local/domain/$id/name" 2>/dev/null)" = "$name" ] && d=$id
  done
  if [ -z "$d" ]; then
    echo "domU $name: no /local/domain/<id>/name says $name after xl create" >&2
    return 1
  fi
  # XENLAB_DOMU_PAUSED=1: created paused (xl create -p), the domid printed at once; the caller
  # sets up what it needs, then `xl unpause` and domu_wait_ready.
  [ -n "${XENLAB_DOMU_PAUSED:-}" ] || domu_wait_ready "$d" || return 1
  echo "$d"
}

# domu_send D CMD: hands CMD to D's agent; prints the sequence number.
domu_send() {
  seqf=/tmp/domu$1.seq
  seq=$(($(cat "$seqf" 2>/dev/null || echo 0) + 1))
  echo $seq >"$seqf"
  timeout 10 xenstore-write "/local/domain/$1/data/xenlab/cmd" "$seq|$2" || return 1
  echo $seq
}

# domu_run D TIMEOUT_S 'shell command': runs it in D, prints its output, returns its exit status
# (124 when it did not finish in time).
domu_run() {
  d=$1 t=$2 cmd=$3
  seq=$(domu_send "$d" "$cmd") || return 1
  log=$(domu_console "$d")
  start=$(uptime_s)
  while ! tr -d '\r' <"$log" | grep -aq "^XENLAB-OUT-END $seq "; do
    if [ "$(seconds_since "$start" | cut -d. -f1)" -ge "$t" ]; then
      echo "  [dom$d] (no answer in ${t}s)"
      return 124
    fi
    sleep 0.2
  done
  tr -d '\r' <"$log" | awk -v s="$seq" -v d="$d" '
    $0 == "XENLAB-OUT-BEGIN " s { on = 1; next }
    on && index($0, "XENLAB-OUT-END " s " ") == 1 { split($0, f, " "); rc = f[3]; exit }
    on { print "  [dom" d "] " $0 }
    END { exit rc }'
}

# domu_spawn D 'shell command': starts it in the background in D (its output goes to D's console).
domu_spawn() {
  d=$1
  seq=$(domu_send "$d" "&$2") || return 1
  log=$(domu_console "$d")
  i=0
  while ! tr -d '\r' <"$log" | grep -aq "^XENLAB-OUT-END $seq "; do
    i=$((i + 1))
    [ $i -lt 300 ] || return 1
    sleep 0.2
  done
}

domu_destroy() { timeout 60 xl destroy "$1"; }

# xenbus_state PATH: the state node's value, or "-" when absent.
xenbus_state() { timeout 5 xenstore-read "$1" 2>/dev/null || echo -; }
