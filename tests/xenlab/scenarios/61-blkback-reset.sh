# xenbus-blkback through the two resets a real Linux kernel drives.
#
# (a) Rebind: in the first domU (PV), xen-blkfront is unbound from a disk we serve and bound
#     again. Linux's unbind frees the ring and writes Closed (blkfront has no allow_rebind, so
#     xenbus_dev_remove() closes the node); our backend must follow to Closed and drop its
#     mappings. Linux 6.1 then keeps the rebound instance Closed whatever the backend does:
#     its probe leaves the device's remembered state at Closed, and blkback_changed()
#     renegotiates only on a backend that says Connected, which a backend cannot honestly say
#     without a ring. The same steps run against the kernel's blkback on a copy of the image,
#     so the lab shows both backends end the same way. The toolstack's way out (the device
#     removed and created again, what our backend service handles as a re-created device) then
#     reconnects, and the data written before the unbind is read back intact.
# (b) Linux's xenbus_reset_state(), what a kexec'd or kdump kernel runs at boot (HVM and PVH
#     guests): a PVH domU is created paused; the toolstack (this script) writes both nodes of
#     its disk as a previous kernel and our backend would have left them, Connected, with the
#     previous kernel's ring-ref and event channel; xenbus-blkback starts on that device, finds
#     its own node Connected from a previous instance and closes it without touching the old
#     grants; the domU boots, its kernel walks the frontend Closing -> Closed -> Initialising,
#     waiting up to 5 s for the backend at each step; we follow, and the new kernel reads what
#     the first domU wrote in (a).

D=$XENLAB_DOMU
DEV=51776 # xvde
KDEV=xvdf
IMG=/dev/shm/xenbus-reset.img
KIMG=/dev/shm/xenbus-reset-kernel.img
MB=64
BE=/local/domain/0/backend/qdisk/$D/$DEV
FE=/local/domain/$D/device/vbd/$DEV
LOG=/tmp/blkback-reset.log
strip() { sed 's/^  \[dom[0-9]*\] //'; }
# wait_states BE FE WANT SECONDS: waits until "<be><fe>" reads WANT; prints the last reading.
wait_states() {
  i=0
  while :; do
    now=$(xenbus_state "$1/state")$(xenbus_state "$2/state")
    [ "$now" = "$3" ] && break
    i=$((i + 1))
    [ $i -lt $(($4 * 5)) ] || break
    sleep 0.2
  done
  echo "$now"
}
# show_log LABEL FROM: our backend's log from line FROM on, as info lines.
show_log() { tail -n +"$2" "$LOG" | sed 's/^[^]]*\] //' | while IFS= read -r l; do info "$1: $l"; done; }

rm -f "$IMG" "$KIMG" "$LOG"
dd if=/dev/zero of="$IMG" bs=1M count=0 seek=$MB 2>/dev/null

BB=""
start_blkback() {
  xenbus-blkback --image "$IMG" --domid "$D" --devid $DEV --type qdisk --create "$@" >>"$LOG" 2>&1 &
  BB=$!
  [ "$(wait_states "$BE" "$FE" 44 60)" = 44 ]
}
stop_blkback() {
  kill -TERM "$BB" 2>/dev/null
  i=0
  while kill -0 "$BB" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
  wait "$BB"
}
guest_disk() { domu_run "$1" 60 "i=0; while [ ! -b $2 ] && [ \$i -lt 150 ]; do sleep 0.2; i=\$((i + 1)); done; [ -b $2 ]" >/dev/null; }

# --- (a) rebind -------------------------------------------------------------------------------
if ! start_blkback || ! guest_disk "$D" /dev/xvde; then
  fail rebind.connect "states $(xenbus_state "$BE/state")/$(xenbus_state "$FE/state"); $(tail -n 4 "$LOG" | tr '\n' ' ')"
  kill "$BB" 2>/dev/null
  rm -f "$IMG"
  return 0 2>/dev/null || exit 0
fi
domu_run "$D" 300 'dd if=/dev/urandom bs=1M count=8 2>/dev/null | tee /dev/xvde | sha256sum; sync' >/tmp/guest.out 2>&1
gsum=$(strip </tmp/guest.out | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }')
hsum=$(dd if="$IMG" bs=1M count=8 2>/dev/null | sha256sum | awk '{ print $1 }')
if [ -n "$gsum" ] && [ "$gsum" = "$hsum" ]; then
  pass rebind.written "8 MiB written by blkfront, synced, in the image"
else
  fail rebind.written "guest '$gsum', image $hsum"
fi

