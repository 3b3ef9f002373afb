# XENLAB_CYCLES (--cycles, default 20) create/destroy cycles of a domU with a netback vif:
# each reaches Connected, is destroyed and leaves nothing behind in the store; dom0's xenstored's
# memory (VmRSS) must not grow over the cycles when it is xenbus-xenstored (INFO for Xen's daemons).

N=${XENLAB_CYCLES:-20}
XS_PID=$(cat /run/xenstore.pid 2>/dev/null)
case $XENLAB_XENSTORED in */xenbus-xenstored) ours=1 ;; *) ours=0 ;; esac
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$XS_PID/status" 2>/dev/null || echo 0; }
rss_list=""
connected=0
t_all=$(uptime_s)
i=1
while [ $i -le "$N" ]; do
  t=$(uptime_s)
  d=$(domu_create "xscycle$i" "vif = [ 'mac=00:16:3e:00:01:$(printf %02x $i), bridge=xenbr0, script=/etc/xen/scripts/xenlab-vif' ]")
  if [ -z "$d" ]; then
    fail cycles.create "cycle $i: xl create failed"
    break
  fi
  j=0
  while [ "$(xenbus_state "/local/domain/$d/device/vif/0/state")$(xenbus_state "/local/domain/0/backend/vif/$d/0/state")" != 44 ] && [ $j -lt 150 ]; do
    sleep 0.2
    j=$((j + 1))
  done
  [ $j -lt 150 ] && connected=$((connected + 1))
  domu_destroy "$d"
  j=0
  while xl list "$d" >/dev/null 2>&1 && [ $j -lt 100 ]; do sleep 0.2; j=$((j + 1)); done
  j=0
  while timeout 5 xenstore-read "/local/domain/$d/domid" >/dev/null 2>&1 && [ $j -lt 100 ]; do sleep 0.2; j=$((j + 1)); done
  r=$(rss_kib)
  rss_list="$rss_list $r"
  info "cycle $i: domid $d, $(seconds_since "$t")s, xenstored RSS $r KiB"
  i=$((i + 1))
done
done_cycles=$((i - 1))
if [ "$connected" = "$N" ]; then
  pass cycles.connected "$N of $N domUs' vifs reached Connected (in $(seconds_since "$t_all")s)"
else
  fail cycles.connected "$connected of $N domUs' vifs reached Connected"
fi
if [ "$(timeout 10 xenstore-list /local/domain | sort -n | tr '\n' ' ')" = "0 $XENLAB_DOMU " ]; then
  pass cycles.store-clean "no home of a destroyed domU left in /local/domain"
else
  fail cycles.store-clean "/local/domain lists: $(timeout 10 xenstore-list /local/domain | tr '\n' ' ')"
fi
if [ "$done_cycles" -ge 4 ]; then
  # Growth: the last half's highest RSS against the RSS after the second cycle (the first ones
  # warm up allocator caches).
  set -- $rss_list
  second=$2
  top=$(echo "$rss_list" | tr ' ' '\n' | sed -n "$((done_cycles / 2 + 2)),\$p" | sort -n | tail -n 1)
  figure xenstored-rss-after-cycle-2 "$second" KiB
  figure xenstored-rss-last-half-max "$top" KiB
  grow=$((top - second))
  if [ $ours = 1 ]; then
    if [ $grow -le 256 ]; then
      pass cycles.memory "RSS after cycle 2: $second KiB, highest in cycles $((done_cycles / 2 + 1))-$done_cycles: $top KiB (+$grow)"
    else
      fail cycles.memory "RSS grew by $grow KiB: $rss_list"
    fi
  else
    info "cycles.memory [$XENLAB_XENSTORED]: RSS $rss_list KiB"
  fi
fi
