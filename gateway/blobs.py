"""Bulk parts are stored compressed: a hub's master data is repetitive JSON (about 1/8 of its size with zlib at
level 1), and the receipt of each part is a commit a scan may have to wait behind: 1.1 MB took 4-7 ms to write
and fsync, 150 KB about one. Compressing and expanding run a slice at a time with `pause` between slices, so a
megabyte of zlib work never holds the loop (or the GIL) for more than a fraction of a millisecond."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable

IN_SLICE = 64 * 1024
OUT_SLICE = 256 * 1024
LEVEL = 1


async def compress(data: bytes, pause: Callable[[], Awaitable[None]]) -> bytes:
    c = zlib.compressobj(LEVEL)
    out = []
    for i in range(0, len(data), IN_SLICE):
        out.append(c.compress(data[i:i + IN_SLICE]))
        await pause()
    out.append(c.flush())
    return b"".join(out)


async def expand(stored: bytes | str, pause: Callable[[], Awaitable[None]]) -> bytes:
    """A stored part back as its JSON bytes; text is a part stored before parts were compressed."""
    if isinstance(stored, str):
        return stored.encode("utf-8")
    d = zlib.decompressobj()
    out = [d.decompress(stored, OUT_SLICE)]
    while d.unconsumed_tail:
        await pause()
        out.append(d.decompress(d.unconsumed_tail, OUT_SLICE))
    out.append(d.flush())
    return b"".join(out)