from=$(($(wc -l <"$LOG") + 1))
since=$(uptime_s)
domu_run "$D" 30 "echo vbd-$DEV >/sys/bus/xen/drivers/vbd/unbind" >/dev/null
now=$(wait_states "$BE" "$FE" 66 20)
if [ "$now" = 66 ] && ! domu_run "$D" 10 '[ -b /dev/xvde ]' >/dev/null &&
  tail -n +"$from" "$LOG" | grep -aq 'frontend-unbound' && ! tail -n +"$from" "$LOG" | grep -aq 'fatal'; then
  pass rebind.unbind-followed "blkfront unbound: it wrote Closed (rule frontend-unbound), our backend followed to Closed in $(seconds_since "$since")s and dropped the ring, no error node"
else
  fail rebind.unbind-followed "states backend/frontend $now after the unbind"
fi
show_log "xenbus-blkback at the unbind" "$from"

from=$(($(wc -l <"$LOG") + 1))
domu_run "$D" 30 "echo vbd-$DEV >/sys/bus/xen/drivers/vbd/bind" >/dev/null
now=$(wait_states "$BE" "$FE" 44 10)
if [ "$now" = 44 ] && guest_disk "$D" /dev/xvde; then
  ours=reconnected
  pass rebind.rebound "the rebound blkfront reconnected to our backend"
else
  ours="stayed $now"
  info "the rebound blkfront did not renegotiate with our backend: backend/frontend $now after 10 s"
fi
show_log "xenbus-blkback at the bind" "$from"

# The kernel's blkback, the same steps, on a copy of the image.
cp "$IMG" "$KIMG"
kernel="not run"
if timeout 120 xl block-attach "$D" "format=raw, vdev=$KDEV, access=rw, script=/etc/xen/scripts/xenlab-block, target=$KIMG" 2>/tmp/attach.err &&
  guest_disk "$D" /dev/$KDEV; then
  kdev=$(domu_run "$D" 10 "cat /sys/block/$KDEV/device/nodename 2>/dev/null || readlink /sys/block/$KDEV/device" | strip | sed 's,.*/,,')
  KFE=/local/domain/$D/device/vbd/$kdev
  KBE=$(xenstore-read "$KFE/backend")
  domu_run "$D" 30 "echo vbd-$kdev >/sys/bus/xen/drivers/vbd/unbind" >/dev/null
  k1=$(wait_states "$KBE" "$KFE" 66 20)
  domu_run "$D" 30 "echo vbd-$kdev >/sys/bus/xen/drivers/vbd/bind" >/dev/null
  k2=$(wait_states "$KBE" "$KFE" 44 10)
  [ "$k2" = 44 ] && kernel=reconnected || kernel="stayed $k2"
  info "the kernel's blkback (vbd $kdev): backend/frontend $k1 after the unbind, $k2 10 s after the bind"
  timeout 60 xl block-detach "$D" $KDEV >/dev/null 2>&1 || timeout 60 xl block-detach -f "$D" $KDEV >/dev/null 2>&1 || info "xl block-detach $KDEV failed"
else
  info "the kernel's blkback comparison was not run: $(tail -n 2 /tmp/attach.err | tr '\n' ' ')"
fi
rm -f "$KIMG"
if [ "$ours" = "$kernel" ] || [ "$ours" = reconnected ]; then
  pass rebind.like-kernel-blkback "after unbind and bind: ours $ours, the kernel's blkback $kernel"
else
  fail rebind.like-kernel-blkback "after unbind and bind: ours $ours, the kernel's blkback $kernel"
fi

# The toolstack's way out: the device removed (our program unplugs it and removes both
# directories on SIGTERM) and created again at the same path; the new blkfront instance
# connects and reads the data back.
if [ "$ours" != reconnected ]; then
  stop_blkback || fail rebind.unplug "exit $?"
  domu_run "$D" 30 'i=0; while [ -e /sys/bus/xen/devices/vbd-'$DEV' ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done' >/dev/null
  if ! start_blkback || ! guest_disk "$D" /dev/xvde; then
    fail rebind.recreated "states $(xenbus_state "$BE/state")/$(xenbus_state "$FE/state"); $(tail -n 4 "$LOG" | tr '\n' ' ')"
  fi
fi
rsum=$(domu_run "$D" 120 'echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/xvde bs=1M count=8 iflag=direct 2>/dev/null | sha256sum' | strip | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }')
if [ -n "$rsum" ] && [ "$rsum" = "$gsum" ]; then
  pass rebind.data-intact "the 8 MiB written before the unbind read back intact by the new blkfront instance"
else
  fail rebind.data-intact "read back '$rsum', written $gsum"
fi
stop_blkback || fail rebind.stop "exit $?"

