"""Reading multi-megabyte JSON (bulk command parts) without stalling the event loop.

`json.loads` of a 1 MB part holds the interpreter for tens of milliseconds, and a worker thread does not
help: it holds the same lock. `ijson` (a maintained streaming parser with a C backend) is fed the payload in
small slices here, handing control back to the loop between them, so a scan never waits more than a slice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import ijson

SLICE = 8 * 1024  # ~70 SKUs: about a millisecond of parsing between two looks at the floor
_STARTS = frozenset({"start_map", "start_array", "string", "number", "integer", "double", "boolean", "null"})


class StreamError(ValueError):
    """The payload is not well-formed JSON (or not an object)."""


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def scan_envelope(payload: bytes, lists: Iterable[str], pause: Callable[[], Awaitable[None]] = _next_turn
                        ) -> tuple[dict[str, Any], Counter[str]]:
    """The top-level scalar fields of a JSON object, and how many items each of `lists` holds; the whole
    payload is checked to be well-formed JSON on the way."""
    wanted = {f"{name}.item": name for name in lists}
    scalars: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    arrays: set[str] = set()
    events = ijson.sendable_list()
    coro = ijson.parse_coro(events, use_float=True)
    first = True
    try:
        for i in range(0, len(payload), SLICE):
            coro.send(payload[i:i + SLICE])
            for prefix, event, value in events:
                if first:
                    if event != "start_map":
                        raise StreamError("the payload must be a JSON object")
                    first = False
                if prefix in wanted and event in _STARTS:
                    counts[wanted[prefix]] += 1
                elif "." not in prefix and prefix and event not in ("map_key", "end_map", "end_array"):
                    if event in ("start_map", "start_array"):
                        arrays.add(prefix)
                    else:
                        scalars[prefix] = value
            del events[:]
            await pause()
        coro.close()
    except ijson.JSONError as e:
        raise StreamError(f"not JSON: {e}") from None
    if first:
        raise StreamError("not JSON: empty payload")
    for name in arrays - set(scalars):
        scalars[name] = []  # present as a list (its items are read later, one slice at a time)
    return scalars, counts


async def iter_items(payload: bytes, name: str, batch: int, on_parse: Callable[[float], None] | None = None,
                     pause: Callable[[], Awaitable[None]] = _next_turn) -> AsyncIterator[list[Any]]:
    """The items of the top-level list `name`, `batch` at a time, parsed a slice at a time; `on_parse` is told
    the seconds each slice took (the caller's share of the loop), `pause` is awaited between slices (bulk work
    passes Journal.quiet: never parse while a scan commits)."""
    items = ijson.sendable_list()
    coro = ijson.items_coro(items, f"{name}.item", use_float=True)
    pending: list[Any] = []
    for i in range(0, len(payload), SLICE):
        t0 = time.perf_counter()
        coro.send(payload[i:i + SLICE])
        if on_parse is not None:
            on_parse(time.perf_counter() - t0)
        pending.extend(items)
        del items[:]
        while len(pending) >= batch:
            out, pending = pending[:batch], pending[batch:]
            yield out
        await pause()
    coro.close()
    pending.extend(items)
    if pending:
        yield pending
