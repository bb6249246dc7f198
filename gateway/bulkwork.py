"""Bulk parts are parsed and checked in a child process, at the lowest CPU priority, never on the floor's loop.

A 100,000-SKU set is megabytes of JSON: parsing it (six passes per part) and validating every item were most
of the bulk work's time on the event loop, in slices between scans, each slice one a scan could wait behind
(and while the loop held the GIL, the journal's writer thread waited for it). A worker process has its own
interpreter and its own GIL; at `SCHED_IDLE` it uses only the CPU the floor leaves. The loop keeps what needs
the live floor: each item's checks against the master data it joins (a GTIN owned by another SKU, a
location's SKU), indexing, and the commits. bench.bulk: the set applied in 10-11 s instead of 16-18 s.

The functions below run in the worker. They are pure (bytes in, plain values out) and so are tested
directly too. The worker is started when a large part arrives or a set is applied, and stopped when the
applier has nothing left to do (or after IDLE_S unused): an idle gateway does not carry its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import resource
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pydantic import ValidationError

from gateway.domain.masterdata import Checked, check_item, reason
from gateway.jsontext import dumps, loads_strict
from gateway.parentdeath import die_with_parent

log = logging.getLogger("floorgate.bulk")

IDLE_S = 60.0  # an unused worker process is stopped after this long
COMPRESS_LEVEL = 1  # master data compresses about 8x at level 1; higher levels cost more for little
T = TypeVar("T")


class StreamError(ValueError):
    """The payload is not well-formed JSON (or not an object)."""


class WorkerLost(RuntimeError):
    """The worker process died (killed, out of memory): the work is tried again with a fresh one."""


# -- in the worker ------------------------------------------------------------------------------------------


def load_object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, read as the gateway reads every command (`loads_strict`); parsing is a
    small share of the worker's time beside validating the items."""
    if not payload.strip():
        raise StreamError("not JSON: empty payload")
    try:
        data = loads_strict(payload)
    except (ValueError, RecursionError) as e:
        raise StreamError(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise StreamError("the payload must be a JSON object")
    return data


def envelope(data: dict[str, Any], lists: Iterable[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """A part's fields without its item lists (each stands in as an empty list, or an empty object if it is
    one, so that validation still sees its type), and how many items each list holds."""
    head = {k: ([] if isinstance(v, list) else {}) if isinstance(v, list | dict) else v for k, v in data.items()}
    counts = {name: len(data[name]) for name in lists if isinstance(data.get(name), list)}
    return head, counts


def expand(stored: bytes | str) -> bytes:
    """A stored part back as its JSON bytes; text is a part stored before parts were compressed."""
    return stored.encode("utf-8") if isinstance(stored, str) else zlib.decompress(stored)


def receive(payload: bytes, lists: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, int], bytes]:
    """A large part as it arrives: checked to be a JSON object, its envelope and counts, and the compressed
    form it is stored in."""
    head, counts = envelope(load_object(payload), lists)
    return head, counts, zlib.compress(payload, COMPRESS_LEVEL)


def count(stored: bytes | str, lists: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, int]]:
    return envelope(load_object(expand(stored)), lists)


def split(stored: bytes | str, lists: tuple[str, ...], chunk: int
          ) -> tuple[dict[str, Any], dict[str, list[tuple[int, list[Any]]]]]:
    """A stored part's envelope and, per list, its items as parsed, `chunk` at a time with the first index."""
    data = load_object(expand(stored))
    head, _ = envelope(data, lists)
    runs = {name: [(start, items[start:start + chunk]) for start in range(0, len(items), chunk)]
            for name in lists if isinstance(items := data.get(name), list)}
    return head, runs


def check_run(list_name: str, start: int, items: list[Any]) -> list[Checked]:
    """Master data items validated alone (check_item): (index, entity, its document's JSON text) or (index,
    None, why it was rejected)."""
    out: list[Checked] = []
    for i, raw in enumerate(items):
        try:
            entity = check_item(list_name, raw)
        except (ValidationError, ValueError) as e:
            out.append((start + i, None, reason(e)))
        else:
            out.append((start + i, entity, dumps(entity.to_doc())))
    return out


def prepare(stored: bytes | str, lists: tuple[str, ...], chunk: int, check: bool
            ) -> tuple[dict[str, Any], dict[str, list[tuple[int, int, int]]], bytes]:
    """`split` in the worker, each chunk checked (`check`: master data) and pickled: it stays pickled until the
    loop applies it, and unpickling 20 items is a small, even step. The chunks travel as one bytes object
    with (first index, offset, length) per chunk: the gateway's side of the pipe (a thread, holding the GIL
    while it unpickles the result) then copies one block instead of building thousands of objects."""
    head, runs = split(stored, lists, chunk)
    blobs: list[bytes] = []
    index: dict[str, list[tuple[int, int, int]]] = {}
    at = 0
    for name, chunks in runs.items():
        spans = index[name] = []
        for start, items in chunks:
            blob = pickle.dumps(check_run(name, start, items) if check else items, protocol=pickle.HIGHEST_PROTOCOL)
            spans.append((start, at, len(blob)))
            blobs.append(blob)
            at += len(blob)
    return head, index, b"".join(blobs)


def probe() -> tuple[int, int, int]:
    """The worker's pid, niceness and scheduling policy (tests)."""
    return os.getpid(), os.nice(0), os.sched_getscheduler(0)


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _lower_priority() -> None:
    """Below every other process: SCHED_IDLE runs only on a CPU nothing else wants, and a task that wakes
    (the gateway's loop, its writer, a scanner's reader) takes the CPU from it at once, where under EEVDF a
    nice 19 task may first finish its slice (bench.bulk: scan p99 during bulk 0.5 ms lower in 3 of 4 paired
    runs). Where the policy does not exist, nice 19."""
    os.nice(19)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _start_worker(gateway_pid: int) -> None:
    die_with_parent(gateway_pid)  # its parent is the fork server, which dies with the gateway
    _lower_priority()


# -- in the gateway ------------------------------------------------------------------------------------------


def context() -> multiprocessing.context.BaseContext:
    """Workers are forked by multiprocessing's fork server, not spawned by the gateway. Spawning runs fork+exec
    in the gateway with the GIL held, and the fork copies the page tables of the gateway's whole heap: the loop
    stood still 66-95 ms with 300 MB of objects, 7-10 ms with a small heap (measured 2026-12-07), and a bulk
    set's first part found the gateway holding 100,000 SKUs. The fork server is a small single-threaded
    process (so forking it is safe), started once, early (`prestart`). Its only preload is the call that ties
    its life to the gateway's (gateway/forkserver_preload.py): a worker imports this module itself (in its own
    process, off the loop), and an idle server stays small."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gateway.forkserver_preload"])
    return ctx


SUN_PATH_MAX = 108  # Linux's limit on an AF_UNIX socket path, its terminating NUL included
# what multiprocessing puts after the base dir: "/pymp-" and 8 random characters, then "/sock-" (3.13 on) or
# "/listener-" (before) and 8 more
_SOCKET_NAME_LEN = 28 if sys.version_info >= (3, 13) else 32


def short_temp_base(base: str) -> str:
    """Where multiprocessing's private temp dir (it holds the fork server's socket) should go. A socket path
    longer than SUN_PATH_MAX cannot be bound: under a long TMPDIR the gateway's start ended in "AF_UNIX path too
    long" and a traceback. CPython 3.13 falls back to /tmp, /var/tmp or /usr/tmp then; this is the same rule for
    the Pythons before it (Debian 12 has 3.11)."""
    if len(base) + _SOCKET_NAME_LEN < SUN_PATH_MAX:
        return base
    for candidate in ("/tmp", "/var/tmp", "/usr/tmp"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return base  # nowhere shorter: binding fails, as it would have anyway


def _use_short_temp_dir() -> None:
    """Give this process's multiprocessing a temp dir under `short_temp_base`, where TMPDIR is too long."""
    from multiprocessing import process, util
    if sys.version_info >= (3, 13):
        return  # multiprocessing does it itself
    config: dict[str, Any] = getattr(process.current_process(), "_config", {})
    base = tempfile.gettempdir()
    short = short_temp_base(base)
    if short == base or config.get("tempdir"):
        return
    tempdir = tempfile.mkdtemp(prefix="pymp-", dir=short)
    util.Finalize(None, shutil.rmtree, args=(tempdir,), kwargs={"ignore_errors": True}, exitpriority=-100)
    config["tempdir"] = tempdir
    log.info("TMPDIR %s is too long for a socket path; bulk work's fork server uses %s", base, tempdir)


