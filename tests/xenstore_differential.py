#!/usr/bin/env python3
"""Differential test: the same xenstore request sequences against Xen's oxenstored and
against xenbus-xenstored; every answer must match (type and payload), except where a
documented choice differs (listed in KNOWN and printed, not failed).

usage: xenstore_differential.py XENBUS_XENSTORED [--oxenstored-run RUN_SCRIPT]
Exits 77 (CTest: skipped) when oxenstored cannot be started here (no root, no Xen
tools, or its fixed socket /var/run/xenstored/socket is already in use)."""
import argparse, os, socket, struct, subprocess, sys, tempfile, time

SKIP = 77
OX_SOCKET = "/var/run/xenstored/socket"
T = dict(control=0, directory=1, read=2, get_perms=3, watch=4, unwatch=5, tstart=6, tend=7,
         introduce=8, release=9, domain_path=10, write=11, mkdir=12, rm=13, set_perms=14,
         watch_event=15, error=16, is_introduced=17, resume=18, set_target=19,
         reset_watches=21, directory_part=22)
NAMES = {v: k for k, v in T.items()}


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(5)
        self.req = 0
        self.events = []
        self.buf = b""

    def _recv_msg(self):
        while True:
            if len(self.buf) >= 16:
                t, r, tx, ln = struct.unpack("<IIII", self.buf[:16])
                if len(self.buf) >= 16 + ln:
                    body = self.buf[16:16 + ln]
                    self.buf = self.buf[16 + ln:]
                    return t, r, tx, body
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def call(self, t, payload, tx=0):
        self.req += 1
        self.s.sendall(struct.pack("<IIII", T[t] if isinstance(t, str) else t, self.req, tx, len(payload)) + payload)
        while True:
            mt, r, rtx, body = self._recv_msg()
            if mt == T["watch_event"]:
                self.events.append(body)
                continue
            return (NAMES.get(mt, mt), body)

    def take_events(self, n, timeout=2.0):
        end = time.time() + timeout
        while len(self.events) < n and time.time() < end:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                mt, r, tx, body = self._recv_msg()
            except (socket.timeout, EOFError):
                break
            if mt == T["watch_event"]:
                self.events.append(body)
        self.s.settimeout(5)
        ev, self.events = self.events, []
        return ev


def z(*parts):
    return b"".join(p.encode() if isinstance(p, str) else p for p in parts)


def scenarios():
    """Each scenario: a function of (conns) returning a list of observations."""
    def basic(c):
        a = c[0]
        return [a.call("write", z("/d/a/b\0", "v")), a.call("read", z("/d/a/b\0")),
                a.call("read", z("/d/a\0")), a.call("directory", z("/d/a\0")),
                a.call("write", z("/d/a/c\0", b"bin\0ary")), a.call("read", z("/d/a/c\0")),
                a.call("mkdir", z("/d/a/c\0")), a.call("read", z("/d/a/c\0")),
                a.call("rm", z("/d/a\0")), a.call("read", z("/d/a/b\0")),
                a.call("rm", z("/d/a\0")), a.call("rm", z("/d/nope/deeper\0")),
                a.call("directory", z("/d\0"))]

    def relative(c):
        a = c[0]
        return [a.call("write", z("diffrel\0", "x")), a.call("read", z("/local/domain/0/diffrel\0")),
                a.call("domain_path", z("7\0")), a.call("rm", z("diffrel\0"))]

    def errors(c):
        a = c[0]
        return [a.call("read", z("/d/missing\0")), a.call("read", z("/d//x\0")),
                a.call("read", z("/d/x/\0")), a.call("write", z("/d/sp ace\0", "v")),
                a.call("rm", z("/\0")), a.call("tend", z("T\0"), 4242),
                a.call("read", z("/d\0"), 4242), a.call("unwatch", z("/d\0", "nope\0"))]

    def perms(c):
        a = c[0]
        return [a.call("write", z("/d/p\0", "")), a.call("get_perms", z("/d/p\0")),
                a.call("set_perms", z("/d/p\0", "n0\0", "r5\0", "b7\0")),
                a.call("get_perms", z("/d/p\0")), a.call("write", z("/d/p/child\0", "")),
                a.call("get_perms", z("/d/p/child\0")), a.call("set_perms", z("/d/p\0", "x9\0"))]

    def transactions(c):
        a, b = c[0], c[1]
        out = [a.call("write", z("/d/t\0", "a"))]
        tx = int(a.call("tstart", z("\0"))[1].rstrip(b"\0"))
        out += [a.call("read", z("/d/t\0"), tx), b.call("write", z("/d/t\0", "b")),
                a.call("read", z("/d/t\0"), tx), a.call("write", z("/d/t\0", "c"), tx),
                a.call("read", z("/d/t\0"), tx)]
        end = a.call("tend", z("T\0"), tx)
        out += [end, a.call("read", z("/d/t\0"))]
        tx = int(a.call("tstart", z("\0"))[1].rstrip(b"\0"))
        out += [a.call("write", z("/d/t/new\0", "n"), tx), b.call("read", z("/d/t/new\0")),
                a.call("tend", z("T\0"), tx), b.call("read", z("/d/t/new\0"))]
        tx = int(a.call("tstart", z("\0"))[1].rstrip(b"\0"))
        out += [a.call("rm", z("/d/t\0"), tx), a.call("tend", z("F\0"), tx), a.call("read", z("/d/t\0"))]
        return out

    def watches(c):
        a, w = c[0], c[1]
        out = [w.call("watch", z("/d/w\0", "tok\0")), w.take_events(1)]
        out += [a.call("write", z("/d/w/x\0", "1")), w.take_events(1)]
        out += [a.call("write", z("/d/wother\0", "1")), w.take_events(1, 0.2)]
        out += [w.call("watch", z("/d/w\0", "tok\0"))]
        out += [w.call("unwatch", z("/d/w\0", "tok\0")), a.call("write", z("/d/w/y\0", "")), w.take_events(1, 0.2)]
        return out

    def dirpart(c):
        a = c[0]
        out = [a.call("write", z("/d/dp/one\0", "")), a.call("write", z("/d/dp/two\0", ""))]
        r = a.call("directory_part", z("/d/dp\0", "0\0"))
        # The generation number is implementation-defined: compare the rest.
        out.append((r[0], r[1].split(b"\0", 1)[1] if r[0] == "directory_part" else r[1]))
        return out

    def watch_rm(c):
        a, w = c[0], c[1]
        out = [a.call("write", z("/d/r/a/b/c\0", "1"))]
        for path, tok in (("/d/r", "parent"), ("/d/r/a", "self"), ("/d/r/a/b", "child"),
                          ("/d/r/a/b/c", "grandchild"), ("/d/r/other", "sibling")):
            out.append(w.call("watch", z(path, "\0", tok, "\0")))
        out.append(sorted(w.take_events(5)))
        out.append(a.call("rm", z("/d/r/a\0")))
        # Delivery order is not specified: compare the set of events.
        out.append(sorted(w.take_events(4, 0.5)))
        return out

    def watch_tx(c):
        a, w = c[0], c[1]
        out = [w.call("watch", z("/d/x\0", "t\0")), w.take_events(1)]
        tx = int(a.call("tstart", z("\0"))[1].rstrip(b"\0"))
        out += [a.call("write", z("/d/x/in-tx\0", "1"), tx), w.take_events(1, 0.2)]
        out += [a.call("tend", z("T\0"), tx), w.take_events(1)]
        tx = int(a.call("tstart", z("\0"))[1].rstrip(b"\0"))
        out += [a.call("write", z("/d/x/aborted\0", "1"), tx), a.call("tend", z("F\0"), tx),
                w.take_events(1, 0.2)]
        out += [a.call("set_perms", z("/d/x\0", "n0\0", "r3\0")), w.take_events(1)]
        out += [a.call("mkdir", z("/d/x\0")), w.take_events(1, 0.2)]
        return out

    def relative_watch(c):
        a, w = c[0], c[1]
        out = [w.call("watch", z("diffw\0", "rel\0")), w.take_events(1)]
        out += [a.call("write", z("/local/domain/0/diffw/k\0", "v")), w.take_events(1)]
        out += [a.call("rm", z("diffw\0"))]
        return out

    return dict(watch_rm=watch_rm, watch_tx=watch_tx, relative_watch=relative_watch, basic=basic, relative=relative, errors=errors, perms=perms,
                transactions=transactions, watches=watches, dirpart=dirpart)


