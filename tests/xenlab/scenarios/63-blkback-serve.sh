# xenbus-blkback --serve as dom0's qdisk backend: one process serves every disk that appears
# under backend/qdisk, each from the image its `params` names. This script is the toolstack and
# writes what libxl writes for a qdisk disk (both directories, libxl's permissions, `params` as
# "raw:PATH", the frontend's state last), then waits for InitWait as libxl does; it unplugs as
# libxl does (online 0, backend Closing, wait for Closed, remove both directories). (libxl
# itself hot-plugs a qdisk disk only into a domain with a running device model: `xl
# block-attach ... backendtype=qdisk` fails with "device model required but not running" in
# libxl__dm_check_start for a PV guest without QEMU.) Two disks at once, data checked by
# checksum both ways; one unplugged while the other keeps serving, then plugged again at the same
# device id; a disk whose image format we do not serve gets its reason in the error node after
# bounded retries, the others untouched; SIGTERM closes the rest at once.

D=$XENLAB_DOMU
IMG1=/dev/shm/xenbus-serve-1.img
IMG2=/dev/shm/xenbus-serve-2.img
LOG=/tmp/blkback-serve.log
strip() { sed 's/^  \[dom[0-9]*\] //'; }
guest_disk() { domu_run "$D" 60 "i=0; while [ ! -b $1 ] && [ \$i -lt 150 ]; do sleep 0.2; i=\$((i + 1)); done; [ -b $1 ]" >/dev/null; }
guest_gone() { domu_run "$D" 60 "i=0; while [ -b $1 ] && [ \$i -lt 150 ]; do sleep 0.2; i=\$((i + 1)); done; [ ! -b $1 ]" >/dev/null; }
# devid_of VDEV: xvda is 51712, each letter 16 more.
devid_of() { echo $((51712 + ($(printf %d "'${1#xvd}") - 97) * 16)); }
# attach VDEV IMAGE [FORMAT]: both directories as libxl writes them; waits for our InitWait.
attach() {
  id=$(devid_of "$1")
  be=/local/domain/0/backend/qdisk/$D/$id fe=/local/domain/$D/device/vbd/$id
  xenstore-write "$be/frontend" "$fe" "$be/frontend-id" "$D" "$be/online" 1 "$be/removable" 0 \
    "$be/bootable" 1 "$be/params" "${3:-raw}:$2" "$be/mode" w "$be/dev" "$1" "$be/device-type" disk \
    "$be/state" 1 2>/tmp/attach.err && xenstore-chmod -r "$be" n0 r"$D" 2>>/tmp/attach.err &&
    xenstore-write "$fe/backend" "$be" "$fe/backend-id" 0 "$fe/virtual-device" "$id" \
      "$fe/device-type" disk 2>>/tmp/attach.err && xenstore-chmod -r "$fe" n"$D" r0 2>>/tmp/attach.err &&
    xenstore-write "$fe/state" 1 2>>/tmp/attach.err || return 1
  [ "${3:-raw}" = raw ] || return 0 # nothing will serve it: no wait
  n=0
  while :; do
    case $(xenbus_state "$be/state") in 2 | 3 | 4) return 0 ;; esac
    n=$((n + 1))
    [ $n -lt 50 ] || return 1
    sleep 0.2
  done
}
# detach VDEV: unplugs as libxl does, then removes both directories.
detach() {
  id=$(devid_of "$1")
  be=/local/domain/0/backend/qdisk/$D/$id fe=/local/domain/$D/device/vbd/$id
  xenstore-write "$be/online" 0 "$be/state" 5 || return 1
  now=$(wait_states "$be" "$fe" 66 20)
  xenstore-rm "$fe"
  xenstore-rm "$be"
  [ "$now" = 66 ]
}
# guest_write DEV MIB: random data onto the guest's disk, prints its sha256.
guest_write() {
  domu_run "$D" 300 "dd if=/dev/urandom bs=1M count=$2 2>/dev/null | tee $1 | sha256sum; sync" | strip | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }'
}
guest_read() {
  domu_run "$D" 300 "echo 3 >/proc/sys/vm/drop_caches; dd if=$1 bs=1M count=$2 iflag=direct 2>/dev/null | sha256sum" | strip | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }'
}
image_sum() { dd if="$1" bs=1M count="$2" 2>/dev/null | sha256sum | awk '{ print $1 }'; }

