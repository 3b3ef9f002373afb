# xenbus-blkback against Linux's xen-blkfront. In dom0 the program serves an image file on
# tmpfs to the first domU as xvdb, from backend/qdisk/<domid>/51728: no kernel driver claims
# qdisk, so the kernel's blkback leaves the device to us (the frontend stays device/vbd/51728).
# The program plays the toolstack (--create: both directories, libxl's permissions). In the
# domU: mke2fs, mount, files with known checksums, sync, unmount; the image is checked from
# dom0 (loop mount, the same checksums); the domU drops its caches, remounts and checks again;
# then a large dd each way, verified by checksum; then sequential direct-I/O throughput against
# ours and against the kernel's blkback over a loop device on the same image (the ratio is the
# figure that counts under TCG); last, SIGTERM: the program unplugs the device, blkfront lets
# it go, both directories are removed.

D=$XENLAB_DOMU
DEV=51728
IMG=/dev/shm/xenbus-blkback.img
MB=128
BE=/local/domain/0/backend/qdisk/$D/$DEV
FE=/local/domain/$D/device/vbd/$DEV
LOG=/tmp/blkback.log
strip() { sed 's/^  \[dom[0-9]*\] //'; }
# guest_dd 'dd arguments': runs dd in the domU, timed by its /proc/uptime; prints "rc seconds".
guest_dd() {
  domu_run "$D" 300 "t0=\$(cut -d' ' -f1 /proc/uptime); dd $1 2>/dev/null; rc=\$?; t1=\$(cut -d' ' -f1 /proc/uptime); echo \"\$rc \$t0 \$t1\"" |
    strip | tail -n 1 | awk '{ printf "%s %.2f", $1, $3 - $2 }'
}
# rate BYTES "rc seconds": MB/s, or "?" when dd failed or took no measurable time.
rate() { echo "$2" | awk -v b="$1" '$1 == 0 && $2 > 0 { printf "%.2f", b / $2 / 1048576; ok = 1 } END { if (!ok) print "?" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "?" }'; }

rm -f "$IMG" "$LOG"
dd if=/dev/zero of="$IMG" bs=1M count=0 seek=$MB 2>/dev/null

BB=""
start_blkback() {
  rm -f /tmp/blkback.pid
  xenbus-blkback --image "$IMG" --domid "$D" --devid $DEV --type qdisk --create --pid-file /tmp/blkback.pid "$@" >>"$LOG" 2>&1 &
  BB=$!
  i=0
  while :; do
    [ "$(xenbus_state "$BE/state")$(xenbus_state "$FE/state")" = 44 ] && return 0
    kill -0 "$BB" 2>/dev/null || return 1
    i=$((i + 1))
    [ $i -lt 300 ] || return 1
    sleep 0.2
  done
}
stop_blkback() {
  kill -TERM "$BB" 2>/dev/null
  i=0
  while kill -0 "$BB" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
  wait "$BB"
}

t=$(uptime_s)
if start_blkback; then
  pass blkback.connect "blkfront and xenbus-blkback Connected $(seconds_since "$t")s after start; $(grep -a 'blkif: serving' "$LOG" | tail -n 1 | sed 's/.*blkif: //')"
else
  fail blkback.connect "states $(xenbus_state "$BE/state")/$(xenbus_state "$FE/state"); $(tail -n 5 "$LOG" | tr '\n' ' ')"
  kill "$BB" 2>/dev/null
  return 0 2>/dev/null || exit 0
fi
# The kernel's blkback has no device of ours: nothing under backend/vbd for it, no driver bound.
if [ -z "$(xenstore-list "/local/domain/0/backend/vbd/$D" 2>/dev/null | grep -x $DEV)" ] &&
  [ ! -e "/sys/bus/xen-backend/devices/qdisk-$D-$DEV/driver" ]; then
  pass blkback.kernel-blkback-idle "no backend/vbd/$D/$DEV, qdisk-$D-$DEV bound to no kernel driver"
else
  fail blkback.kernel-blkback-idle "the kernel's blkback sees the device"
