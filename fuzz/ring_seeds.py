#!/usr/bin/env python3
"""Writes the seed corpus of xenbus-ring-fuzz: short scripts of peer moves and our calls
(see the op numbers in ring_fuzz.cpp). Run from the repository root."""
import os
import struct

out = "fuzz/corpus/xenbus-ring-fuzz"
os.makedirs(out, exist_ok=True)


def header(start, features=3, order=0):
    return struct.pack(">I", start) + bytes([features, order])


seeds = {
    # The peer publishes 3 requests; we consume, answer, push, final-check.
    "backend-basic": header(0) + bytes([2, 0, 3, 3, 10, 5, 1, 5, 2, 5, 3, 6, 7, 1]),
    # Across the 2^32 wrap, with a peer index that runs far ahead.
    "backend-wrap-overflow": header(0xFFFFFFF8) + bytes([2, 0, 7, 3, 255, 0, 0, 0xFF, 0xFF, 0xFF, 0x00, 3, 255, 4]),
    # We send requests; the peer answers some and repeats an id.
    "frontend-ids": header(5) + bytes([8, 4, 1, 2, 3, 4, 2, 5, 2, 9, 255, 1, 1, 0x02, 0x48, 8, 0, 0, 9, 255, 10, 2]),
    # Xenstore: guest writes, server reads, the guest asks to reconnect, the server serves it.
    "xenstore-reconnect": header(0) + bytes([12, 20, 14, 20, 13, 1, 15, 4, 13, 0, 12, 1, 18, 0, 2, 2, 11, 10]),
    # Console and a flex ring of order 1.
    "console-flex": header(0, 0, 1) + bytes([16, 30, 30, 17, 40, 40, 1, 5, 0x10, 0x04, 4, 9, 9, 9, 9, 17, 10, 10]),
    # Byte ring index corruption.
    "byte-hostile": header(0x7FFFFFFF) + bytes([1, 2, 0x08, 0x0C, 4, 0xFF, 0xFF, 0xFF, 0xFF, 11, 5, 1, 3, 0x08, 0x00, 4, 1, 0, 0, 0, 14, 5, 15, 1]),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