rm -f "$IMG1" "$IMG2" "$LOG"
dd if=/dev/zero of="$IMG1" bs=1M count=0 seek=32 2>/dev/null
dd if=/dev/zero of="$IMG2" bs=1M count=0 seek=32 2>/dev/null
xenbus-blkback --serve --type qdisk --close-timeout-ms 5000 >>"$LOG" 2>&1 &
BB=$!
sleep 0.5
if ! kill -0 "$BB" 2>/dev/null; then
  fail serve.start "$(tail -n 3 "$LOG" | tr '\n' ' ')"
  rm -f "$IMG1" "$IMG2"
  return 0 2>/dev/null || exit 0
fi

# Two disks from libxl.
since=$(uptime_s)
if attach xvdl "$IMG1" && attach xvdm "$IMG2" && guest_disk /dev/xvdl && guest_disk /dev/xvdm; then
  pass serve.attach "two qdisk disks plugged: both served, xvdl and xvdm in the domU $(seconds_since "$since")s after the first attach"
else
  fail serve.attach "$(tr '\n' ' ' </tmp/attach.err); $(tail -n 4 "$LOG" | tr '\n' ' ')"
fi
info "xenbus-blkback --serve: $(grep -a 'params\|serving' "$LOG" | sed 's/^[^]]*\] //' | tail -n 2 | tr '\n' ' ')"
s1=$(guest_write /dev/xvdl 8)
s2=$(guest_write /dev/xvdm 8)
if [ -n "$s1" ] && [ "$s1" = "$(image_sum "$IMG1" 8)" ] && [ -n "$s2" ] && [ "$s2" = "$(image_sum "$IMG2" 8)" ] && [ "$s1" != "$s2" ]; then
  pass serve.data "8 MiB written to each disk arrive in its own image"
else
  fail serve.data "xvdl $s1 / $(image_sum "$IMG1" 8), xvdm $s2 / $(image_sum "$IMG2" 8)"
fi

# One detached: its backend goes, the other keeps serving; attached again at the same vdev.
g=$(devid_of xvdl)
if detach xvdl && guest_gone /dev/xvdl && [ "$(guest_read /dev/xvdm 8)" = "$s2" ]; then
  pass serve.detach "xvdl unplugged: closed, directories removed, its backend dropped; xvdm still served and intact"
else
  fail serve.detach "states $now; $(tail -n 4 "$LOG" | tr '\n' ' ')"
fi
if attach xvdl "$IMG1" && guest_disk /dev/xvdl && [ "$(guest_read /dev/xvdl 8)" = "$s1" ]; then
  pass serve.reattach "xvdl attached again at the same vdev: served again, its data intact"
else
  fail serve.reattach "$(tail -n 2 /tmp/attach.err | tr '\n' ' '); $(tail -n 4 "$LOG" | tr '\n' ' ')"
fi

# A format we do not serve: params "qcow2:PATH" is refused after bounded retries, with the
# reason in the error node; the others keep serving.
attach xvdn "$IMG1" qcow2 >/dev/null 2>&1
i=$(devid_of xvdn)
err=""
n=0
while [ -z "$err" ] && [ $n -lt 50 ]; do
  err=$(xenstore-read "/local/domain/0/error/backend/qdisk/$D/$i/error" 2>/dev/null)
  n=$((n + 1))
  sleep 0.2
done
if echo "$err" | grep -q "format" && [ "$(guest_read /dev/xvdm 8)" = "$s2" ]; then
  pass serve.refused "qcow2 disk refused: error node '$err'; xvdm still served"
else
  fail serve.refused "error node '$err' (device $i); $(tail -n 4 "$LOG" | tr '\n' ' ')"
fi
xenstore-rm "/local/domain/$D/device/vbd/$i"
xenstore-rm "/local/domain/0/backend/qdisk/$D/$i"
xenstore-rm "/local/domain/0/error/backend/qdisk/$D/$i"

# SIGTERM: both served disks close at once; the program exits 0.
since=$(uptime_s)
kill -TERM "$BB"
i=0
while kill -0 "$BB" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
wait "$BB"
rc=$?
gs=$(xenbus_state "/local/domain/0/backend/qdisk/$D/$(devid_of xvdl)/state")
hs=$(xenbus_state "/local/domain/0/backend/qdisk/$D/$(devid_of xvdm)/state")
if [ $rc = 0 ]; then
  pass serve.stop "SIGTERM: exit 0 in $(seconds_since "$since")s, backends $gs and $hs"
else
  fail serve.stop "exit $rc, backends $gs and $hs; $(tail -n 4 "$LOG" | tr '\n' ' ')"
fi
sed 's/^[^]]*\] //' "$LOG" | grep -a "served\|error\|refus" | tail -n 6 | while IFS= read -r l; do info "xenbus-blkback --serve: $l"; done
detach xvdl >/dev/null 2>&1
detach xvdm >/dev/null 2>&1
rm -f "$IMG1" "$IMG2"
