# Figures for xenbus-xenstored as dom0's xenstored. (1) A domU with a kernel-blkback disk and a kernel-netback vif, from xl create
# until both devices are Connected on both ends, three times, with dom0's current xenstored.
# (2) Xen's test-xenstore -i 100 in dom0 against xenbus-xenstored, oxenstored and C xenstored,
# each started in turn in this one boot as the init script starts it, two rounds: ratios within
# one boot (under TCG only ratios mean anything). Keep this scenario last: it destroys the domUs
# and restarts dom0's xenstored, and dom0's kernel does not register its watches again.

case $XENLAB_XENSTORED in
  */xenbus-xenstored) cur=ours ;;
  *oxenstored) cur=oxenstored ;;
  *) cur=cxenstored ;;
esac
bin_of() {
  case $1 in
    ours) echo /xenlab/bin/xenbus-xenstored ;;
    oxenstored) echo /usr/lib/xen-4.17/bin/oxenstored ;;
    cxenstored) echo /usr/lib/xen-4.17/bin/xenstored ;;
  esac
}

# ---- (1) boot until Connected
dd if=/dev/zero of=/tmp/fig.img bs=1M count=8 2>/dev/null
times=""
for k in 1 2 3; do
  t=$(uptime_s)
  d=$(domu_create "xsfig$k" "disk = [ 'format=raw, vdev=xvda, access=rw, script=/etc/xen/scripts/xenlab-block, target=/tmp/fig.img' ]" \
    "vif = [ 'mac=00:16:3e:00:02:0$k, bridge=xenbr0, script=/etc/xen/scripts/xenlab-vif' ]")
  if [ -z "$d" ]; then
    fail "figures.boot-$cur" "xl create $k failed"
    continue
  fi
  i=0
  while :; do
    s=$(xenbus_state "/local/domain/$d/device/vbd/51712/state")$(xenbus_state "/local/domain/0/backend/vbd/$d/51712/state")
    s=$s$(xenbus_state "/local/domain/$d/device/vif/0/state")$(xenbus_state "/local/domain/0/backend/vif/$d/0/state")
    [ "$s" = 4444 ] && break
    i=$((i + 1))
    [ $i -lt 300 ] || break
    sleep 0.1
  done
  if [ "$s" = 4444 ]; then
    el=$(seconds_since "$t")
    times="$times $el"
    figure "domu-connected-s.$cur.$k" "$el" s
  else
    fail "figures.boot-$cur" "domU $d: states $s"
  fi
  domu_destroy "$d"
done
if [ -n "$times" ]; then
  med=$(echo "$times" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  figure "domu-connected-s.$cur.median" "$med" s
  pass "figures.boot-$cur" "xl create until vbd and vif Connected:$times s (median $med s) with $cur"
fi

# ---- (2) test-xenstore against each xenstored in turn
for d in $(xl list | awk 'NR > 2 { print $2 }'); do domu_destroy "$d"; done
stop_xs() {
  p=$(cat /run/xenstore.pid 2>/dev/null)
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null
  i=0
  while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  rm -f /run/xenstore.pid
}
start_xs() {
  rm -f /run/xenstored/socket
  "$(bin_of "$1")" --pid-file /run/xenstore.pid >/tmp/xs-start.out 2>&1 || return 1
  i=0
  while ! timeout 5 xenstore-read -s / >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 50 ] || return 1
    sleep 0.2
  done
}
: >/tmp/tx.all
for round in 1 2; do
  for s in ours oxenstored cxenstored; do
    stop_xs
    if ! start_xs "$s"; then
      fail "figures.test-xenstore-$s" "could not start it: $(tail -n 2 /tmp/xs-start.out | tr '\n' ' ')"
      continue
    fi
    if timeout 300 test-xenstore -i 100 >/tmp/tx.out 2>&1; then
      awk -v s="$s" -F: '/avg:/ { n = $1; gsub(/^ +| +$/, "", n); gsub(/ /, "-", n); split($3, a, " "); print s, n, a[1] }' /tmp/tx.out >>/tmp/tx.all
      info "test-xenstore round $round against $s: $(grep -c avg: /tmp/tx.out) tests"
    else
      fail "figures.test-xenstore-$s" "round $round: $(tail -n 2 /tmp/tx.out | tr '\n' ' ')"
    fi
  done
done
# Mean of the rounds per server and test; ratios against ours, and their geometric mean (busybox
# awk has no log or exp: a series for each).
awk '
  function ln(x,  y, y2, s, t, k) { y = (x - 1) / (x + 1); y2 = y * y; t = y; for (k = 1; k < 400; k += 2) { s += t / k; t *= y2 } return 2 * s }
  function ex(v,  n, s, t, k) { while (v > 0.5 || v < -0.5) { v /= 2; n++ } s = 1; t = 1; for (k = 1; k < 25; k++) { t *= v / k; s += t } while (n-- > 0) s *= s; return s }
  { sum[$1 " " $2] += $3; cnt[$1 " " $2]++; tests[$2] = 1 }
  END {
    split("ours oxenstored cxenstored", S, " ")
    for (t in tests) {
      for (k = 1; k <= 3; k++) if (cnt[S[k] " " t]) {
        m[S[k] " " t] = sum[S[k] " " t] / cnt[S[k] " " t]
        printf "XENLAB FIGURE test-xenstore-ns.%s.%s %.0f ns\n", S[k], t, m[S[k] " " t]
      }
      for (k = 2; k <= 3; k++) if (m["ours " t] > 0 && m[S[k] " " t] > 0) {
        r = m[S[k] " " t] / m["ours " t]
        printf "XENLAB FIGURE test-xenstore-ratio.%s-over-ours.%s %.2f x\n", S[k], t, r
        lg[S[k]] += ln(r); nr[S[k]]++
      }
    }
    for (k = 2; k <= 3; k++) if (nr[S[k]])
      printf "XENLAB FIGURE test-xenstore-ratio.%s-over-ours.geomean %.2f x\n", S[k], ex(lg[S[k]] / nr[S[k]])
  }' /tmp/tx.all | sort
n=$(awk '{ print $1 }' /tmp/tx.all | sort -u | wc -l)
if [ "$n" = 3 ]; then
  pass figures.test-xenstore "Xen's test-xenstore against all three xenstoreds, 2 rounds each"
else
  fail figures.test-xenstore "only $n xenstored(s) measured"
fi
# Leave the lab's own xenstored running for the end of the boot.
stop_xs
start_xs "$cur" || fail figures.restart "could not start $cur again"
