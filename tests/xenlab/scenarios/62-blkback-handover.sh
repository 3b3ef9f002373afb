# The seed's frontend handover with blkif, on a real Xen: two instances of our own user-space
# frontend (xenbus-xenlab-blkfront, the library's frontend driver over /dev/xen/xenbus,
# gntalloc and evtchn) in the first domU, against xenbus-blkback in dom0. Instance 1 connects
# and writes a pattern; instance 2 takes the device over while instance 1 still runs (it
# writes the frontend node back to Initialising: "frontend-hands-over"), the backend resets
# at once ("backend-resets-at-once") and serves it; instance 2 reads the pattern back, writes
# and reads a little more, closes. Instance 1 must see its driver report the handover, and a
# write it then puts on its old ring must never be answered nor reach the image. The domU's
# kernel blkfront is kept off the device: the xen bus probes no new device while
# drivers_autoprobe is 0.

D=$XENLAB_DOMU
DEV=51808 # xvdk: not used by 60 or 61
IMG=/dev/shm/xenbus-handover.img
MB=16
K=2048                  # sectors instance 1 writes (1 MiB)
MORE=64                 # sectors instance 2 writes after them
LATE=$((K + 1024))      # where instance 1's late write would land
SEED=4242               # instance 1 writes its pattern, instance 2 SEED + 1
BE=/local/domain/0/backend/qdisk/$D/$DEV
FE=/local/domain/$D/device/vbd/$DEV
LOG=/tmp/blkback-handover.log
BF="xenbus-xenlab-blkfront --devid $DEV"
strip() { sed 's/^  \[dom[0-9]*\] //'; }
# image_sum FIRST COUNT: sha256 of sectors [FIRST, FIRST + COUNT) of the image.
image_sum() { dd if="$IMG" bs=512 skip="$1" count="$2" 2>/dev/null | sha256sum | awk '{ print $1 }'; }
pattern_sum() { xenbus-xenlab-blkfront --pattern "$1" --first "$2" --sectors "$3" | sha256sum | awk '{ print $1 }'; }
finish() {
  domu_run "$D" 30 'kill -TERM $(cat /tmp/bf1.pid 2>/dev/null) 2>/dev/null; echo 1 >/sys/bus/xen/drivers_autoprobe' >/dev/null
  [ -n "$BB" ] && kill -TERM "$BB" 2>/dev/null
  rm -f "$IMG"
}

rm -f "$IMG" "$LOG"
dd if=/dev/zero of="$IMG" bs=1M count=0 seek=$MB 2>/dev/null
BB=""
if ! domu_run "$D" 30 'rm -f /tmp/bf1.out /tmp/bf1.pid; echo 0 >/sys/bus/xen/drivers_autoprobe && cat /sys/bus/xen/drivers_autoprobe' | strip | grep -qx 0; then
  fail handover.kernel-off "cannot set the domU's /sys/bus/xen/drivers_autoprobe to 0"
  finish
  return 0 2>/dev/null || exit 0
fi

xenbus-blkback --image "$IMG" --domid "$D" --devid $DEV --type qdisk --create >>"$LOG" 2>&1 &
BB=$!
now=$(wait_states "$BE" "$FE" 21 60)
if [ "$now" != 21 ]; then
  fail handover.backend-start "backend/frontend $now; $(tail -n 4 "$LOG" | tr '\n' ' ')"
  finish
  return 0 2>/dev/null || exit 0
fi
sleep 1
if [ "$(xenbus_state "$FE/state")" = 1 ] && ! domu_run "$D" 10 "[ -e /sys/bus/xen/devices/vbd-$DEV/driver ]" >/dev/null; then
  pass handover.kernel-blkfront-idle "device/vbd/$DEV created (backend InitWait); the domU's kernel bound no driver to it"
else
  fail handover.kernel-blkfront-idle "frontend state $(xenbus_state "$FE/state"); the kernel may have bound it"
fi

# Instance 1: connects, writes K sectors, then idles (its lines go to a file in the domU).
t0=$(uptime_s)
domu_spawn "$D" "$BF --write $SEED --sectors $K --late-sector $LATE --pid-file /tmp/bf1.pid >/tmp/bf1.out 2>&1"
domu_run "$D" 120 'i=0; while ! grep -q -e "^PASS write" -e "^FAIL" /tmp/bf1.out 2>/dev/null && [ $i -lt 500 ]; do sleep 0.2; i=$((i + 1)); done; grep -e "^PASS write" -e "^FAIL" /tmp/bf1.out' >/tmp/bf1.early 2>&1
now=$(wait_states "$BE" "$FE" 44 10)
if strip </tmp/bf1.early | grep -q "^PASS write" && [ "$now" = 44 ]; then
  pass handover.instance1-connected "instance 1 Connected and wrote $K sectors in $(seconds_since "$t0")s: $(strip </tmp/bf1.early | grep '^PASS write' | cut -d' ' -f3-)"
