# Baseline: the first domU's kernel devices carry data both ways, and our xenstore client passes
# its checks against dom0's real xenstored over the socket.
if domu_run "$XENLAB_DOMU" 30 'head -c 21 /dev/xvda' | grep -q XENLAB-DISK-SIGNATURE; then
  pass kernel-vbd-read "the domU reads dom0's RAM disk through blkfront and the kernel's blkback"
else
  fail kernel-vbd-read "the domU did not read the signature"
fi
if domu_run "$XENLAB_DOMU" 30 'echo written-by-domU | dd of=/dev/xvda bs=512 seek=1 conv=fsync 2>/dev/null' &&
  dd if=/dev/ram0 bs=512 skip=1 count=1 2>/dev/null | grep -q written-by-domU; then
  pass kernel-vbd-write "dom0 sees the domU's write on its RAM disk"
else
  fail kernel-vbd-write "dom0 did not see the domU's write"
fi
if domu_run "$XENLAB_DOMU" 30 'xenstore-read domid; xenstore-ls device >/dev/null' >/dev/null; then
  pass domu-xenstore "the domU's xenstore tools work through /dev/xen/xenbus"
else
  fail domu-xenstore "xenstore tools in the domU failed"
fi
check xsclient-vs-dom0-xenstored timeout 60 xenbus-xsclient-check