# --- (b) xenbus_reset_state in a PVH guest ------------------------------------------------------
R=$(XENLAB_DOMU_TYPE=pvh XENLAB_DOMU_PAUSED=1 domu_create xenlab-reset 2>/tmp/create.err)
if [ -z "$R" ]; then
  fail reset.create "$(cat /tmp/create.err)"
  rm -f "$IMG"
  return 0 2>/dev/null || exit 0
fi
RDEV=51712
RBE=/local/domain/0/backend/qdisk/$R/$RDEV
RFE=/local/domain/$R/device/vbd/$RDEV
# Both nodes as a previous kernel and our backend would have left them (libxl's keys and
# permissions, then what the connection added), in one transaction per directory.
{
  xenstore-write "$RBE/frontend" "$RFE" "$RBE/frontend-id" "$R" "$RBE/online" 1 "$RBE/removable" 0 \
    "$RBE/bootable" 1 "$RBE/type" raw "$RBE/mode" w "$RBE/params" "$IMG" "$RBE/dev" xvd \
    "$RBE/device-type" disk "$RBE/sectors" $((MB * 2048)) "$RBE/sector-size" 512 "$RBE/info" 0 \
    "$RBE/feature-flush-cache" 1 "$RBE/state" 4 &&
    xenstore-chmod -r "$RBE" n0 r"$R" &&
    xenstore-write "$RFE/backend" "$RBE" "$RFE/backend-id" 0 "$RFE/virtual-device" $RDEV \
      "$RFE/device-type" disk "$RFE/ring-ref" 9 "$RFE/event-channel" 7 "$RFE/protocol" x86_64-abi \
      "$RFE/state" 4 &&
    xenstore-chmod -r "$RFE" n"$R" r0
} 2>/tmp/ts.err || fail reset.toolstack "$(cat /tmp/ts.err)"
from=$(($(wc -l <"$LOG") + 1))
xenbus-blkback --image "$IMG" --domid "$R" --devid $RDEV --type qdisk >>"$LOG" 2>&1 &
BB=$!
sleep 1
show_log "xenbus-blkback, the domU still paused" "$from"
from=$(($(wc -l <"$LOG") + 1))
since=$(uptime_s)
timeout 30 xl unpause "$R"
if domu_wait_ready "$R" 2>/tmp/ready.err && [ "$(wait_states "$RBE" "$RFE" 44 60)" = 44 ] && guest_disk "$R" /dev/xvda; then
  pass reset.connected "the PVH domU's blkfront Connected to our backend $(seconds_since "$since")s after unpause"
else
  fail reset.connected "$(cat /tmp/ready.err) states $(xenbus_state "$RBE/state")/$(xenbus_state "$RFE/state")"
fi
show_log "xenbus-blkback at the new kernel's boot" "$from"
domu_run "$R" 30 'dmesg | grep -i -e xenbus -e reconnect -e "timed out"' >/tmp/dmesg.out 2>&1
strip </tmp/dmesg.out | while IFS= read -r l; do info "PVH domU kernel: $l"; done
if strip </tmp/dmesg.out | grep -q "triggering reconnect on .*$RDEV" &&
  strip </tmp/dmesg.out | grep -q "reconnect done on .*$RDEV" &&
  ! strip </tmp/dmesg.out | grep -q "timed out"; then
  pass reset.kernel-walk "the new kernel ran xenbus_reset_state on the disk: triggering reconnect, reconnect done, no step timed out"
else
  fail reset.kernel-walk "the kernel's log does not show the reset walk completing"
fi
if grep -a "previous instance" "$LOG" | tail -n 1 | grep -q . && tail -n +"$from" "$LOG" | grep -aq "Closed" &&
  tail -n +"$from" "$LOG" | grep -aq "InitWait"; then
  pass reset.backend-followed "our backend closed the previous instance's node and followed the walk to InitWait"
else
  fail reset.backend-followed "see the backend's log above"
fi
rsum=$(domu_run "$R" 120 'dd if=/dev/xvda bs=1M count=8 iflag=direct 2>/dev/null | sha256sum' | strip | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }')
if [ -n "$rsum" ] && [ "$rsum" = "$gsum" ]; then
  pass reset.data-intact "the new kernel reads the 8 MiB the first domU wrote, intact"
else
  fail reset.data-intact "read '$rsum', written $gsum"
fi
domu_destroy "$R" >/dev/null 2>&1
kill -TERM "$BB" 2>/dev/null
i=0
while kill -0 "$BB" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
kill -KILL "$BB" 2>/dev/null
wait "$BB" 2>/dev/null
xenstore-rm "$RBE" 2>/dev/null
rm -f "$IMG"
