# Dom0's xenstored and its guests. The domU's xenstore tools in its own home and
# elsewhere; a hostile guest program (xenbus-xsring-lab in a second domU, through the kernel's
# /dev/xen/xenbus) against the quotas and other domains' nodes; a paused guest that never reads
# while watch events pile up for it; a hostile guest kernel's ring indices and oversized message,
# written into its page from dom0. Through all of it dom0 and the honest first domU keep working.
# Written for any xenstored: what xenbus-xenstored promises is checked when it is dom0's
# xenstored, and reported as INFO for Xen's own daemons.

D=$XENLAB_DOMU
XS_PID=$(cat /run/xenstore.pid 2>/dev/null)
case $XENLAB_XENSTORED in */xenbus-xenstored) ours=1 ;; *) ours=0 ;; esac
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$XS_PID/status" 2>/dev/null || echo 0; }
# promise NAME STATUS DETAIL: a check of xenbus-xenstored; for another xenstored, what it did.
promise() {
  if [ $ours = 1 ]; then
    if [ "$2" = 0 ]; then pass "$1" "$3"; else fail "$1" "$3"; fi
  else
    info "$1 [$XENLAB_XENSTORED]: $([ "$2" = 0 ] && echo 'as xenbus-xenstored' || echo 'differs'): $3"
  fi
}
# dom0_ok / honest_ok CHECK: dom0's and the first domU's xenstore still answer.
dom0_ok() {
  if timeout 10 xenstore-write /local/domain/0/xslab/alive "$1" && [ "$(timeout 10 xenstore-read /local/domain/0/xslab/alive)" = "$1" ]; then
    pass "$1.dom0" "dom0's requests answered"
  else
    fail "$1.dom0" "dom0's xenstore does not answer"
  fi
}
honest_ok() {
  if [ "$(domu_run "$D" 30 "xenstore-write data/own $1 && xenstore-read data/own" | tail -n 1)" = "  [dom$D] $1" ]; then
    pass "$1.honest-guest" "the first domU's requests answered"
  else
    fail "$1.honest-guest" "the first domU's xenstore does not answer"
  fi
}
# relay_promises WHO FILE: xenbus-xsring-lab's checks, which are xenbus-xenstored's promises: as
# checks for it, as INFO lines for Xen's daemons (whose quotas answer EQUOTA or E2BIG instead).
relay_promises() {
  if [ $ours = 1 ]; then
    relay "$1" "$2"
  else
    sed -E "s/^((  \[dom[0-9]+\] )?)(PASS|FAIL) /\1INFO [$XENLAB_XENSTORED] \3 /" "$2" >"$2.info"
    relay "$1" "$2.info"
  fi
}
info "xenstored: $XENLAB_XENSTORED, pid $XS_PID, RSS $(rss_kib) KiB"
figure "xenstored-rss-start" "$(rss_kib)" KiB

# ---- The domU's own xenstore tools (through /dev/xen/xenbus and its kernel's ring).
if domu_run "$D" 30 'xenstore-write data/own ok && xenstore-read data/own' | grep -q '\] ok$'; then
  pass domu-tools.own-home "xenstore-write and xenstore-read in <home>/data"
else
  fail domu-tools.own-home "the domU cannot use its own home"
fi
for probe in 'xenstore-read /local/domain/0/name' 'xenstore-ls /local/domain/0' 'xenstore-write /tool/x y' \
  'xenstore-write /local/domain/0/x y' 'xenstore-rm /local/domain/0/name' 'xenstore-list /local/domain'; do
  if domu_run "$D" 30 "$probe" >/tmp/probe.out 2>&1; then
    fail domu-tools.refused "allowed: $probe"
  else
    pass domu-tools.refused "refused: $probe ($(tail -n 1 /tmp/probe.out | sed 's/^ *\[dom[0-9]*\] //'))"
  fi
done
if [ -s "$(domu_console "$D")" ]; then
  pass console "xenconsoled logs the first domU's console ($(wc -l <"$(domu_console "$D")") lines)"
else
  fail console "no console log for domU $D"
fi

# ---- A hostile guest program in a second domU, through its kernel's /dev/xen/xenbus.
H=$(domu_create xshostile)
if [ -z "$H" ]; then
  fail hostile.create "no second domU"
