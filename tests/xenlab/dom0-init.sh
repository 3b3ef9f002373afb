#!/bin/sh
# The lab's dom0 /init (busybox sh): brings up the Xen tool stack as Debian's init script would,
# boots the first domU with a kernel-blkback disk and a kernel-netback vif, runs the scenarios
# (/xenlab/scenarios/*.sh, each with a time limit), prints XENLAB-END and powers off.
# Output goes to hvc0, through Xen's console to the serial log the host reads.
export PATH=/xenlab/bin:/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# udev would create these; Xen's hotplug locking and some tools stat them.
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
mkdir -p /run/xen /run/xenstored /run/xen-hotplug /run/lock /var/log/xen/console /tmp
. /xenlab/config.sh
. /xenlab/lib.sh
: >"$XENLAB_RESULTS"
complete=yes

finish() {
  n_pass=$(grep -c '^PASS' "$XENLAB_RESULTS")
  n_fail=$(grep -c '^FAIL' "$XENLAB_RESULTS")
  info "dom0 memory: $(free -m | awk '/Mem:/ { print "used " $3 " MiB of " $2 }'), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "XENLAB-END passed=$n_pass failed=$n_fail complete=$complete uptime=$(uptime_s)"
  if [ "$XENLAB_SHELL" = 1 ]; then
    echo "xenlab: dom0 shell (poweroff -f ends the lab)"
    setsid cttyhack sh
  fi
  sync
  poweroff -f
}

info "dom0 up: $(uname -r) $(cat /sys/hypervisor/guest_type) at $(uptime_s)s"
for m in $(cat /lib/modules/xenlab/order); do
  case $m in
    brd) args="rd_nr=1 rd_size=32768" ;;
    *) args="" ;;
  esac
  insmod "/lib/modules/xenlab/$m.ko" $args 2>/tmp/insmod.err || info "insmod $m: $(cat /tmp/insmod.err)"
done
mount -t xenfs xenfs /proc/xen
[ "$(cat /proc/xen/capabilities 2>/dev/null)" = control_d ] || { fail dom0 "no control_d in /proc/xen/capabilities"; complete=no; finish; }

# xenstored as Debian's /etc/init.d/xen starts it: XENSTORED_ROOTDIR exported, a pid file, and the
# daemon forks by itself. A socket first: libxenstore falls back to /dev/xen/xenbus without one,
# which blocks in dom0 until something serves dom0's own ring.
case $XENLAB_XENSTORED in
  /*) xsbin=$XENLAB_XENSTORED ;;
  *) xsbin=/usr/lib/xen-4.17/bin/$XENLAB_XENSTORED ;;
esac
export XENSTORED_ROOTDIR=/run/xenstored
t=$(uptime_s)
"$xsbin" --pid-file /run/xenstore.pid >/tmp/xenstored.out 2>&1
rc=$?
i=0
while [ ! -S /run/xenstored/socket ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if [ $rc = 0 ] && timeout 10 xenstore-read -s / >/dev/null 2>&1; then
  pass xenstored "$XENLAB_XENSTORED up in $(seconds_since "$t")s, pid $(cat /run/xenstore.pid 2>/dev/null)"
else
  fail xenstored "$XENLAB_XENSTORED (exit $rc): $(tail -n 3 /tmp/xenstored.out | tr '\n' ' ')"
  complete=no
  finish
fi
timeout 60 xen-init-dom0 >/tmp/init-dom0.out 2>&1 || fail xen-init-dom0 "$(tail -n 3 /tmp/init-dom0.out | tr '\n' ' ')"
xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console || fail xenconsoled "did not start"
timeout 30 xl info >/tmp/xl-info 2>&1 && info "xl info: $(grep -E '^(xen_version|nr_cpus|total_memory|free_memory)' /tmp/xl-info | sed 's/ *: */=/' | tr '\n' ' ')"

# What the first domU's kernel devices use: a RAM disk with a signature, and a bridge.
echo XENLAB-DISK-SIGNATURE | dd of=/dev/ram0 bs=512 conv=fsync 2>/dev/null
brctl addbr xenbr0 && echo 0 >/sys/class/net/xenbr0/bridge/forward_delay && ip link set xenbr0 up

t=$(uptime_s)
XENLAB_DOMU=$(domu_create xenlab1 \
  "disk = [ 'format=raw, vdev=xvda, access=rw, script=/etc/xen/scripts/xenlab-block, target=/dev/ram0' ]" \
  "vif = [ 'mac=00:16:3e:00:00:01, bridge=xenbr0, script=/etc/xen/scripts/xenlab-vif' ]")
if [ -z "$XENLAB_DOMU" ]; then
  fail first-domu "xl create or its agent failed"
  complete=no
  finish
fi
export XENLAB_DOMU
# The kernel's vbd and vif reach Connected on both ends.
i=0
while :; do
  vbd_fe=$(xenbus_state "/local/domain/$XENLAB_DOMU/device/vbd/51712/state")
  vbd_be=$(xenbus_state "/local/domain/0/backend/vbd/$XENLAB_DOMU/51712/state")
  vif_fe=$(xenbus_state "/local/domain/$XENLAB_DOMU/device/vif/0/state")
  vif_be=$(xenbus_state "/local/domain/0/backend/vif/$XENLAB_DOMU/0/state")
  [ "$vbd_fe$vbd_be$vif_fe$vif_be" = 4444 ] && break
  i=$((i + 1))
  [ $i -lt 300 ] || break
  sleep 0.2
done
if [ "$vbd_fe$vbd_be$vif_fe$vif_be" = 4444 ]; then
  pass first-domu "domid $XENLAB_DOMU, kernel vbd and vif Connected $(seconds_since "$t")s after xl create"
else
  fail first-domu "states vbd $vbd_fe/$vbd_be vif $vif_fe/$vif_be"
fi

# The scenarios, in name order, each in its own shell with a time limit.
for s in /xenlab/scenarios/*.sh; do
  name=$(basename "$s" .sh)
  case $name in $XENLAB_ONLY) ;; *) continue ;; esac
  t=$(uptime_s)
  info "scenario $name"
  timeout "${XENLAB_SCENARIO_LIMIT:-400}" sh -c ". /xenlab/config.sh; . /xenlab/lib.sh; . $s"
  rc=$?
  if [ $rc != 0 ]; then
    fail "scenario-$name" "ended with status $rc$([ $rc = 143 ] && echo ' (time limit)')"
  fi
  info "scenario $name took $(seconds_since "$t")s"
done

for d in $(xl list | awk 'NR > 2 { print $2 }'); do domu_destroy "$d"; done
finish
