"""Identifiers. Event ids are UUIDv7 (RFC 9562): unique like v4, but time-ordered, so a hub's index on them
stays compact. Written by hand because Python 3.11's `uuid` module has no v7 and this is on the hot path
(one id per event): the random parts come ready-formatted from a pool filled by one `os.urandom` call per
200 ids, and the time part is formatted once per millisecond."""

from __future__ import annotations

import os
import threading
import time

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 9562 variant bits 10xx
_POOL_IDS = 200
_HEX_PER_ID = 20  # 19 used: 3 after the version digit, 4 around the variant, 12 for the node
_lock = threading.Lock()
_tails: list[str] = []
_head: tuple[int, str] = (-1, "")  # (unix ms, _time_part's text); replaced whole, so threads see a pair


def _refill() -> None:
    global _tails
    h = os.urandom(_POOL_IDS * _HEX_PER_ID // 2).hex()
    _tails = [f"-7{h[i:i + 3]}-{_VARIANT[h[i + 3]]}{h[i + 4:i + 7]}-{h[i + 7:i + 19]}"
              for i in range(0, len(h), _HEX_PER_ID)]


def _time_part() -> str:
    """The id's first 48 bits, unix milliseconds, as "xxxxxxxx-xxxx": formatted once per millisecond."""
    global _head
    ms = time.time_ns() // 1_000_000
    head = _head
    if head[0] != ms:
        h = f"{ms:012x}"
        head = _head = (ms, f"{h[:8]}-{h[8:]}")
    return head[1]


def uuid7() -> str:
    return uuid7_many(1)[0]


def uuid7_many(n: int) -> list[str]:
    """`n` ids at once (a journal batch's events), sharing one reading of the clock."""
    prefix = _time_part()
    out: list[str] = []
    while True:
        try:
            while len(out) < n:
                out.append(prefix + _tails.pop())  # list.pop is atomic: threads never share a tail
            return out
        except IndexError:
            with _lock:  # one refill at a time; a thread that finds the pool refilled takes from it
                if not _tails:
                    _refill()


def _after_fork() -> None:
    """A forked child must not hand out its parent's random ids, nor wait on a lock another thread held."""
    global _lock
    _lock = threading.Lock()
    _refill()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
