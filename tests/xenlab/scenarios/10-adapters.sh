# The Xen adapters (xen/evtchn.hpp, xen/grant.hpp, xen/xs_store.hpp) on the real hypervisor:
# xenbus-xen-adapter-tests in dom0 and in the first domU, then xenbus-xenlab-peer's checks between
# the two (an event channel both ways, a granted page mapped, answered and unshared while still
# mapped, xenstore round trips and error mapping in both domains).

D=$XENLAB_DOMU
check xen-adapter-tests.dom0 timeout 120 xenbus-xen-adapter-tests
out=$(domu_run "$D" 120 'xenbus-xen-adapter-tests')
rc=$?
echo "$out" | tail -n 30
if [ $rc = 0 ]; then
  pass xen-adapter-tests.domU "$(echo "$out" | tail -n 1)"
else
  fail xen-adapter-tests.domU "exit $rc: $(echo "$out" | tail -n 1)"
fi

# The domU's side runs in the background and logs to a file; dom0's side waits for it step by step.
if domu_spawn "$D" 'xenbus-xenlab-peer adapters-domu >/tmp/adapters-domu.out 2>&1; echo "exit $?" >>/tmp/adapters-domu.out'; then
  timeout 300 xenbus-xenlab-peer adapters-dom0 --domid "$D" >/tmp/adapters-dom0.out 2>&1
  rc=$?
  relay dom0 /tmp/adapters-dom0.out
  [ $rc = 0 ] || fail peer.adapters-dom0 "exit $rc"
  domu_run "$D" 60 'i=0; while ! grep -q "^exit " /tmp/adapters-domu.out && [ $i -lt 250 ]; do sleep 0.2; i=$((i + 1)); done; cat /tmp/adapters-domu.out' >/tmp/adapters-domu.out
  relay domU /tmp/adapters-domu.out
  grep -q '^  \[dom[0-9]*\] exit 0$' /tmp/adapters-domu.out || fail peer.adapters-domu "$(tail -n 1 /tmp/adapters-domu.out)"
else
  fail peer.adapters-domu "could not start it in the domU"
fi
