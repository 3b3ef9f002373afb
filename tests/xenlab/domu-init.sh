#!/bin/sh
# A lab domU's /init: mounts, loads the Xen frontend and device modules, then serves as an agent
# for dom0: each command dom0 writes to <home>/data/xenlab/cmd ("<seq>|<shell command>", or
# "<seq>|&<command>" for one left running) runs here, framed on the console, which xenconsoled
# logs in dom0:
#   XENLAB-OUT-BEGIN <seq>
#   ...output...
#   XENLAB-OUT-END <seq> <exit status>
export PATH=/xenlab/bin:/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
for m in $(cat /lib/modules/xenlab/order); do
  insmod "/lib/modules/xenlab/$m.ko" 2>/tmp/insmod.err || echo "xenlab domU: insmod $m: $(cat /tmp/insmod.err)"
done
ip link set lo up
echo "xenlab domU: $(uname -r) $(cat /sys/hypervisor/guest_type 2>/dev/null) up after $(cut -d' ' -f1 /proc/uptime)s"
# Created by this domain, so that it owns the node and can read what dom0 writes there.
xenstore-write data/xenlab/cmd "0|true" data/xenlab/ready 1 || echo "xenlab domU: cannot write data/xenlab"
last=0
xenstore-watch data/xenlab/cmd | while read -r _; do
  c=$(xenstore-read data/xenlab/cmd) || continue
  seq=${c%%|*}
  cmd=${c#*|}
  [ "$seq" -gt "$last" ] 2>/dev/null || continue
  last=$seq
  case $cmd in
    "&"*)
      (sh -c "${cmd#&}" </dev/null 2>&1 | sed "s/^/[domU $seq] /") &
      rc=0
      echo "XENLAB-OUT-BEGIN $seq"
      ;;
    *)
      sh -c "$cmd" </dev/null >/tmp/out 2>&1
      rc=$?
      echo "XENLAB-OUT-BEGIN $seq"
      cat /tmp/out
      # The end marker must start a line of its own.
      [ -s /tmp/out ] && [ "$(tail -c 1 /tmp/out | od -An -tx1 | tr -d ' ')" != 0a ] && echo
      ;;
  esac
  echo "XENLAB-OUT-END $seq $rc"
done
echo "xenlab domU: the agent's watch ended"
exec sleep 2147483647
