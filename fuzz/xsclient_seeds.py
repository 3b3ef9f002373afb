#!/usr/bin/env python3
"""Writes the seed corpus of xsclient_reply_fuzz: [k][k type indices][chunk seed][server bytes]."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "xsclient_reply_fuzz")
os.makedirs(out, exist_ok=True)
# Indices into request_types[] of the harness, and the wire numbers of those types.
READ, WRITE, MKDIR, RM, DIRECTORY, GET_PERMS, SET_PERMS, WATCH, UNWATCH, TX_START, TX_END, DOMPATH = range(12)
wire = {READ: 2, WRITE: 11, MKDIR: 12, RM: 13, DIRECTORY: 1, GET_PERMS: 3, SET_PERMS: 14,
        WATCH: 4, UNWATCH: 5, TX_START: 6, TX_END: 7, DOMPATH: 10}
ERROR, EVENT = 16, 15


def msg(t, req, payload, tx=0):
    return struct.pack("<IIII", t, req, tx, len(payload)) + payload


def seed(name, types, stream, chunk=0):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([len(types)] + types + [chunk]) + stream)


seed("read_ok", [READ], msg(wire[READ], 1, b"value"))
seed("all_ok", [WRITE, MKDIR, RM, SET_PERMS, WATCH, UNWATCH, TX_END],
     b"".join(msg(wire[t], i + 1, b"OK\0") for i, t in enumerate([WRITE, MKDIR, RM, SET_PERMS, WATCH, UNWATCH, TX_END])))
seed("directory_perms_tx_path", [DIRECTORY, GET_PERMS, TX_START, DOMPATH],
     msg(wire[DIRECTORY], 1, b"a\0b\0") + msg(wire[GET_PERMS], 2, b"n0\0r5\0") +
     msg(wire[TX_START], 3, b"17\0") + msg(wire[DOMPATH], 4, b"/local/domain/3\0"), 3)
seed("errors", [READ, WRITE, TX_END],
     msg(ERROR, 1, b"ENOENT\0") + msg(ERROR, 2, b"EACCES\0") + msg(ERROR, 3, b"EAGAIN\0"))
seed("events_between", [READ, READ],
     msg(EVENT, 0, b"/w/a\0xb1\0") + msg(wire[READ], 2, b"B") + msg(EVENT, 0, b"/w/b\0xb1\0") +
     msg(EVENT, 0, b"/w/c\0xb1\0") + msg(EVENT, 0, b"/w/d\0xb1\0") + msg(wire[READ], 1, b"A"), 1)
seed("stray_event", [READ], msg(EVENT, 0, b"/x\0other\0") + msg(wire[READ], 1, b""))
seed("oversized_len", [READ], struct.pack("<IIII", wire[READ], 1, 0, 5000))
seed("unsolicited", [READ], msg(wire[READ], 9, b"x"))
seed("type_mismatch", [READ], msg(wire[WRITE], 1, b"OK\0"))
seed("bad_event", [READ], msg(EVENT, 0, b"/w\0"))
seed("bad_perms", [GET_PERMS], msg(wire[GET_PERMS], 1, b"x0\0"))
seed("full_read", [READ], msg(wire[READ], 1, b"z" * 4096), 63)
seed("tx_mismatch", [READ], msg(wire[READ], 1, b"x", tx=5))
