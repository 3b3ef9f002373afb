# A frontend domain destroyed while Connected. ONE long-lived backend process in dom0
# (xenbus-xen-demo serve) serves a new minimal domU (no disk, no vif) in every cycle: our
# toolstack creates device vdemo/0, the guest's frontend connects and streams, then `xl destroy`
# kills the guest while Connected. The backend must notice (the frontend's home vanishes), release
# every mapping and event channel, write nothing under the dead domain's home (no re-created
# /local/domain/<dead>, no error node), and our toolstack removes what is left. Over the cycles the
# backend's descriptors (/proc/PID/fd) and grant mappings (/dev/xen/gntdev lines of
# /proc/PID/maps) must not grow. XENLAB_CYCLES (scripts/xenlab.sh --cycles, default 20) cycles;
# each takes about one domain creation under TCG. (lib.sh's functions set i, d, t, start, seq...
# as globals: this scenario's own variables have other names.)
cycles=${XENLAB_CYCLES:-20}
xenbus-xen-demo serve --who backend --lifetime 3600 >/tmp/serve-destroy.out 2>&1 &
serve=$!
fds() { ls "/proc/$serve/fd" 2>/dev/null | wc -l; }
maps() { grep -c /dev/xen/gntdev "/proc/$serve/maps" 2>/dev/null; }
wait_for() {  # wait_for TRIES COMMAND...: runs COMMAND every 0.2 s until it succeeds, at most TRIES times
  tries=$1
  shift
  n=0
  while ! "$@"; do
    n=$((n + 1))
    [ $n -lt "$tries" ] || return 1
    sleep 0.2
  done
}
sleep 1
fd0=$(fds)
map0=$(maps)
info "backend pid $serve: $fd0 descriptors, $map0 gntdev mappings before the first cycle"
fd_list="" map_list="" conn_list="" times="" ok_cycles=0 bad="" stop_cycles=no
# The lab kills a scenario at its time limit: rather than be cut off mid-cycle without figures,
# stop when the next cycle would not fit, and say so.
limit=${XENLAB_SCENARIO_LIMIT:-400}
budget_start=$(uptime_s)
cyc=1
while [ $cyc -le "$cycles" ]; do
  if [ $cyc -gt 1 ] && ! awk -v e="$(seconds_since "$budget_start")" -v n=$((cyc - 1)) -v l="$limit" \
    'BEGIN { exit !(e + 1.5 * e / n + 20 < l) }'; then
    info "stopping before cycle $cyc: another would not fit in the scenario's ${limit}s ($(seconds_since "$budget_start")s so far)"
    break
  fi
  cyc_t=$(uptime_s)
  D=$(domu_create "xenbus-destroy-$cyc")
  if [ -z "$D" ]; then
    bad="$bad $cyc:domu_create"
    break
  fi
  step=create
  fe=/local/domain/$D/device/vdemo/0
  be=/local/domain/0/backend/vdemo/$D/0
  connected() { [ "$(xenbus_state $fe/state)$(xenbus_state $be/state)" = 44 ] && timeout 5 xenstore-exists "/local/domain/$D/data/xenbus-demo/result/d$cyc"; }
  closed() { [ "$(xenbus_state $be/state)" = 6 ] && [ "$(maps)" = "$map0" ]; }
  if timeout 30 xenbus-xen-demo create --domu "$D" >/tmp/destroy-create.out 2>&1 &&
    domu_spawn "$D" "xenbus-xen-demo frontend --domid $D --who d$cyc --requests 20000 --lifetime 900" &&
    step=connect && wait_for 300 connected; then
    conn="$(fds)/$(maps)"
    step=destroy
    if domu_destroy "$D" >/dev/null 2>&1 && step=release && wait_for 150 closed; then
      step=dead-home
      if ! timeout 5 xenstore-exists "/local/domain/$D" && ! timeout 5 xenstore-exists "/local/domain/0/error/backend/vdemo/$D"; then
        step=remove
        if timeout 60 xenbus-xen-demo remove --domu "$D" --timeout 30 >/tmp/destroy-remove.out 2>&1 &&
          ! timeout 5 xenstore-exists "/local/domain/$D" && ! timeout 5 xenstore-exists "/local/domain/0/backend/vdemo/$D"; then
          step=done
        fi
      fi
    fi
  fi
  dt=$(seconds_since "$cyc_t")
  f=$(fds)
  m=$(maps)
  if [ $step = done ]; then
    ok_cycles=$((ok_cycles + 1))
  else
    bad="$bad $cyc:$step"
    info "cycle $cyc failed at $step: fe $(xenbus_state $fe/state) be $(xenbus_state $be/state); $(tail -n 2 /tmp/destroy-create.out /tmp/destroy-remove.out 2>/dev/null | tr '\n' ' ')"
    xl list | grep -q "xenbus-destroy-$cyc " && domu_destroy "$D" >/dev/null 2>&1
    stop_cycles=yes  # one failure says enough; the rest of the budget is not spent repeating it
  fi
  info "cycle $cyc: domid $D, $step, ${dt}s; backend while Connected ${conn:-?} (fds/maps), after $f/$m"
  fd_list="$fd_list $f"
  map_list="$map_list $m"
  conn_list="$conn_list ${conn:-?}"
  times="$times $dt"
  conn=""
  cyc=$((cyc + 1))
  [ "$stop_cycles" = yes ] && break
