# The two-domain demo on a real Xen. Our toolstack and our backend run in dom0 over
# the real xenstored, evtchn and gntdev; our frontends run in the first domU over its kernel's
# /dev/xen/xenbus, gntalloc and evtchn. The story is xenbus-demo's (examples/demo_story.hpp):
# startup, requests streamed and checked, the seed's handover to a new frontend process while the
# old one stays alive and quiet, unplug, close and removal, with who drove each change.
D=$XENLAB_DOMU
timeout 10 xenstore-rm "/local/domain/$D/data/xenbus-demo" 2>/dev/null
if ! domu_spawn "$D" "xenbus-xen-demo guest --domid $D --requests 1000000 --lifetime 300"; then
  fail xen-demo-guest "the guest's launcher did not start"
fi
t_story=$(uptime_s)
timeout 300 xenbus-xen-demo story --domu "$D" --patience 20 >/tmp/xen-demo.out 2>&1
rc=$?
sed 's/^/    /' /tmp/xen-demo.out
if [ $rc = 0 ]; then
  pass xen-demo "$(grep -a '^PASSED' /tmp/xen-demo.out) in $(seconds_since "$t_story")s"
else
  fail xen-demo "exit $rc: $(grep -a '\[FAIL\]' /tmp/xen-demo.out | sed 's/ *\[FAIL\] *//' | tr -s ' ' | tr '\n' ';')"
fi
# Requests per second of each frontend in the guest, from its result node: "<answered> <s> <wrong>".
for who in frontend-1 frontend-2; do  # each keeps its result; the old one reports quiet apart
  r=$(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/result/$who" 2>/dev/null)
  rate=$(echo "$r" | awk 'NF == 3 && $2 > 0 && $3 == 0 { printf "%.0f", $1 / $2 }')
  if [ -n "$rate" ]; then
    figure "xen-demo-$who-requests" "$rate" "requests/s ($(echo "$r" | awk '{ print $1 " in " $2 " s" }'), TCG)"
  fi
done
# The launcher ends when dom0 says so and leaves every frontend's exit status.
tries=0
while [ "$(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/launcher" 2>/dev/null)" != done ] && [ $tries -lt 100 ]; do
  sleep 0.2
  tries=$((tries + 1))
done
exits=$(for w in frontend-1 frontend-2; do echo "$w=$(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/exit/$w" 2>/dev/null)"; done | tr '\n' ' ')
if [ "$(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/launcher" 2>/dev/null)" = done ] &&
  [ "$exits" = "frontend-1=0 frontend-2=0 " ]; then
  pass xen-demo-guest "launcher done, exit statuses $exits"
else
  fail xen-demo-guest "launcher $(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/launcher" 2>&1), exits $exits"
fi
# The guest's side of the log (its clock), from the domU's console.
info "the guest's frontends and launcher (times on the domU's clock):"
tr -d '\r' <"$(domu_console "$D")" | grep -a -E '^\[domU [0-9]+\] .*(launcher|frontend-[12]) ' | sed 's/^/    /' | tail -n 80
if timeout 5 xenstore-exists "/local/domain/$D/device/vdemo" || timeout 5 xenstore-exists "/local/domain/0/backend/vdemo/$D"; then
  fail xen-demo-removed "our device's directories are still there"
else
  pass xen-demo-removed "no vdemo directory left in the guest or in dom0"
fi
