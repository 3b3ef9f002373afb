#!/usr/bin/env python3
"""Writes the seed corpus of xenbus-blkback-fuzz (see the input format in blkback_fuzz.cpp).
Run from the repository root."""
import os
import struct

out = "fuzz/corpus/xenbus-blkback-fuzz"
os.makedirs(out, exist_ok=True)


def seg(gref, first=0, last=7):
    return struct.pack("<IBBxx", gref, first, last)


def rw(op, rid, sector, segs, kind=0):
    """A direct request slot (112 bytes): operation, nr_segments, handle, id, sector, 11 segments."""
    body = struct.pack("<BBHxxxxQQ", op, len(segs), 0, rid, sector) + b"".join(segs)
    return bytes([kind]) + body.ljust(112, b"\0")


def discard(rid, sector, n, flag=0):
    return bytes([0]) + struct.pack("<BBHxxxxQQQ", 5, flag, 0, rid, sector, n).ljust(112, b"\0")


def indirect(op, rid, sector, nseg, pages):
    body = struct.pack("<BBHxxxxQQH", 6, op, nseg, rid, sector, 0) + struct.pack("<8I", *(pages + [0] * (8 - len(pages))))
    return bytes([0]) + body.ljust(112, b"\0")


def page_write(page, offset, segs):
    return bytes([3, page]) + struct.pack("<H", offset) + b"".join(segs).ljust(64, b"\0")


slots = b"\x00"  # mode: slots
seeds = {
    "write-read-flush": slots + b"\x00" + rw(1, 1, 0, [seg(0), seg(1, 2, 5)]) + rw(0, 2, 0, [seg(2)])
    + rw(3, 3, 0, []) + rw(2, 4, 8, [seg(3)]),
    "discard": slots + b"\x00" + discard(1, 8, 16) + discard(2, 60, 8) + discard(3, 0, 8, 1),
    "indirect": slots + b"\x10" + page_write(5, 0, [seg(0), seg(1), seg(2, 1, 1)]) + indirect(1, 7, 4, 3, [5])
    + indirect(0, 8, 4, 3, [5]),
    "bad": slots + b"\x30" + rw(1, 1, 63, [seg(0)]) + rw(0, 2, 0, [seg(17)]) + rw(1, 3, 0, [seg(2000)], kind=2)
    + rw(9, 4, 0, []) + rw(1, 5, 0, [seg(0, 6, 2)]),
    "readonly-aligned-persistent": slots + bytes([2 | 8 | 128]) + rw(1, 1, 0, [seg(0)]) + rw(0, 2, 8, [seg(1)])
    + rw(0, 3, 3, [seg(1, 0, 3)]),
    # Ring mode: slots written into the shared ring, then req_prod values, fair and hostile.
    "ring": b"\x01\x04" + bytes([0]) + struct.pack("<H", 0) + struct.pack("<BBHxxxxQ", 1, 1, 0, 9)
    + bytes([1]) + struct.pack("<I", 1) + bytes([1]) + struct.pack("<I", 40),
    "ring-behind": b"\x01\x00" + bytes([1]) + struct.pack("<I", 0xFFFFFFF0),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