else
  domu_run "$H" 240 'xenbus-xsring-lab guest-quotas' >/tmp/quotas.out
  relay_promises hostile /tmp/quotas.out
  domu_run "$H" 120 "xenbus-xsring-lab guest-probe $D" >/tmp/probe.out
  relay_promises hostile /tmp/probe.out
  dom0_ok after-quotas
  honest_ok after-quotas

  # ---- A guest that never reads: paused, with 100 watches on a node dom0 writes 300 times.
  domu_spawn "$H" 'xenbus-xsring-lab guest-watch 100 600'
  i=0
  while ! tr -d '\r' <"$(domu_console "$H")" | grep -aq 'watches set on data/flood' && [ $i -lt 300 ]; do
    sleep 0.2
    i=$((i + 1))
  done
  xenbus-xsring-lab dom0-writes 200 /local/domain/0/xslab/t dom0-write-us.baseline >/tmp/base.out
  relay dom0 /tmp/base.out
  base=$(awk '/^FIGURE/ { print $3 }' /tmp/base.out)
  rss0=$(rss_kib)
  xl pause "$H"
  xenbus-xsring-lab dom0-writes 300 "/local/domain/$H/data/flood" dom0-write-us.flooding-paused-guest >/tmp/flood.out
  relay dom0 /tmp/flood.out
  xenbus-xsring-lab dom0-writes 200 /local/domain/0/xslab/t dom0-write-us.beside-stuck-guest >/tmp/during.out
  relay dom0 /tmp/during.out
  during=$(awk '/^FIGURE/ { print $3 }' /tmp/during.out)
  rss1=$(rss_kib)
  figure xenstored-rss-growth.30000-events-unread $((rss1 - rss0)) KiB
  promise never-reading.memory "$([ $((rss1 - rss0)) -le 8192 ] && echo 0 || echo 1)" \
    "RSS $rss0 -> $rss1 KiB with 30000 watch events for a paused guest"
  promise never-reading.dom0-speed "$(awk -v a="$base" -v b="$during" 'BEGIN { exit !(b <= 3 * a) }' && echo 0 || echo 1)" \
    "dom0 writes ${base} us before, ${during} us beside the stuck guest"
  xl unpause "$H"
  if domu_run "$H" 60 'xenstore-read domid' | grep -q "\] $H$"; then
    pass never-reading.resumes "unpaused, the guest's requests are answered again"
  else
    fail never-reading.resumes "the guest did not come back after unpause"
  fi
  dom0_ok after-flood
  honest_ok after-flood

  # ---- A hostile guest kernel: ring indices out of range. Its page is written from dom0 (what a
  # guest kernel can write), then an event for its agent's watch makes the server look at it.
  xenbus-xsring-lab scribble "$H" req-prod-ahead >/tmp/scribble.out
  relay dom0 /tmp/scribble.out
  timeout 10 xenstore-write "/local/domain/$H/data/xenlab/cmd" "0|true"
  sleep 2
  err=$(xenbus-xsring-lab peek "$H" | tee /tmp/peek.out | sed -n 's/^error=//p')
  relay dom0 /tmp/peek.out
  promise ring.index-out-of-range "$([ "$err" = 2 ] && echo 0 || echo 1)" \
    "error field of the guest's page: $err (2, XENSTORE_ERROR_RINGIDX: its connection stopped)"
  dom0_ok after-bad-index
  honest_ok after-bad-index
  t=$(uptime_s)
  domu_destroy "$H"
  i=0
  while timeout 5 xenstore-read "/local/domain/$H/domid" >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
  if xl list "$H" >/dev/null 2>&1; then
    fail ring.hostile-destroyed "domain $H still listed $(seconds_since "$t")s after xl destroy"
  else
    pass ring.hostile-destroyed "xl destroy of the stopped guest: gone in $(seconds_since "$t")s"
  fi
fi

# ---- A hostile guest kernel: a message longer than XENSTORE_PAYLOAD_MAX.
H2=$(domu_create xshostile2)
if [ -z "$H2" ]; then
  fail hostile2.create "no domU"
else
  xenbus-xsring-lab scribble "$H2" oversized >/tmp/scribble.out
  relay dom0 /tmp/scribble.out
  timeout 10 xenstore-write "/local/domain/$H2/data/xenlab/cmd" "0|true"
  sleep 2
  err=$(xenbus-xsring-lab peek "$H2" | tee /tmp/peek.out | sed -n 's/^error=//p')
  relay dom0 /tmp/peek.out
  promise ring.oversized-message "$([ "$err" = 3 ] && echo 0 || echo 1)" \
    "error field of the guest's page: $err (3, XENSTORE_ERROR_PROTO: its connection stopped)"
  dom0_ok after-oversized
  honest_ok after-oversized
  domu_destroy "$H2"
fi
if [ "$(timeout 10 xenstore-list /local/domain | sort -n | tr '\n' ' ')" = "0 $D " ]; then
  pass domains-cleaned "only dom0 and domU $D left in /local/domain"
else
  fail domains-cleaned "/local/domain lists: $(timeout 10 xenstore-list /local/domain | tr '\n' ' ')"
fi
figure "xenstored-rss-end" "$(rss_kib)" KiB