else
  fail handover.instance1-connected "backend/frontend $now; $(strip </tmp/bf1.early | tr '\n' ' '); $(tail -n 3 "$LOG" | tr '\n' ' ')"
fi
from=$(($(wc -l <"$LOG") + 1))

# Instance 2: takes over while instance 1 runs, verifies, writes a little more, closes.
domu_run "$D" 300 "$BF --take-over --verify $SEED --sectors $K" >/tmp/bf2.out 2>&1
rc=$?
relay blkfront2 /tmp/bf2.out
[ $rc = 0 ] || fail handover.instance2-exit "instance 2 exited with $rc"
sleep 2
# Instance 1 is told to exit (SIGTERM); it reports what its driver saw.
domu_run "$D" 60 'kill -TERM $(cat /tmp/bf1.pid); i=0; while kill -0 $(cat /tmp/bf1.pid) 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done; kill -0 $(cat /tmp/bf1.pid) 2>/dev/null && echo "FAIL instance1-exit still running 20 s after SIGTERM"; cat /tmp/bf1.out' >/tmp/bf1.all 2>&1
strip </tmp/bf1.all | grep -v -e "^PASS connect" -e "^PASS write" >/tmp/bf1.rest
relay blkfront1 /tmp/bf1.rest

# The backend's side of the handover, from its log.
tail -n +"$from" "$LOG" | sed 's/^[^]]*\] //' | while IFS= read -r l; do info "xenbus-blkback: $l"; done
if tail -n +"$from" "$LOG" | grep -aq "frontend-hands-over" && tail -n +"$from" "$LOG" | grep -aq "backend-resets-at-once" &&
  [ "$(tail -n +"$from" "$LOG" | grep -ac 'blkif: serving')" -ge 1 ]; then
  pass handover.backend-log "xenbus-blkback saw frontend-hands-over, reset at once (backend-resets-at-once) and served the new instance"
else
  fail handover.backend-log "the backend's log does not show frontend-hands-over, backend-resets-at-once and a new connection"
fi

# The image, read in dom0: instance 1's pattern, instance 2's, and nothing of the late write.
if [ "$(image_sum 0 $K)" = "$(pattern_sum $SEED 0 $K)" ]; then
  pass handover.image-instance1 "sectors 0-$((K - 1)) of the image hold instance 1's pattern (seed $SEED)"
else
  fail handover.image-instance1 "the image's first $K sectors differ from the pattern of seed $SEED"
fi
if [ "$(image_sum $K $MORE)" = "$(pattern_sum $((SEED + 1)) $K $MORE)" ]; then
  pass handover.image-instance2 "sectors $K-$((K + MORE - 1)) hold instance 2's pattern"
else
  fail handover.image-instance2 "sectors $K-$((K + MORE - 1)) differ from instance 2's pattern"
fi
if [ "$(image_sum $LATE 8)" = "$(dd if=/dev/zero bs=512 count=8 2>/dev/null | sha256sum | awk '{ print $1 }')" ]; then
  pass handover.late-write-dropped "sectors $LATE-$((LATE + 7)) still zero: instance 1's write on its old ring never reached the image"
else
  fail handover.late-write-dropped "sectors $LATE-$((LATE + 7)) were written after the takeover"
fi

# SIGTERM: instance 2 left the device Closed; the program removes both directories and exits 0.
t0=$(uptime_s)
kill -TERM "$BB" 2>/dev/null
i=0
while kill -0 "$BB" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
wait "$BB"
rc=$?
BB=""
if [ $rc = 0 ] && ! xenstore-exists "$BE" 2>/dev/null && ! xenstore-exists "$FE" 2>/dev/null; then
  pass handover.backend-stop "SIGTERM: both directories removed, exit 0 in $(seconds_since "$t0")s"
else
  fail handover.backend-stop "exit $rc; $(tail -n 3 "$LOG" | tr '\n' ' ')"
fi
info "xenbus-blkback $(grep -a ' served ' "$LOG" | tail -n 1 | sed 's/^.*\] //')"
sleep 1
finish