done

if [ "$ok_cycles" = "$cycles" ]; then
  pass destroy-cycles "$cycles domains destroyed while Connected: each released, nothing written under the dead home, removed"
else
  fail destroy-cycles "$ok_cycles of $cycles cycles passed; failed (cycle:step):$bad"
fi
grown=$(for v in $fd_list; do [ "$v" = "$fd0" ] || echo "$v"; done | head -n 1)
if [ -z "$grown" ] && [ -n "$fd_list" ]; then
  pass destroy-fds "the backend's descriptors stayed at $fd0 after every cycle"
else
  fail destroy-fds "before $fd0, after each cycle:$fd_list"
fi
grown=$(for v in $map_list; do [ "$v" = "$map0" ] || echo "$v"; done | head -n 1)
if [ -z "$grown" ] && [ -n "$map_list" ]; then
  pass destroy-maps "the backend's gntdev mappings went back to $map0 after every cycle (while Connected, fds/maps:$conn_list)"
else
  fail destroy-maps "before $map0, after each cycle:$map_list"
fi
zombies=$(xl list | awk 'NR > 2 && $1 ~ /null|xenbus-destroy/' | wc -l)
if [ "$zombies" = 0 ]; then
  pass destroy-no-zombies "no destroyed domain lingers (every grant it made was unmapped)"
else
  fail destroy-no-zombies "$(xl list | awk 'NR > 2 && $1 ~ /null|xenbus-destroy/' | tr '\n' ' ')"
fi
echo "$times" | awk '{ for (i = 1; i <= NF; i++) { s += $i; if ($i > max) max = $i; if (min == "" || $i < min) min = $i } }
  END { if (NF) printf "XENLAB FIGURE destroy-cycle-s %.1f s per cycle (min %.1f, max %.1f, %d cycles, TCG)\n", s / NF, min, max, NF }'
info "backend descriptors after each cycle:$fd_list (before: $fd0)"
info "backend gntdev mappings after each cycle:$map_list (before: $map0)"
figure destroy-backend-fds "$(echo "$fd_list" | awk '{ print $NF }')" "descriptors after the last cycle ($fd0 before the first)"
figure destroy-backend-gntdev-maps "$(echo "$map_list" | awk '{ print $NF }')" "mappings after the last cycle ($map0 before the first)"

kill "$serve"
wait "$serve"
rc=$?
gone=$(grep -ac "the peer's domain is gone (" /tmp/serve-destroy.out)
if [ "$gone" = "$ok_cycles" ] && ! grep -aq 'fatal:' /tmp/serve-destroy.out; then
  pass destroy-reason "the backend closed for close_reason::peer_domain_gone in each of the $gone cycles, no fatal error"
else
  fail destroy-reason "$gone 'domain is gone' for $ok_cycles cycles; $(grep -a 'fatal:' /tmp/serve-destroy.out | head -n 2 | tr '\n' ' ')"
fi
grep -a -E 'domain is gone|stops|exits' /tmp/serve-destroy.out | sed 's/^/    /' | tail -n 50
if [ $rc = 0 ]; then
  pass destroy-backend "one process served every cycle: $(tail -n 1 /tmp/serve-destroy.out | sed 's/^ *[0-9.]* ms *//')"
else
  fail destroy-backend "exit $rc"
fi