def prestart() -> None:
    """Start the fork server now, while the heap is small (the gateway calls this before it loads the floor)."""
    from multiprocessing import forkserver
    context()  # the server's preload is read when it starts
    _use_short_temp_dir()
    forkserver.ensure_running()


def _close_result_writer(pool: ProcessPoolExecutor) -> None:
    """Close the gateway's copy of the write end of the pool's result pipe, once the worker (which has its own
    copy) has started. A worker that dies halfway through sending a result (killed by `close(kill=True)` or by
    the OOM killer; a prepared part is megabytes) otherwise leaves the pool's manager thread in a read that
    never ends, because the pipe still has a writer: ours. `shutdown` then joins that thread forever (a
    SIGTERM'd gateway hung, 1 run in 5 of tests/bulk/test_bulk_process) and the part's future never settles.
    With our copy closed the read meets end-of-file and the pool reports itself broken (`WorkerLost`).
    The gateway never writes to this pipe: since Python 3.9 the pool wakes its thread through a pipe of its
    own. Private attributes, as in `close`; where they are missing nothing is done."""
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None and getattr(pool, "_processes", None):  # the worker started: it holds its own copy
        with contextlib.suppress(OSError):
            writer.close()


class Worker:
    """The one worker process: started on first use (by the fork server, see `context`: forking the gateway
    itself, with threads running, is unsafe), stopped by `close` (the applier calls it when it has no set
    left) or after IDLE_S unused (a part whose set never completes must not keep it)."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None  # held: a task nobody references may be collected
        self.started = 0  # processes started (tests, logs)
        self.peak_rss_kb = 0  # the largest peak RSS a worker process reported when it was closed

    @property
    def running(self) -> bool:
        return self._pool is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=context(), initializer=_start_worker,
                                             initargs=(os.getpid(),))
            self.started += 1
            log.info("bulk worker process starting")
        pool = self._pool
        self._busy += 1
        try:
            result = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            _close_result_writer(pool)
            return await result
        except BrokenProcessPool as e:
            if self._pool is pool:  # else `close` took the pool and shuts it down: twice closes its pipes twice
                self._pool = None
                await asyncio.to_thread(pool.shutdown, True)
            raise WorkerLost(f"the bulk worker process died: {e}") from None
        finally:
            self._busy -= 1
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.idle_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._busy == 0 and self._pool is not None:
            self._closing = asyncio.ensure_future(self.close())

    async def close(self, kill: bool = False) -> None:
        """Stop the process once its work in hand is done, or at once with `kill` (the gateway is stopping: a
        16 MB part can take the worker many seconds, more when the floor leaves it no CPU, and a SIGTERM must
        stop the gateway within 10 s; the part is stored and is applied again after the restart)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # ProcessPoolExecutor has no public way to stop a running task before Python 3.14.
            for proc in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
            log.info("bulk worker process killed: the gateway is stopping")
            return
        with contextlib.suppress(Exception):  # a figure for the logs and bench.bulk, never a reason to fail
            peak = await asyncio.get_running_loop().run_in_executor(pool, peak_rss_kb)
            self.peak_rss_kb = max(self.peak_rss_kb, peak)
        await asyncio.to_thread(pool.shutdown, True)
        log.info("bulk worker process stopped", extra={"fields": {"peak_rss_mb": round(self.peak_rss_kb / 1024)}})