fi
size=$(domu_run "$D" 60 'i=0; while [ ! -b /dev/xvdb ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done; cat /sys/block/xvdb/size' | strip)
if [ "$size" = $((MB * 2048)) ]; then
  pass blkback.guest-disk "the domU sees /dev/xvdb, $size sectors"
else
  fail blkback.guest-disk "the domU's xvdb: '$size'"
fi

# A file system with known checksums, written, synced, unmounted.
domu_run "$D" 300 'mke2fs /dev/xvdb >/tmp/mkfs.out 2>&1 || { tail -n 3 /tmp/mkfs.out; exit 1; }; mkdir -p /mnt/b && mount -t ext2 /dev/xvdb /mnt/b && cd /mnt/b || exit 2; dd if=/dev/urandom of=small bs=1k count=7 2>/dev/null; dd if=/dev/urandom of=big bs=1M count=8 2>/dev/null; mkdir dir; for i in 1 2 3 4 5; do dd if=/dev/urandom of=dir/f$i bs=4k count=$((i * 3)) 2>/dev/null; done; sha256sum small big dir/f1 dir/f2 dir/f3 dir/f4 dir/f5 >/tmp/sums && cp /tmp/sums SUMS && cd / && sync && umount /mnt/b && cat /tmp/sums'>/tmp/guest.out
rc=$?
strip </tmp/guest.out | grep -E '^[0-9a-f]{64}  ' >/tmp/guest.sums
if [ $rc = 0 ] && [ "$(wc -l </tmp/guest.sums)" = 7 ]; then
  pass blkback.mkfs-write "mke2fs, 7 files written with their sha256, sync, umount"
else
  fail blkback.mkfs-write "exit $rc: $(tail -n 3 /tmp/guest.out | tr '\n' ' ')"
fi
# The image as dom0 sees it: loop-mount it read-only and check the same sums.
mkdir -p /mnt/v
if mount -o loop,ro -t ext2 "$IMG" /mnt/v 2>/tmp/mount.err; then
  if (cd /mnt/v && sha256sum -c /tmp/guest.sums >/tmp/verify.out 2>&1) && cmp -s /mnt/v/SUMS /tmp/guest.sums; then
    pass blkback.image-verified-in-dom0 "the 7 files' sha256 match on the image file, read by dom0's own ext4 driver"
  else
    fail blkback.image-verified-in-dom0 "$(grep -v ': OK$' /tmp/verify.out | head -n 3 | tr '\n' ' ')"
  fi
  umount /mnt/v
else
  fail blkback.image-verified-in-dom0 "cannot loop-mount the image: $(cat /tmp/mount.err)"
fi
# Back in the guest, with nothing cached: remount and check.
if domu_run "$D" 300 'sync; echo 3 >/proc/sys/vm/drop_caches; mount -t ext2 /dev/xvdb /mnt/b && cd /mnt/b && sha256sum -c SUMS; rc=$?; cd /; umount /mnt/b; exit $rc' >/tmp/guest.out; then
  pass blkback.remount-verified "$(strip </tmp/guest.out | grep -c ': OK$') files OK after a remount with the caches dropped"
else
  fail blkback.remount-verified "$(strip </tmp/guest.out | grep -v ': OK$' | head -n 3 | tr '\n' ' ')"
fi

# A large dd each way, raw, verified by checksum.
N=24
# (tee: the domU has too little memory to keep the pattern in a file)
domu_run "$D" 300 "dd if=/dev/urandom bs=1M count=$N 2>/dev/null | tee /dev/xvdb | sha256sum; sync" >/tmp/guest.out 2>&1
gsum=$(strip </tmp/guest.out | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }')
hsum=$(dd if="$IMG" bs=1M count=$N 2>/dev/null | sha256sum | awk '{ print $1 }')
if [ -n "$gsum" ] && [ "$gsum" = "$hsum" ]; then
  pass blkback.dd-guest-to-image "$N MiB written by the domU arrive intact in the image"
else
  fail blkback.dd-guest-to-image "guest '$gsum', image $hsum; $(tail -n 4 /tmp/guest.out | tr '\n' ' ')"
