# Our devices beside the kernel's. The first domU has a kernel-blkback disk (xvda)
# and a kernel-netback vif, both Connected. Our toolstack creates two vdemo devices in it, our
# backend (a long-lived xenbus-xen-demo serve in dom0) and frontends in the guest connect and
# stream, then our toolstack unplugs and removes them. The kernel's vbd and vif stay Connected
# (state 4 at both ends) throughout, their xenstore nodes do not change, and the disk still reads.
# (lib.sh's functions set i, d, t, start... as globals: ours have other names.)
D=$XENLAB_DOMU
kernel_states() {
  echo "vbd $(xenbus_state "/local/domain/$D/device/vbd/51712/state")/$(xenbus_state "/local/domain/0/backend/vbd/$D/51712/state")" \
    "vif $(xenbus_state "/local/domain/$D/device/vif/0/state")/$(xenbus_state "/local/domain/0/backend/vif/$D/0/state")"
}
kernel_nodes() {
  for p in "/local/domain/$D/device/vbd" "/local/domain/$D/device/vif" "/local/domain/0/backend/vbd/$D" "/local/domain/0/backend/vif/$D"; do
    timeout 10 xenstore-ls -f "$p" 2>&1
  done
}
# The first 256 KiB of xvda, read in the guest through blkfront and the kernel's blkback.
disk_sum() { domu_run "$D" 60 'dd if=/dev/xvda bs=4096 count=64 2>/dev/null | md5sum' | awk '{ print $2 }'; }
ours_states() {
  for n in 1 2; do
    printf 'vdemo/%s %s/%s ' "$n" "$(xenbus_state "/local/domain/$D/device/vdemo/$n/state")" \
      "$(xenbus_state "/local/domain/0/backend/vdemo/$D/$n/state")"
  done
}

before=$(kernel_states)
kernel_nodes >/tmp/kernel-nodes.before
sum_before=$(disk_sum)
if [ "$before" = "vbd 4/4 vif 4/4" ] && [ -n "$sum_before" ]; then
  pass coexist-kernel-before "$before, xvda reads (md5 $sum_before)"
else
  fail coexist-kernel-before "$before, xvda md5 '$sum_before'"
fi

xenbus-xen-demo serve --who backend --lifetime 350 >/tmp/serve-coexist.out 2>&1 &
serve=$!
for n in 1 2; do
  check "coexist-create-$n" timeout 30 xenbus-xen-demo create --domu "$D" --devid "$n"
  domu_spawn "$D" "xenbus-xen-demo frontend --domid $D --devid $n --who coexist-$n --requests 1000000 --lifetime 300" ||
    fail "coexist-frontend-$n" "domu_spawn failed"
done
t_create=$(uptime_s)
tries=0
while [ "$(ours_states)" != "vdemo/1 4/4 vdemo/2 4/4 " ] ||
  ! timeout 5 xenstore-exists "/local/domain/$D/data/xenbus-demo/result/coexist-2" ||
  ! timeout 5 xenstore-exists "/local/domain/$D/data/xenbus-demo/result/coexist-1"; do
  tries=$((tries + 1))
  [ $tries -lt 600 ] || break
  sleep 0.2
done
during=$(kernel_states)
ours=$(ours_states)
if [ "$ours" = "vdemo/1 4/4 vdemo/2 4/4 " ]; then
  pass coexist-ours-connected "${ours}Connected $(seconds_since "$t_create")s after create"
else
  fail coexist-ours-connected "$ours"
fi
for n in 1 2; do
  r=$(timeout 5 xenstore-read "/local/domain/$D/data/xenbus-demo/result/coexist-$n" 2>/dev/null)
  rate=$(echo "$r" | awk 'NF == 3 && $2 > 0 && $3 == 0 { printf "%.0f", $1 / $2 }')
  if [ -n "$rate" ]; then
    pass "coexist-ours-stream-$n" "$(echo "$r" | awk '{ print $1 " requests in " $2 " s, " $3 " wrong" }')"
    figure "coexist-vdemo-$n-requests" "$rate" "requests/s (two devices beside blkback and netback, TCG)"
  else
    fail "coexist-ours-stream-$n" "result '$r'"
  fi
done
sum_during=$(disk_sum)
if [ "$during" = "vbd 4/4 vif 4/4" ] && [ "$sum_during" = "$sum_before" ]; then
  pass coexist-kernel-during "$during while ours are $ours; xvda reads the same"
else
  fail coexist-kernel-during "$during while ours are $ours; xvda md5 '$sum_during'"
fi

for n in 1 2; do
  check "coexist-remove-$n" timeout 90 xenbus-xen-demo remove --domu "$D" --devid "$n" --timeout 60
done
if timeout 5 xenstore-exists "/local/domain/$D/device/vdemo" || timeout 5 xenstore-exists "/local/domain/0/backend/vdemo/$D"; then
  fail coexist-ours-removed "a vdemo directory is left"
else
  pass coexist-ours-removed "no vdemo directory left in the guest or in dom0"
fi

after=$(kernel_states)
kernel_nodes >/tmp/kernel-nodes.after
sum_after=$(disk_sum)
if [ "$after" = "vbd 4/4 vif 4/4" ] && [ "$sum_after" = "$sum_before" ]; then
  pass coexist-kernel-after "$after; xvda reads the same (md5 $sum_after)"
else
  fail coexist-kernel-after "$after; xvda md5 '$sum_after' (before '$sum_before')"
fi
if cmp -s /tmp/kernel-nodes.before /tmp/kernel-nodes.after; then
  pass coexist-kernel-nodes "$(wc -l </tmp/kernel-nodes.after) nodes of the kernel's vbd and vif unchanged"
else
  fail coexist-kernel-nodes "$(diff /tmp/kernel-nodes.before /tmp/kernel-nodes.after | head -n 5 | tr '\n' ' ')"
fi

kill "$serve"
wait "$serve"
rc=$?
sed 's/^/    /' /tmp/serve-coexist.out | tail -n 60
if [ $rc = 0 ]; then
  pass coexist-backend "$(tail -n 1 /tmp/serve-coexist.out | sed 's/^ *[0-9.]* ms *//')"
else
  fail coexist-backend "exit $rc"
fi
info "the guest's frontends (times on the domU's clock):"
tr -d '\r' <"$(domu_console "$D")" | grep -a -E '^\[domU [0-9]+\] .*coexist-[12] ' | sed 's/^/    /' | tail -n 40
