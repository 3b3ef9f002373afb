# Notifications over a real interdomain event channel: a frontend in the first domU produces
# requests on a ring in pages it grants, a backend in dom0 maps them and answers. Our rings
# (default, moderated final_check(k) and polled consumers) and the C macros of <xen/io/ring.h> in
# their standard usage run in turn in the same session: requests/s and kicks per request each way
# at 1 and 32 requests in flight, then the one-way stream. Every figure comes from QEMU's TCG
# emulation: absolute rates mean nothing, ratios ours/C within this run do.

D=$XENLAB_DOMU
RUN="--seconds 1 --rounds 2 --loads 1,32 --streams blkif:0,netif_tx:0"
info "ring runs: $RUN (figures under TCG: only the ratios ours/C mean anything)"
if domu_spawn "$D" "xenbus-xenlab-peer ring-front $RUN >/tmp/ring-front.out 2>&1; echo \"exit \$?\" >>/tmp/ring-front.out"; then
  timeout 300 xenbus-xenlab-peer ring-back --domid "$D" >/tmp/ring-back.out 2>&1
  rc=$?
  relay rings /tmp/ring-back.out
  [ $rc = 0 ] || fail rings.ring-back "exit $rc"
  domu_run "$D" 60 'i=0; while ! grep -q "^exit " /tmp/ring-front.out && [ $i -lt 250 ]; do sleep 0.2; i=$((i + 1)); done; cat /tmp/ring-front.out' >/tmp/ring-front.out
  relay rings-domU /tmp/ring-front.out
  grep -q '^  \[dom[0-9]*\] exit 0$' /tmp/ring-front.out || fail rings.ring-front "$(tail -n 1 /tmp/ring-front.out)"
else
  fail rings.ring-front "could not start it in the domU"
fi