fi
dd if=/dev/urandom of=/tmp/pat0 bs=1M count=$N 2>/dev/null
hsum=$(sha256sum </tmp/pat0 | awk '{ print $1 }')
dd if=/tmp/pat0 of="$IMG" bs=1M seek=32 conv=notrunc 2>/dev/null
rm -f /tmp/pat0
domu_run "$D" 300 "echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/xvdb bs=1M skip=32 count=$N iflag=direct 2>/dev/null | sha256sum" >/tmp/guest.out 2>&1
gsum=$(strip </tmp/guest.out | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }')
if [ -n "$gsum" ] && [ "$gsum" = "$hsum" ]; then
  pass blkback.dd-image-to-guest "$N MiB written into the image by dom0 read intact by the domU"
else
  fail blkback.dd-image-to-guest "image $hsum, guest $gsum"
fi

# Sequential throughput with direct I/O in the guest, 1 MiB and 4 KiB blocks: ours (grants
# mapped, persistent when blkfront offers it), ours with --grant-copy, then the kernel's blkback.
T=96
# measure LABEL DEVICE: the four figures blkback.LABEL.*, also left in W R W4 R4.
measure() {
  W=$(rate $((T << 20)) "$(guest_dd "if=/dev/zero of=$2 bs=1M count=$T oflag=direct")")
  R=$(rate $((T << 20)) "$(guest_dd "if=$2 of=/dev/null bs=1M count=$T iflag=direct")")
  W4=$(rate $((16 << 20)) "$(guest_dd "if=/dev/zero of=$2 bs=4k count=4096 oflag=direct")")
  R4=$(rate $((16 << 20)) "$(guest_dd "if=$2 of=/dev/null bs=4k count=4096 iflag=direct")")
  figure "blkback.$1.seq-write-1M" "$W" MB/s
  figure "blkback.$1.seq-read-1M" "$R" MB/s
  figure "blkback.$1.seq-write-4k" "$W4" MB/s
  figure "blkback.$1.seq-read-4k" "$R4" MB/s
}
wait_guest_disk() { domu_run "$D" 60 "i=0; while [ ! -b $1 ] && [ \$i -lt 150 ]; do sleep 0.2; i=\$((i + 1)); done; [ -b $1 ]" >/dev/null; }
measure ours /dev/xvdb
ours="$W $R $W4 $R4"
info "xenbus-blkback: $(grep -a 'blkif: serving' "$LOG" | tail -n 1 | sed 's/.*blkif: //')"

# SIGTERM: the program unplugs (online 0, backend Closing), blkfront releases the unmounted disk,
# the program removes both directories and exits 0.
t=$(uptime_s)
stop_blkback
rc=$?
gone=$(domu_run "$D" 30 'i=0; while [ -b /dev/xvdb ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done; [ -b /dev/xvdb ] && echo present || echo gone' | strip)
if [ $rc = 0 ] && [ "$gone" = gone ] && ! xenstore-exists "$BE" 2>/dev/null && ! xenstore-exists "$FE" 2>/dev/null; then
  pass blkback.unplug "SIGTERM: unplugged, xvdb gone from the domU, both directories removed, exit 0 in $(seconds_since "$t")s"
else
  fail blkback.unplug "exit $rc, xvdb $gone, $(tail -n 3 "$LOG" | tr '\n' ' ')"
fi
info "xenbus-blkback $(grep -a ' served ' "$LOG" | tail -n 1 | sed 's/^.*\] //')"
info "xenbus-blkback $(grep -a ' time: ' "$LOG" | tail -n 1 | sed 's/^.*\] //')"

# Ours again with grant copy instead of mapping (no persistent grants then): the other data
# path, measured on the same workload.
if start_blkback --grant-copy && wait_guest_disk /dev/xvdb; then
  measure ours-copy /dev/xvdb
  copy="$W $R $W4 $R4"
  info "xenbus-blkback --grant-copy: $(grep -a 'blkif: serving' "$LOG" | tail -n 1 | sed 's/.*blkif: //')"
  stop_blkback || fail blkback.copy-stop "exit $?"
  info "xenbus-blkback --grant-copy $(grep -a ' served ' "$LOG" | tail -n 1 | sed 's/^.*\] //')"
