#!/usr/bin/env python3
"""Runs Xen's test-xenstore -i N against xenbus-xenstored and against oxenstored in the
same run, alternating rounds, and prints a markdown table of the per-operation times (the
average test-xenstore reports) and the ratio oxenstored / xenbus (higher: ours faster).

usage: bench/xenstore_vs_oxenstored.py [--server build/dev/tools/xenbus-xenstored]
           [--iterations 200] [--rounds 5]
Needs root: oxenstored is started by tests/reference/xenstored.sh on a private socket
(docs/reference-servers.md). Not a CTest test."""
import argparse, os, platform, re, socket, statistics, subprocess, sys, tempfile, time

TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"
LINE = re.compile(r"^(.{10}):\s+avg: (\d+) ns")


def wait_socket(path, seconds=10):
    end = time.time() + seconds
    while time.time() < end:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_tests(sock, iterations, only=None):
    env = dict(os.environ, XENSTORED_PATH=sock)
    cmd = [TEST_XENSTORE, "-i", str(iterations)] + (["-t", only] if only else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"test-xenstore failed against {sock}:\n{out.stdout}{out.stderr}")
    res = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m:
            res[m.group(1).strip()] = int(m.group(2))
    return res


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.path.join(here, "..", "build", "dev", "tools", "xenbus-xenstored"))
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    launcher = os.path.join(here, "..", "tests", "reference", "xenstored.sh")
    tmp = tempfile.mkdtemp(prefix="xenbus-bench-")
    ours_sock = os.path.join(tmp, "xenbus.sock")
    ours = subprocess.Popen([args.server, "--no-fork", "--socket", ours_sock])
    oxdir = os.path.join(tmp, "ox")
    started = subprocess.run(["bash", launcher, "start", "oxenstored", oxdir], capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"oxenstored did not start: {started.stderr.strip()}")
    ox_socket = started.stdout.strip()
    # The transport floor: a responder with no store answers the tests that only need "OK".
    inc = os.path.join(here, "..", "include")
    null_exe = os.path.join(tmp, "null_responder")
    null_sock = os.path.join(tmp, "null.sock")
    subprocess.run(["g++", "-std=c++20", "-O2", "-I", inc, os.path.join(here, "xenstore_null_responder.cpp"),
                    "-o", null_exe], check=True)
    null = subprocess.Popen([null_exe, null_sock])
    floor_tests = ("rm node", "rm dir", "ta empty", "ta empty x")
    results = {"xenbus": [], "oxenstored": [], "null": []}
    try:
        if not wait_socket(ours_sock) or not wait_socket(ox_socket) or not wait_socket(null_sock):
            sys.exit("a server did not come up")
        for _ in range(args.rounds):  # alternate, so that machine noise hits all alike
            results["oxenstored"].append(run_tests(ox_socket, args.iterations))
            results["xenbus"].append(run_tests(ours_sock, args.iterations))
            results["null"].append({n: run_tests(null_sock, args.iterations, n)[n] for n in floor_tests})
    finally:
        ours.terminate()
        ours.wait()
        null.terminate()
        null.wait()
        subprocess.run(["bash", launcher, "stop", oxdir])
    names = list(results["xenbus"][0].keys())
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"test-xenstore -i {args.iterations}, median of {args.rounds} alternating rounds; "
          f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}\n")
    print("| test | oxenstored (ns/op) | xenbus-xenstored (ns/op) | ratio (ox / ours) | null responder, no store (ns/op) |")
    print("|---|---:|---:|---:|---:|")
    ratios = []
    for n in names:
        ox = statistics.median(r[n] for r in results["oxenstored"])
        us = statistics.median(r[n] for r in results["xenbus"])
        floor = f"{statistics.median(r[n] for r in results['null']):.0f}" if n in floor_tests else "-"
        ratios.append(ox / us)
        print(f"| {n} | {ox:.0f} | {us:.0f} | {ox / us:.2f}x | {floor} |")
    print(f"\ngeometric mean ratio: {statistics.geometric_mean(ratios):.2f}x; "
          f"minimum: {min(ratios):.2f}x (target: 5x per test)\n")
    inc = os.path.join(here, "..", "include")
    # How much of each round trip is the store's own work: the same requests in-process.
    exe = os.path.join(tmp, "store_ops")
    print("The null responder shows the round-trip floor of this machine; the table below,")
    print("the store's own work per request (no socket).\n")
    src = os.path.join(here, "xenstore_store_ops.cpp")
    if subprocess.run(["g++", "-std=c++20", "-O2", "-I", inc, src, "-o", exe]).returncode == 0:
        subprocess.run([exe])


if __name__ == "__main__":
    main()