# Answers where we deliberately differ from oxenstored (and follow C xenstored).
KNOWN = {
    ("errors", 4): "rm of / is EINVAL in C xenstored (oxenstored answers OK and keeps /)",
    ("errors", 5): "an unknown transaction id is ENOENT in C xenstored (oxenstored: EIO)",
    ("errors", 6): "an unknown transaction id is ENOENT in C xenstored (oxenstored: EIO)",
    ("dirpart", 2): "oxenstored 4.17 does not implement XS_DIRECTORY_PART (ENOSYS)",
}


def run_all(path):
    results = {}
    for name, fn in scenarios().items():
        conns = [Conn(path) for _ in range(2)]
        conns[0].call("rm", z("/d\0"))
        results[name] = fn(conns)
        conns[0].call("rm", z("/d\0"))
        for c in conns:
            c.s.close()
    return results


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools", "oxenstored", "run")
    ap.add_argument("--oxenstored-run", default=beside if os.path.exists(beside) else "/work/shared/tools/oxenstored/run")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/usr/lib/xen-4.17/bin/oxenstored") or not os.path.exists(args.oxenstored_run):
        print("skipped: needs root, /usr/lib/xen-4.17/bin/oxenstored and", args.oxenstored_run)
        return SKIP
    if wait_socket(OX_SOCKET, 0.1):
        print("skipped: something already serves", OX_SOCKET)
        return SKIP
    tmp = tempfile.mkdtemp(prefix="xenbus-diff-")
    ours_sock = os.path.join(tmp, "ours.sock")
    ours = subprocess.Popen([args.server, "--socket", ours_sock])
    oxdir = os.path.join(tmp, "ox")
    started = subprocess.run(["bash", args.oxenstored_run, oxdir], capture_output=True, text=True)
    try:
        if started.returncode != 0:
            print("skipped: oxenstored did not start:", started.stderr.strip())
            return SKIP
        if not wait_socket(ours_sock) or not wait_socket(OX_SOCKET):
            print("FAIL: a server did not come up")
            return 1
        ox = run_all(OX_SOCKET)
        us = run_all(ours_sock)
    finally:
        ours.terminate()
        ours.wait()
        pidfile = os.path.join(oxdir, "pid")
        if os.path.exists(pidfile):
            try:
                os.kill(int(open(pidfile).read()), 15)
            except (ProcessLookupError, ValueError):
                pass
    failures = 0
    for name in ox:
        for i, (o, u) in enumerate(zip(ox[name], us[name])):
            if o == u:
                continue
            key = (name, i)
            if key in KNOWN:
                print(f"known difference {name}[{i}]: oxenstored {o!r}, xenbus {u!r}: {KNOWN[key]}")
                continue
            failures += 1
            print(f"DIFF {name}[{i}]: oxenstored {o!r} != xenbus {u!r}")
    total = sum(len(v) for v in ox.values())
    print(f"{total} answers compared, {failures} unexpected differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