else
  fail blkback.copy-start "$(tail -n 3 "$LOG" | tr '\n' ' ')"
  stop_blkback
fi

# The kernel's blkback on the same image through a loop device, same workload.
if timeout 120 xl block-attach "$D" "format=raw, vdev=xvdc, access=rw, script=/etc/xen/scripts/xenlab-block, target=$IMG" 2>/tmp/attach.err &&
  wait_guest_disk /dev/xvdc; then
  measure kernel /dev/xvdc
  kernel="$W $R $W4 $R4"
  # ratios LABEL "w r w4 r4": ours over the kernel's, figure by figure.
  ratios() {
    i=0
    for name in seq-write-1M seq-read-1M seq-write-4k seq-read-4k; do
      i=$((i + 1))
      figure "blkback.ratio.$1.$name" "$(ratio "$(echo "$2" | cut -d' ' -f$i)" "$(echo "$kernel" | cut -d' ' -f$i)")" x
    done
  }
  ratios ours "$ours"
  [ -n "${copy:-}" ] && ratios ours-copy "$copy"
  timeout 120 xl block-detach "$D" xvdc >/dev/null 2>&1 || info "xl block-detach xvdc failed"
else
  info "the kernel's blkback comparison was not run: $(tail -n 2 /tmp/attach.err | tr '\n' ' ')"
fi
# Multi-page rings with Linux: blkfront unbound from every vbd (each bound device holds a
# reference on the module), reloaded with max_ring_page_order=1, and a new device (xvdd)
# served by us on a 2-page ring; 16 MiB each way, checked by checksum. (A larger ring makes
# blkfront's persistent-grant pool outgrow this 128 MiB domU.)
DEV=51760
BE=/local/domain/0/backend/qdisk/$D/$DEV
FE=/local/domain/$D/device/vbd/$DEV
if domu_run "$D" 120 'for d in /sys/bus/xen/drivers/vbd/vbd-*; do echo "${d##*/}" >/sys/bus/xen/drivers/vbd/unbind; done; rmmod xen_blkfront && insmod /lib/modules/xenlab/xen-blkfront.ko max_ring_page_order=1' >/tmp/guest.out &&
  start_blkback && wait_guest_disk /dev/xvdd; then
  domu_run "$D" 300 "dd if=/dev/urandom bs=1M count=16 2>/dev/null | tee /dev/xvdd | sha256sum; sync; echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/xvdd bs=64k count=256 iflag=direct 2>/dev/null | sha256sum" >/tmp/guest.out 2>&1
  sums=$(strip </tmp/guest.out | grep -E '^[0-9a-f]{64} ' | awk '{ print $1 }' | sort -u | wc -l)
  hsum=$(dd if="$IMG" bs=1M count=16 2>/dev/null | sha256sum | awk '{ print $1 }')
  serving=$(grep -a 'blkif: serving' "$LOG" | tail -n 1 | sed 's/.*blkif: serving //')
  if [ "$sums" = 1 ] && strip </tmp/guest.out | grep -q "^$hsum " && echo "$serving" | grep -q '64 slots'; then
    pass blkback.multi-page-ring "blkfront with a 2-page ring: $serving; 16 MiB written and read back intact"
  else
    fail blkback.multi-page-ring "$serving; $(strip </tmp/guest.out | tr '\n' ' ')"
  fi
  stop_blkback || fail blkback.multi-page-stop "exit $?"
  info "xenbus-blkback $(grep -a ' served ' "$LOG" | tail -n 1 | sed 's/^.*\] //')"
else
  fail blkback.multi-page-ring "$(strip </tmp/guest.out | tail -n 2 | tr '\n' ' '); $(tail -n 3 "$LOG" | tr '\n' ' '); domU: $(domu_run "$D" 30 'ls /dev | grep xvd | tr "\n" " "; dmesg | tail -n 4' | strip | tr '\n' ' ')"
  [ -n "$BB" ] && kill "$BB" 2>/dev/null
fi
rm -f "$IMG"
