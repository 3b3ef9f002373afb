#!/usr/bin/env python3
"""Turns xenbus-bench's Google Benchmark JSON into a markdown table of ratios and a PNG plot.

Benchmark names read <measure>/<implementation>[/<variant>...], with the implementation one
of xenbus, xen_macros, flex_ring, boost_spsc, floor.  Every figure is the median over the
run's repetitions; every ratio compares figures of the same run.

    report.py results.json --table table.md --plot plot.png --machine "AMD EPYC, 2 cores"
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile

IMPLEMENTATIONS = ("xenbus", "xen_macros", "flex_ring", "boost_spsc", "floor")


def clean_name(name):
    """Drops the suffixes Google Benchmark appends (/real_time, /min_time:..., aggregates)."""
    name = re.sub(r"_(mean|median|stddev|cv)$", "", name)
    parts = [p for p in name.split("/") if p != "real_time" and not p.startswith("min_time:")]
    return "/".join(parts)


def split_name(name):
    """(measure, implementation, variant) of a cleaned name, or None if it does not follow the scheme."""
    parts = name.split("/")
    if len(parts) < 2 or parts[1] not in IMPLEMENTATIONS:
        return None
    return parts[0], parts[1], "/".join(parts[2:])


class Figures:
    """The repetitions of every counter of every benchmark in one JSON file."""

    def __init__(self, doc):
        self.context = doc.get("context", {})
        self.reps = {}  # name -> counter -> [values]
        self.medians = {}  # name -> counter -> median aggregate (when repetitions are not listed)
        self.errors = []
        for b in doc.get("benchmarks", []):
            name = clean_name(b.get("run_name", b["name"]))
            if b.get("error_occurred"):
                self.errors.append(f"{name}: {b.get('error_message', 'error')}")
                continue
            counters = {k: v for k, v in b.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    self.medians[name] = counters
                continue
            per = self.reps.setdefault(name, {})
            for k, v in counters.items():
                per.setdefault(k, []).append(float(v))

    def names(self):
        return list(dict.fromkeys(list(self.reps) + list(self.medians)))

    def values(self, name, counter):
        if name in self.reps and counter in self.reps[name]:
            return self.reps[name][counter]
        if name in self.medians and counter in self.medians[name]:
            return [float(self.medians[name][counter])]
        return []

    def median(self, name, counter):
        v = self.values(name, counter)
        return statistics.median(v) if v else None

    def typical(self, name, counter):
        """The rate at the median iteration (counter `<counter>_median`), median over the
        repetitions: preemption by other programs slows only the iterations it hits."""
        return self.median(name, counter + "_median")

    def spread(self, name, counter):
        """Coefficient of variation over repetitions, in percent (None with fewer than 2)."""
        v = self.values(name, counter)
        if len(v) < 2 or statistics.mean(v) == 0:
            return None
        return 100.0 * statistics.stdev(v) / statistics.mean(v)


def fmt_rate(x, unit):
    if x is None:
        return "n/a"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}/s"
    return f"{x:.1f} {unit}/s"


def fmt_ns(rate):
    return "n/a" if not rate else f"{1e9 / rate:.1f} ns"


def fmt_cv(cv):
    return "" if cv is None else f" ±{cv:.0f}%"


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}×"


class Table:
    def __init__(self):
        self.rows = []
        self.verdicts = []  # (label, ratio text, target, met)

    def add(self, measure, config, ours, peer_name, peer, ratio, target=None, met=None,
            median_ratio=None, median_met=None):
        """`ratio` and `met` from typical rates; `median_ratio` from the wall-clock rates."""
        if target is None:
            verdict = ""
        elif met is None:
            verdict = "n/a"
        else:
            verdict = "yes" if met else "**no**"
        self.rows.append((measure, config, ours, peer_name, peer, fmt_ratio(ratio),
                          fmt_ratio(median_ratio) if median_ratio is not None else "",
                          target or "", verdict))
        if target is not None:
            self.verdicts.append((f"{measure} {config} vs {peer_name}", fmt_ratio(ratio), target, verdict))

    def markdown(self):
        out = ["| Measure | Configuration | Ours | Peer | Peer's figure | Ratio | Wall-clock ratio | Target | Met |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            out.append("| " + " | ".join(r) + " |")
        return "\n".join(out)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def build_table(f):
    """Every pairing of ours with its peers.  Figures are typical rates (the median
    iteration of each repetition, median over repetitions, ± their coefficient of
    variation); each row also gives the ratio of the wall-clock rates."""
    t = Table()

    def rates(ours_name, peer_name, counter):
        """(ours, peer) typical rates, then (ours, peer) wall-clock rates, medians over repetitions."""
        ob, pb = f.typical(ours_name, counter), f.typical(peer_name, counter)
        om, pm = f.median(ours_name, counter), f.median(peer_name, counter)
        return ob, pb, om, pm

    def check(r, op, x):
        return None if r is None else (r <= x if op == "<=" else r >= x)

    # (1) Round trip: time per round trip; ratios are of times (lower is better for us).
    for peer_name, target in (("round_trip/xen_macros/blkif", 1.0), ("round_trip/floor", 1.8)):
        ob, pb, om, pm = rates("round_trip/xenbus/blkif", peer_name, "round_trips")
        r, rm = ratio(pb, ob), ratio(pm, om)  # our time / their time = their rate / our rate
        t.add("round trip", "blkif, 1 outstanding (time per round trip)",
              fmt_ns(ob) + fmt_cv(f.spread("round_trip/xenbus/blkif", "round_trips_median")),
              split_name(peer_name)[1], fmt_ns(pb) + fmt_cv(f.spread(peer_name, "round_trips_median")),
              r, f"≤ {target:.2f}×", check(r, "<=", target), rm, check(rm, "<=", target))

    # (2) Streaming: requests per second, ours / peer (higher is better for us).
    for measure, label in (("stream", "stream (2 threads)"), ("stream_one_thread", "stream, one thread (cost)")):
        variants = sorted({split_name(n)[2] for n in f.names()
                           if split_name(n) and split_name(n)[0] == measure},
                          key=lambda v: (v.split("/")[0], v))
        for v in variants:
            ours_name = f"{measure}/xenbus/{v}"
            for peer in ("xen_macros", "boost_spsc"):
                peer_name = f"{measure}/{peer}/{v}"
                if not f.values(peer_name, "requests"):
                    continue
                ob, pb, om, pm = rates(ours_name, peer_name, "requests")
                r, rm = ratio(ob, pb), ratio(om, pm)
                has_target = peer == "xen_macros" and measure == "stream"
                t.add(label, v.replace("/", ", "), fmt_rate(ob, "req") + fmt_cv(f.spread(ours_name, "requests_median")),
                      peer, fmt_rate(pb, "req") + fmt_cv(f.spread(peer_name, "requests_median")), r,
                      "≥ 1.00×" if has_target else None, check(r, ">=", 1.0) if has_target else None,
                      rm, check(rm, ">=", 1.0) if has_target else None)

    # (3) Notifications: kicks per request (medians: a count, not a speed) and requests
    # per second at each load, against the macros' standard usage.
    loads = sorted({int(n.rsplit(":", 1)[1]) for n in f.names() if n.startswith("notify/")})
    full = max(loads) if loads else None
    for k in loads:
        std = f"notify/xen_macros/standard/outstanding:{k}"
        for variant in ("default", "moderated", "polled"):
            ours_name = f"notify/xenbus/{variant}/outstanding:{k}"
            ok, mk = f.median(ours_name, "kicks_per_request"), f.median(std, "kicks_per_request")
            if ok is None:
                continue
            # Ours <= macros' at every load, with a tolerance of 0.5% for the odd kick at a
            # run's start and end.
            met = None if mk is None else ok <= mk * 1.005 + 1e-9
            target = "≤ 1.00×" if variant != "polled" else None
            t.add("notify kicks/request", f"{variant}, {k} outstanding", f"{ok:.4f}",
                  "xen_macros standard", "n/a" if mk is None else f"{mk:.4f}", ratio(ok, mk),
                  target, met if target else None)
        for variant in ("default", "moderated", "polled"):
            ours_name = f"notify/xenbus/{variant}/outstanding:{k}"
            if not f.values(ours_name, "requests"):
                continue
            ob, pb, om, pm = rates(ours_name, std, "requests")
            r, rm = ratio(ob, pb), ratio(om, pm)
            target = "≥ 2.00×" if variant == "moderated" else None
            t.add("notify throughput", f"{variant}, {k} outstanding",
                  fmt_rate(ob, "req") + fmt_cv(f.spread(ours_name, "requests_median")), "xen_macros standard",
                  fmt_rate(pb, "req") + fmt_cv(f.spread(std, "requests_median")), r, target,
                  check(r, ">=", 2.0) if target else None, rm, check(rm, ">=", 2.0) if target else None)
    if full is not None:
        mk = f.median(f"notify/xenbus/moderated/outstanding:{full}", "kicks_per_request")
        t.add("notify kicks/request", f"moderated, full ring ({full} outstanding)",
              "n/a" if mk is None else f"{mk:.4f}", "(absolute)", "", None, "≤ 0.1",
              None if mk is None else mk <= 0.1)

    # (4) Byte rings: bytes per second, ours / flex-ring functions.
    variants = sorted({split_name(n)[2] for n in f.names() if split_name(n) and split_name(n)[0] == "bytes"})
    for v in variants:
        ours_name, peer_name = f"bytes/xenbus/{v}", f"bytes/flex_ring/{v}"
        ob, pb, om, pm = rates(ours_name, peer_name, "bytes")
        r, rm = ratio(ob, pb), ratio(om, pm)
        t.add("byte ring", v.replace("/", ", "), fmt_rate(ob, "B") + fmt_cv(f.spread(ours_name, "bytes_median")),
              "flex_ring", fmt_rate(pb, "B") + fmt_cv(f.spread(peer_name, "bytes_median")), r, "≥ 1.00×",
              check(r, ">=", 1.0), rm, check(rm, ">=", 1.0))
    return t, loads


def plot(f, loads, path, machine):
    """Requests/s and kicks/request against outstanding requests, one line per implementation."""
    series = (("xen\\_macros standard", "notify/xen_macros/standard"),
              ("xenbus default", "notify/xenbus/default"),
              ("xenbus moderated", "notify/xenbus/moderated"),
              ("xenbus polled (wait_for_work)", "notify/xenbus/polled"))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "notify.dat")
        with open(data, "w") as out:
            for _, prefix in series:  # one block per series, two blank lines apart
                for k in loads:
                    name = f"{prefix}/outstanding:{k}"
                    req = f.typical(name, "requests")
                    kicks = f.median(name, "kicks_per_request")
                    if req is not None and kicks is not None:
                        out.write(f"{k} {req / 1e3:.3f} {kicks:.5f}\n")
                out.write("\n\n")
        title = "xenbus-bench: notification-driven stream (blkif, one page, eventfd kicks)"
        if machine:
            title += "\\n" + machine.replace('"', "'")

        def lines(col):
            return ", ".join(f'"{data}" index {i} using 1:{col} with linespoints lw 2 title "{t}"'
                             for i, (t, _) in enumerate(series))

        script = f"""
