"""Identifiers. Event ids are UUIDv7 (RFC 9562): unique like v4, but time-ordered, so a hub's index on them
stays compact. Written by hand because Python 3.11's `uuid` module has no v7 and this is on the hot path
(one id per event): random hex comes from a pool filled by one `os.urandom` call per 200 ids."""

from __future__ import annotations

import os
import threading
import time

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 9562 variant bits 10xx
_POOL_IDS = 200
_HEX_PER_ID = 19
_lock = threading.Lock()
_pool = ""
_pos = 0


def _refill() -> None:
    global _pool, _pos
    _pool = os.urandom((_POOL_IDS * _HEX_PER_ID + 1) // 2).hex()
    _pos = 0


def uuid7() -> str:
    global _pos
    ms = time.time_ns() // 1_000_000
    with _lock:
        if _pos + _HEX_PER_ID > len(_pool):
            _refill()
        r = _pool[_pos:_pos + _HEX_PER_ID]
        _pos += _HEX_PER_ID
    h = f"{ms:012x}"
    return f"{h[:8]}-{h[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"


def _after_fork() -> None:
    """A forked child must not hand out its parent's random ids, nor wait on a lock another thread held."""
    global _lock
    _lock = threading.Lock()
    _refill()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
