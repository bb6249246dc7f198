"""Identifiers. Event ids are UUIDv7 (RFC 9562): unique like v4, but time-ordered, so a hub's index on them
stays compact. Written by hand because Python 3.11's `uuid` module has no v7 and this is on the hot path."""

from __future__ import annotations

import os
import time


def uuid7() -> str:
    ms = time.time_ns() // 1_000_000
    rnd = bytearray(os.urandom(10))
    rnd[0] = (rnd[0] & 0x0F) | 0x70  # version 7
    rnd[2] = (rnd[2] & 0x3F) | 0x80  # RFC 4122 variant
    h = f"{ms:012x}" + rnd.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