set terminal pngcairo size 1200,520 font ",10" noenhanced
set output "{path}"
set multiplot layout 1,2 title "{title}"
set logscale x 2
set xlabel "outstanding requests"
set grid
set key top left
set logscale y
set ylabel "requests per second (thousands, typical iteration)"
plot {lines(2)}
set key top right
set format y "%g"
set ylabel "kicks per request (both directions, median)"
plot {lines(3)}
unset multiplot
"""
        script_path = os.path.join(tmp, "plot.gp")
        with open(script_path, "w") as g:
            g.write(script)
        subprocess.run(["gnuplot", script_path], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--table", default="-", help="markdown output ('-' for stdout)")
    ap.add_argument("--plot", help="PNG output (needs gnuplot)")
    ap.add_argument("--machine", default="", help="the machine, named in the table and plot")
    args = ap.parse_args()
    with open(args.json) as fin:
        f = Figures(json.load(fin))
    t, loads = build_table(f)
    ctx = f.context
    reps = max((len(v) for per in f.reps.values() for v in per.values()), default=1)
    lines = ["# xenbus-bench results", ""]
    if args.machine:
        lines.append(f"Machine: {args.machine}.")
    lines.append(f"Run: {ctx.get('date', '?')}, {ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz, "
                 f"load average before the run {', '.join(f'{x:.2f}' for x in ctx.get('load_avg', []))}; "
                 f"threads {ctx.get('xenbus_threads', '?')}; {reps} repetitions, randomly interleaved. Figures are "
                 "typical rates: each repetition times every iteration and reports the rate of its median "
                 "iteration (a thread preempted by another program slows only the iterations it hits); the "
                 "table gives the median over repetitions, ± the coefficient of variation over repetitions. "
                 "'Wall-clock ratio' compares the plain rates over each repetition's wall-clock time "
                 "(medians), which include whatever else the machine ran. Kicks per request are medians. "
                 "All figures come from this one run.")
    lines.append("")
    lines.append("Round-trip ratios are of times (ours ÷ peer, lower is better); throughput ratios are "
                 "of rates (ours ÷ peer, higher is better); 'floor' is a bare one-cache-line ping-pong, so "
                 "ours ÷ floor in time is floor ÷ ours in round trips per second.")
    lines.append("")
    lines.append(t.markdown())
    lines.append("")
    missed = [v for v in t.verdicts if v[3] != "yes"]
    lines.append(f"Targets met: {len(t.verdicts) - len(missed)} of {len(t.verdicts)}.")
    if f.errors:
        lines.append("")
        lines.append("Benchmarks that reported an error: " + "; ".join(f.errors))
    text = "\n".join(lines) + "\n"
    if args.table == "-":
        sys.stdout.write(text)
    else:
        with open(args.table, "w") as out:
            out.write(text)
    if args.plot:
        plot(f, loads, args.plot, args.machine)
    return 1 if f.errors else 0


if __name__ == "__main__":
    sys.exit(main())
