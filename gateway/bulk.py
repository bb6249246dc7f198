"""Bulk commands (`masterdata.sync`, `order.upsert_batch`): parts are stored as they arrive and answered
`accepted` at once; when a set is complete it is applied in the background, in small chunks, so scans and
lights never wait behind 100,000 SKUs. A bad item is skipped and reported, never the whole set. A master
data `replace` is staged as a new generation and swapped in with one commit: the floor sees the old master
data or the new, never half of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import pickle
import sqlite3
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from gateway import bulkwork
from gateway.clock import Clock, rfc3339
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.api import receive_order
from gateway.domain.change import Change
from gateway.domain.commands import BulkPart, MasterdataSync, OrderIn
from gateway.domain.errors import Busy, Conflict, DomainError
from gateway.domain.floor import Floor, MasterData
from gateway.domain.masterdata import LIST_ORDER, Checked, Outcome, apply_checked, relight, swap_generation
from gateway.domain.model import At
from gateway.domain.sessions import follow_masterdata
from gateway.domain.tasks import park, unpark
from gateway.journal import JournalError
from gateway.jsontext import dumps
from gateway.service import FloorService, settle_heap

log = logging.getLogger("floorgate.bulk")

RETRY_S = 5.0  # after a chunk failed to commit, doubling up to RETRY_MAX_S
RETRY_MAX_S = 300.0
# Rows of a staged replace per commit (see BulkApplier._write_staged). In key order a commit of 100 rows touches
# a few pages; bench.bulk, 3 paired runs: 100 rows applied the set 1-2 s sooner than 50, scan p99 no worse.
STAGE_ROWS = 100
# A part of at most INLINE_ITEMS items (or, not counted when stored, stored in at most INLINE_BYTES) is parsed
# here, not in the worker: a small sync starts no process, and parsing it takes the loop well under 1 ms.
INLINE_ITEMS = 500
INLINE_BYTES = 8 * 1024
CHUNK = 20  # items per op: about a millisecond of the loop (a scan waits for at most one)
# A set still missing parts: an alarm once no part came for WAIT_ALARM_S (an order batch's orders reach nobody
# until the set is whole), and after GIVE_UP_S it is ended with ok false, so its stored parts do not fill the
# card for good. The hub resends any part that has no result, so a set this old is one the hub left behind.
WAIT_ALARM_S = 600.0
GIVE_UP_S = 24 * 3600.0
# ... counted only while the hub can send the missing parts: the link up at least this long (a gateway off for
# a day gave up a set at once after its start, before the broker handed over the part it held for it).
ALARM_CONNECTED_S = 60.0
GIVE_UP_CONNECTED_S = WAIT_ALARM_S
ALARM_PREFIX = "bulk_incomplete:"
MISSING_SHOWN = 10  # missing part numbers named in an alarm or a result; the rest are counted


@dataclass
class _Run:
    sync_id: str
    name: str
    cmd_id: str
    total: int
    done: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    started: float = field(default_factory=time.monotonic)
    next_progress: int = 0
    staged: bool = False  # a replace: its rows are written after every item is admitted (_write_staged)
    written: int = 0  # rows of a staged replace written so far

    @property
    def progress(self) -> int:
        """Items done, as reported. A staged replace does two passes of like cost: admitting every item, then
        writing the admitted ones; each counts half, so `done` and `eta_s` move through both."""
        if not self.staged:
            return self.done
        return (self.done + self.written + len(self.outcome.rejected)) // 2


@dataclass
class _Set:
    """What the parts stored under one sync_id agreed on. A part that does not fit is refused, never stored: the
    journal keeps one row per (sync_id, part), so it once replaced a received part (its items applied by no
    one, reported nowhere), or joined a set of another command, size or mode and vanished under its ok."""
    name: str
    parts: int
    mode: str | None  # a master data set's; None for orders, or unknown (a stored part that cannot be read)
    got: dict[int, str] = field(default_factory=dict)  # part -> the cmd_id it came as
    last_at: datetime | None = None  # when its latest part was stored (wall time: it is read back at start)
    last_cmd: str | None = None  # that part's cmd_id: a set given up is answered to it
    completed_by: str | None = None
    done: bool = False  # its result is stored: only clearing its stored parts is left
    published: bool = False  # its result went out from this process (a retried clean-up does not send it again)

    @property
    def waiting(self) -> bool:
        return not self.done and len(self.got) < self.parts

    def missing(self) -> str:
        absent = [p for p in range(1, self.parts + 1) if p not in self.got]
        text = ", ".join(str(p) for p in absent[:MISSING_SHOWN])
        return text + (f" and {len(absent) - MISSING_SHOWN} more" if len(absent) > MISSING_SHOWN else "")

    def describe(self, sync_id: str) -> str:
        what = "order batch" if self.name == "order.upsert_batch" else "master data set"
        return f"{what} {sync_id!r}: {len(self.got)} of {self.parts} parts received, missing {self.missing()}"


class SetConflict(Exception):
    """Stored parts of one set that disagree (stored by a gateway that did not check them): the set is answered
    `conflict`, not applied as whichever part came first."""


Thunk = Callable[[], list[Any]]  # a chunk's items, read (unpickled or checked) when the chunk is applied


def _parsed(ts: object) -> datetime | None:
    """A stored part's `ts` (RFC 3339, UTC); None for one that cannot be read (it then counts from the start)."""
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def _inline(items: int, payload: bytes | str) -> bool:
    """Parse this part on the loop? By its item count: a few KB of zlib can hold a megabyte of repetitive JSON."""
    return 0 < items <= INLINE_ITEMS or (items == 0 and len(payload) <= INLINE_BYTES)


RELEASE_SLICE = 1_000  # entries of a swapped-out generation let go per loop turn (0.5 ms at most, measured)
# References `release` itself holds: to the generation (its frame's `md`, getrefcount's argument) and to a
# dict (the generation's attribute, the `dicts` list, `d`, getrefcount's argument). Any more: someone else.
MD_REFS = 2
DICT_REFS = 4


async def release(md: MasterData) -> int:
    """Let go of a swapped-out generation a slice at a time; returns the entries let go. Dropped at once, its
    objects (100,000 SKUs, their GTINs, 20,000 locations) are freed in one go by reference counting, on the
    loop: 31 ms measured here, a Pi is slower, and a scan waits for it. Only while nothing else holds the
    generation or one of its dicts (a reader that kept `floor.md` across an await): then it is just dropped,
    freed when that holder lets go."""
    dicts: list[dict[str, Any]] = [md.skus, md.gtins, md.locations, md.locations_by_sku, md.operators, md.badges,
                                   md.cartons]
    done = 0
    while dicts:
        d = dicts[-1]
        if sys.getrefcount(md) > MD_REFS or sys.getrefcount(d) > DICT_REFS:
            return done
        n = min(RELEASE_SLICE, len(d))
        for _ in range(n):
            d.popitem()
        done += n
        if not d:
            dicts.pop()
        await asyncio.sleep(0)
    return done


def lists_of(name: str) -> tuple[str, ...]:
    return ("orders",) if name == "order.upsert_batch" else LIST_ORDER


class BulkApplier:
    def __init__(self, service: FloorService, clock: Clock, publish_result: Callable[[dict[str, Any]], None],
                 chunk: int = CHUNK) -> None:
        self.service = service
        self.journal = service.journal
        self.clock = clock
        self.publish_result = publish_result
        self.chunk = chunk
        self.yield_factor = 0.5  # seconds of pause per second of bulk work (at most 2/3 of the loop)
        self.write_yield = 1.0  # seconds of pause per second a replace's staged commit took (_write_staged)
        self._releasing: asyncio.Future[int] | None = None  # the swapped-out generation being let go (release)
        self._sets: dict[str, _Set] = {}  # sync_id -> the set whose parts are stored under it
        self._clear_waits: dict[str, float] = {}  # sync_id -> next wait before clearing a done set's parts again
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.running: _Run | None = None
        self._busy = 0.0  # loop time of the last chunk's op
        self.worker = bulkwork.Worker()  # parses and checks parts in a process of its own (gateway/bulkwork.py)
        self.retry_s = RETRY_S
        self._waits: dict[str, float] = {}  # sync_id -> next wait before trying a failed set again
        # Rows of a replace not yet written, a heap by key: (kind, id, arrival, document as JSON text)
        self._staged: list[tuple[str, str, int, Any]] = []

    async def start(self) -> None:
        rows = await self.journal.reader.execute_fetchall(
            "SELECT sync_id, name, part, parts, cmd_id, ts FROM bulk_parts ORDER BY sync_id, part")
        for sync_id, name, part, n, cmd_id, ts in rows:
            s = self._sets.setdefault(sync_id, _Set(str(name), int(n), None))
            s.got[int(part)] = str(cmd_id)
            at = _parsed(ts)
            if s.last_at is None or (at is not None and at >= s.last_at):
                s.last_at, s.last_cmd = at or self.clock.now(), str(cmd_id)
        meta = await self.journal.read_meta()
        for sync_id, s in self._sets.items():
            s.completed_by = meta.get(f"bulk:{sync_id}:completed_by")
            done = json.loads(meta.get(f"bulk:{sync_id}:result", "null"))
            s.done = done is not None and s.completed_by is not None and done.get("cmd_id") == s.completed_by
            if len(s.got) >= s.parts or s.done:
                # complete before a restart: apply again (idempotent); or done (given up too) and not yet cleared
                self._queue.put_nowait(sync_id)
            elif s.name == "masterdata.sync":
                s.mode = await self._stored_mode(sync_id, min(s.got))
        if self._queue.empty():
            await self.worker.close()

    async def _stored_mode(self, sync_id: str, part: int) -> str | None:
        """A waiting set's mode, which its next part must share: it is kept only in the stored parts."""
        [(payload, items)] = await self.journal.reader.execute_fetchall(
            "SELECT payload, items FROM bulk_parts WHERE sync_id = ? AND part = ?", (sync_id, part))
        try:
            head, _ = (bulkwork.count(payload, LIST_ORDER) if _inline(int(items or 0), payload)
                       else await self.worker.run(bulkwork.count, payload, LIST_ORDER))
        except (ValueError, zlib.error, bulkwork.WorkerLost):
            return None  # unreadable: the set fails when it is applied, and is answered then
        mode = head.get("mode")
        return mode if isinstance(mode, str) else None

    def accept(self, change: Change, name: str, cmd: BulkPart, stored: bytes | str, items: int) -> dict[str, Any]:
        """Record one part (inside the command's own commit) as received: `stored` compressed (gateway/bulkwork.py;
        text for parts stored before), `items` how many items its lists hold (the set's progress total). Its
        items are validated when the set is applied. A part that does not fit the set stored under its sync_id
        is refused (`conflict`, stored under its cmd_id like any refusal) and changes nothing: stored, it would
        replace a received part or be applied as part of a set it does not belong to, and the hub would never
        learn of it."""
        mode = cmd.mode if isinstance(cmd, MasterdataSync) else None
        s = self._sets.get(cmd.sync_id)
        if s is not None:
            self._check_fits(s, name, cmd, mode)
        else:
            s = _Set(name, cmd.parts, mode)
        change.bulk_parts.append((cmd.sync_id, name, cmd.part, cmd.parts, cmd.cmd_id, items, stored))
        self._sets[cmd.sync_id] = s
        s.got[cmd.part] = cmd.cmd_id
        s.last_at, s.last_cmd = self.clock.now(), cmd.cmd_id
        complete = len(s.got) >= s.parts
        if complete:
            s.completed_by = cmd.cmd_id
            change.meta[f"bulk:{cmd.sync_id}:completed_by"] = cmd.cmd_id
        return {"status": "accepted", "sync_id": cmd.sync_id, "part": cmd.part, "parts": cmd.parts,
                "complete": complete}

    @staticmethod
    def _check_fits(s: _Set, name: str, cmd: BulkPart, mode: str | None) -> None:
        sync_id, part = cmd.sync_id, cmd.part
        if s.got.get(part) == cmd.cmd_id:
            return  # this very part again: its commit failed and the intake stores it again
        if s.done:
            # Not stored for dedup (`busy`): the sync_id is free as soon as the clearing succeeds.
            raise Busy(f"set {sync_id!r} is done but its stored parts are not cleared yet (storage); send this "
                       f"part again later", sync_id=sync_id)
        first = s.got[min(s.got)]
        if len(s.got) >= s.parts:
            raise Conflict(f"set {sync_id!r} ({s.parts} parts, completed by cmd {s.completed_by}) is being "
                           f"applied; its sync_id can be used for a new set once its done result is out",
                           sync_id=sync_id)
        if name != s.name:
            raise Conflict(f"set {sync_id!r} is a {s.name} set (part {min(s.got)} came as cmd {first}); a {name} "
                           f"part cannot join it", sync_id=sync_id)
        if cmd.parts != s.parts:
            raise Conflict(f"set {sync_id!r} has {s.parts} parts (part {min(s.got)} came as cmd {first}); this "
                           f"part says {cmd.parts}", sync_id=sync_id)
        if s.mode is not None and mode != s.mode:
            raise Conflict(f"set {sync_id!r} is a {s.mode} (part {min(s.got)} came as cmd {first}); this part "
                           f"says {mode}", sync_id=sync_id)
        if part in s.got:
            raise Conflict(f"part {part} of set {sync_id!r} was already received as cmd {s.got[part]}",
                           sync_id=sync_id)

    async def check_waiting(self, connected_s: float) -> None:
        """Sets still missing parts: an alarm while one has had no part for WAIT_ALARM_S (cleared when a part
        comes, or the set ends), and the set ended after GIVE_UP_S (_give_up); `connected_s`: how long the hub
        link has been up (0 while it is down), see ALARM_CONNECTED_S. Cheap when nothing waits: the hub link
        calls this every second."""
        now = self.clock.now()
        wanted: dict[str, str] = {}
        for sync_id, s in list(self._sets.items()):
            if not s.waiting or s.last_at is None:
                continue
            idle = (now - s.last_at).total_seconds()
            if idle >= GIVE_UP_S and connected_s >= GIVE_UP_CONNECTED_S:
                await self._give_up(sync_id, s)
            elif idle >= WAIT_ALARM_S and (connected_s >= ALARM_CONNECTED_S
                                           or ALARM_PREFIX + sync_id in self.service.floor.alarms):
                wanted[ALARM_PREFIX + sync_id] = (
                    f"{s.describe(sync_id)}; no part for {WAIT_ALARM_S / 60:g} minutes or more. Nothing of it is "
                    f"applied until the missing parts come; it is given up {GIVE_UP_S / 3600:g} h after its last "
                    f"part")
        alarms = self.service.floor.alarms
        stale = [a for a in alarms if a.startswith(ALARM_PREFIX) and a not in wanted]
        new = {a: m for a, m in wanted.items() if a not in alarms or alarms[a].message != m}
        if not stale and not new:
            return
        now_at = self.clock.now()

        def op(floor: Floor, change: Change) -> None:
            for alarm_id in stale:
                clear_alarm(floor, change, alarm_id, "cleared: the set is whole, or ended")
            for alarm_id, message in new.items():
                raise_alarm(floor, change, alarm_id, "bulk_incomplete", "warning", message, now_at)
        await self.service.execute(op)

    async def _give_up(self, sync_id: str, s: _Set) -> None:
        """End a set whose missing parts never came with its one `done` result, ok false, to the part that came
        last (no part completed it: the closest reading of SPEC's "the part that completed it"). Nothing of it
        was applied (parts are applied only once the set is whole); its stored parts are cleared and its
        sync_id is free for the set sent again."""
        cmd_id = s.last_cmd
        if cmd_id is None:
            return
        told = s.describe(sync_id)
        result: dict[str, Any] = {
            "cmd_id": cmd_id, "ok": False, "ts": rfc3339(self.clock.now()), "status": "done", "sync_id": sync_id,
            "applied": 0, "rejected": [],
            "error": {"code": "invalid_payload", "message": (
                f"{told}; no part came for {GIVE_UP_S / 3600:g} h, so the set was given up and nothing of it was "
                f"applied; send the whole set again")}}
        at = self.clock.now()

        def op(floor: Floor, change: Change) -> bool:
            if not s.waiting:  # its last part came in the meantime: it is applied, not given up
                return False
            s.done = True  # from here a part under its sync_id is answered `busy` until the parts are cleared
            s.completed_by = cmd_id
            change.meta[f"bulk:{sync_id}:completed_by"] = cmd_id  # after a restart: done, its parts cleared
            change.meta[f"bulk:{sync_id}:result"] = dumps(result)
            if not clear_alarm(floor, change, ALARM_PREFIX + sync_id, f"given up: {told}"):
                # never alarmed (the gateway was off while it waited): the floor still hears of it once
                raise_alarm(floor, change, ALARM_PREFIX + sync_id, "bulk_incomplete", "warning",
                            f"given up: {told}", at)
                clear_alarm(floor, change, ALARM_PREFIX + sync_id, f"given up: {told}")
            return True
        try:
            ended = await self.service.execute(op, cmd_id=cmd_id, background=True)
        except BaseException:
            s.done, s.completed_by = False, None  # not stored: it waits on, and is given up at the next check
            raise
        if not ended:
            return
        log.warning("bulk set given up: parts missing", extra={"fields": {"sync_id": sync_id, "detail": told}})
        await self._cleanup_and_publish(sync_id, result)

    def kick(self, sync_id: str) -> None:
        self._queue.put_nowait(sync_id)

    async def done_result(self, sync_id: str) -> dict[str, Any] | None:
        meta = await self.journal.read_meta()
        raw = meta.get(f"bulk:{sync_id}:result")
        return json.loads(raw) if raw else None

    async def run(self) -> None:
        while True:
            sync_id = await self._queue.get()
            try:
                await self._apply(sync_id)
            except (JournalError, sqlite3.OperationalError, bulkwork.WorkerLost) as e:
                # A chunk did not commit (disk full, I/O error), or the worker process died: nothing of it is
                # live (a replace is swapped in only at the end; a merge is rebuilt from the journal). The set is
                # tried again from its stored parts, orders from their cursor, until it is done: the hub waits
                # for its one result. A failed commit costs a rebuild of the floor, so the waits double (to
                # RETRY_MAX_S) while it keeps failing.
                self._retry(sync_id, e)
            except Exception as e:
                # Not a storage fault: applying it again would fail again (a part an older gateway stored
                # unreadable, parts that disagree, a defect). The hub still waits for its one result.
                log.exception("bulk set failed", extra={"fields": {"sync_id": sync_id}})
                run, self.running = self.running, None
                try:
                    await self._fail(sync_id, run, e)
                except (JournalError, sqlite3.OperationalError) as e2:
                    self._retry(sync_id, e2)
                else:
                    self._waits.pop(sync_id, None)
            else:
                self._waits.pop(sync_id, None)
            finally:
                self.running = None

    def _retry(self, sync_id: str, e: Exception) -> None:
        wait = self._waits.get(sync_id, self.retry_s)
        self._waits[sync_id] = min(wait * 2, RETRY_MAX_S)
        log.warning("bulk set stopped; trying again", extra={"fields": {
            "sync_id": sync_id, "error": str(e), "retry_s": wait}})
        asyncio.get_running_loop().call_later(wait, self._queue.put_nowait, sync_id)

    async def close(self, kill: bool = False) -> None:
        if self._releasing is not None and not self._releasing.done():
            self._releasing.cancel()  # the rest is freed at once: the gateway is stopping
            with contextlib.suppress(asyncio.CancelledError):
                await self._releasing
        await self.worker.close(kill)

    async def _apply(self, sync_id: str) -> None:
        stopping = False
        try:
            await self._apply_set(sync_id)
        except asyncio.CancelledError:
            stopping = True  # the gateway is stopping: the worker's part in hand is not waited for
            raise
        finally:
            if stopping:
                await self.worker.close(kill=True)
            elif self._queue.empty():
                await self.worker.close()  # an idle gateway does not keep the worker's memory

    async def _apply_set(self, sync_id: str) -> None:
        reader = self.journal.reader
        meta = await self.journal.read_meta()
        done = json.loads(meta.get(f"bulk:{sync_id}:result", "null"))
        if done is not None and done.get("cmd_id") == meta.get(f"bulk:{sync_id}:completed_by"):
            # This very set was applied and swapped before (a restart, or a clean-up that failed): never again;
            # its stored parts are cleared and its one result sent again. (A result under another cmd_id is
            # an earlier set that used the same sync_id: this one is new and is applied.)
            await self._cleanup_and_publish(sync_id, done)
            return
        rows = list(await reader.execute_fetchall(
            "SELECT name, part, parts, cmd_id, items FROM bulk_parts WHERE sync_id = ? ORDER BY part", (sync_id,)))
        if not rows or len(rows) < int(rows[0][2]):
            return
        name = rows[0][0]
        for other, part, n, cmd_id, _ in rows[1:]:
            if other != name or int(n) != int(rows[0][2]):
                raise SetConflict(f"part {part} of set {sync_id!r} (cmd {cmd_id}) is a {other} part of {n} parts, "
                                  f"part {rows[0][1]} (cmd {rows[0][3]}) a {name} part of {rows[0][2]}")
        lists = lists_of(name)
        completed_by = meta.get(f"bulk:{sync_id}:completed_by", rows[-1][3])
        parts = [int(part) for _, part, _, _, _ in rows]
        counted = {int(part): int(items or 0) for _, part, _, _, items in rows}

        async def stored(part: int) -> bytes | str:
            prow = list(await reader.execute_fetchall(
                "SELECT payload FROM bulk_parts WHERE sync_id = ? AND part = ?", (sync_id, part)))
            payload: bytes | str = prow[0][0]
            return payload

        total = 0
        for _, part, _, _, items in rows:
            if items is None or int(items) <= 0:  # stored uncounted (before counts were stored, or empty)
                payload = await stored(int(part))
                _, counts = (bulkwork.count(payload, lists) if _inline(0, payload)
                             else await self.worker.run(bulkwork.count, payload, lists))
                items = sum(counts.values())
            total += int(items)
        run = _Run(sync_id, name, completed_by, total)
        # Orders already applied before a restart are not applied again (a second `order.upsert` of an order
        # that has moved on would be refused as a conflict, and counted twice): their cursor commits with them.
        # Master data needs none: applying it again gives the same rows.
        cursor = json.loads(meta[f"bulk:{sync_id}:cursor"]) if f"bulk:{sync_id}:cursor" in meta else None
        if cursor is not None:
            run.done, run.outcome.applied = int(cursor["done"]), int(cursor["applied"])
            run.outcome.rejected = list(cursor["rejected"])
            log.info("bulk set resumed", extra={"fields": {"sync_id": sync_id, "part": cursor["part"],
                                                            "next": cursor["next"], "done": run.done}})
        self.running = run
        self._staged = []
        try:
            await self._apply_run(sync_id, run, name, lists, parts, counted, cursor, stored)
        except asyncio.CancelledError:
            raise  # the gateway is stopping: the parked tasks stay so, and the set resumes at the next start
        except Exception:
            await self._unpark(sync_id)
            raise

    async def _unpark(self, sync_id: str) -> None:
        """A set that stopped gives its parked tasks to dispatch: a failed chunk is retried, and its tasks must
        not stay aside meanwhile. If even that does not commit (a full disk), they stay parked until the set
        is done; nothing can be given out then anyway."""
        def op(floor: Floor, change: Change) -> int:
            return unpark(floor, change, sync_id)
        try:
            if await self.service.execute(op, background=True):
                self.service.notify(("dispatch", "bulk"))
        except (JournalError, sqlite3.Error) as e:
            log.warning("bulk set's parked tasks not released", extra={"fields": {"sync_id": sync_id,
                                                                                  "error": str(e)}})

    async def _apply_run(self, sync_id: str, run: _Run, name: str, lists: tuple[str, ...], parts: list[int],
                         counted: dict[int, int], cursor: dict[str, Any] | None,
                         stored: Callable[[int], Awaitable[bytes | str]]) -> None:
        log.info("bulk set started", extra={"fields": {"sync_id": sync_id, "name": name, "items": run.total}})
        is_md = name == "masterdata.sync"

        ahead = self._prepare(await stored(parts[0]), counted[parts[0]], lists, is_md)
        head, _ = await ahead
        staging: tuple[MasterData, int] | None = None
        if is_md and head.get("mode") == "replace":
            staging = (MasterData(), self.service.floor.md_gen + 1)
            run.staged = True
            # A replace that never finished (a failed commit, a restart) may have left rows of the generation
            # staged here; they must not come back with this one.
            await self.service.prune_masterdata("staging")
        # Locations refer to SKUs, which may come in any part: SKUs, cartons and operators of every part
        # first, then the locations (kept, still pickled, from the first pass). Each chunk is one commit.
        later: list[tuple[int, str, list[tuple[int, Thunk]]]] = []
        in_flight: asyncio.Task[None] | None = None
        try:
            for k, part in enumerate(parts):
                _, by_list = await ahead
                if k + 1 < len(parts):  # the next part is prepared while this one is applied
                    ahead = self._prepare(await stored(parts[k + 1]), counted[parts[k + 1]], lists, is_md)
                for list_name in lists:
                    if is_md and list_name == "locations":
                        later.append((part, list_name, by_list.get(list_name, [])))
                        continue
                    in_flight = await self._apply_chunks(run, staging, part, list_name, by_list.get(list_name, []),
                                                         cursor, in_flight)
                del by_list
            for part, list_name, chunks in later:
                in_flight = await self._apply_chunks(run, staging, part, list_name, chunks, cursor, in_flight)
            if in_flight is not None:
                await in_flight
                in_flight = None
            if staging is not None:
                await self._write_staged(run, staging[1])
        finally:
            self._staged = []  # a failed set's rows (tens of MB) are not kept through its wait before a retry
            if not ahead.done():
                ahead.cancel()
            elif not ahead.cancelled():
                ahead.exception()  # retrieved: the set's own error is what counts
            if in_flight is not None:
                if not in_flight.done():
                    in_flight.cancel()  # not awaited here: that could swallow a cancellation of this task
                elif not in_flight.cancelled():
                    in_flight.exception()
        del later
        await self._finish(run, staging)

    def _prepare(self, payload: bytes | str, items: int, lists: tuple[str, ...], check: bool
                 ) -> asyncio.Future[tuple[dict[str, Any], dict[str, list[tuple[int, Thunk]]]]]:
        """One part's envelope and its chunks, each to be read when it is applied. A large part is parsed and
        checked in the worker process (gateway/bulkwork.py), started for it if need be; a small one (a few
        hundred items) here at once, its items checked a chunk at a time on the loop."""
        async def worker() -> tuple[dict[str, Any], dict[str, list[tuple[int, Thunk]]]]:
            head, index, blob = await self.worker.run(bulkwork.prepare, payload, lists, self.chunk, check)
            view = memoryview(blob)
            return head, {name: [(start, partial(pickle.loads, view[at:at + n])) for start, at, n in spans]
                          for name, spans in index.items()}

        async def inline() -> tuple[dict[str, Any], dict[str, list[tuple[int, Thunk]]]]:
            head, chunks = bulkwork.split(payload, lists, self.chunk)
            return head, {name: [(start, partial(bulkwork.check_run, name, start, items) if check
                                  else partial(list, items)) for start, items in runs]
                          for name, runs in chunks.items()}
        return asyncio.ensure_future(inline() if _inline(items, payload) else worker())

    async def _apply_chunks(self, run: _Run, staging: tuple[MasterData, int] | None, part: int, list_name: str,
                            chunks: list[tuple[int, Thunk]], cursor: dict[str, Any] | None,
                            in_flight: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
        """Apply one list of one part, a chunk per op; returns the last chunk's commit, still in flight.

        Bulk work stands aside while anything commits (Journal.quiet, before every chunk): a scan's commit
        never runs beside it and never queues behind more than one small bulk commit. A chunk that fails to
        commit stops the set before the swap: nothing half-applied is made live."""
        name = run.name
        for start, read in chunks:
            await self.journal.quiet()
            t0 = time.perf_counter()
            items = read()
            if cursor is not None and name != "masterdata.sync":
                skip = (len(items) if part < int(cursor["part"]) else
                        max(min(int(cursor["next"]) - start, len(items)), 0) if part == int(cursor["part"]) else 0)
                items, start = items[skip:], start + skip
                if not items:
                    continue
            busy = time.perf_counter() - t0
            if in_flight is not None:
                await in_flight
            await self.journal.quiet()
            self._busy = 0.0
            if name == "masterdata.sync":
                job = self._masterdata_chunk(run, staging, list_name, items, part)
            else:
                job = self._orders_chunk(run, items, part, start)
            in_flight = asyncio.ensure_future(job)
            await asyncio.sleep(0)  # the chunk's op runs here, on the loop
            t1 = time.perf_counter()
            settle_heap()  # 100,000 new entities must not cost a scan a GC pause
            busy += self._busy + time.perf_counter() - t1
            # The floor keeps priority: bulk work takes at most part of the loop. Only its own time on the
            # loop counts (unpickling, the op, the heap); scans served between chunks are not bulk work.
            await asyncio.sleep(busy * self.yield_factor)
        return in_flight

    def _progress(self, run: _Run, change: Change, final: bool = False) -> None:
        done = run.total if final else run.progress
        if not final and done < run.next_progress:
            return
        run.next_progress = done + max(run.total // 10, 1)
        elapsed = time.monotonic() - run.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = round((run.total - done) / rate, 1) if rate > 0 else None
        data: dict[str, Any] = {"sync_id": run.sync_id, "done": done, "total": run.total,
                                "failed": len(run.outcome.rejected), "eta_s": 0.0 if final else eta}
        change.emit("bulk.progress", data)

    async def _masterdata_chunk(self, run: _Run, staging: tuple[MasterData, int] | None, list_name: str,
                                items: list[Checked], part: int) -> None:
        if staging is not None:
            await self._stage_chunk(run, staging, list_name, items, part)
            return
        def op(floor: Floor, change: Change) -> None:
            t0 = time.perf_counter()
            moved = apply_checked(floor.md, floor.md_gen, change, list_name, items, part, run.outcome)
            if moved:
                relight(floor, change, moved)
            if list_name == "operators":
                follow_masterdata(floor, change, self.service.at())
            run.done += len(items)
            if run.progress < run.total:
                self._progress(run, change)
            self._busy = time.perf_counter() - t0
        await self.service.execute(op, cmd_id=run.cmd_id, background=True)

    async def _stage_chunk(self, run: _Run, staging: tuple[MasterData, int], list_name: str, items: list[Checked],
                           part: int) -> None:
        """A `replace` is built beside the live master data, unseen until the swap. Its items are admitted a
        small chunk at a time (the loop stays free) and their rows are kept, by key, until every item is
        admitted: see _write_staged."""
        t0 = time.perf_counter()
        md, gen = staging
        change = Change(cmd_id=run.cmd_id)
        apply_checked(md, gen, change, list_name, items, part, run.outcome)
        run.done += len(items)
        heap, n = self._staged, len(self._staged)
        for k, (_, kind, key, text) in enumerate(change.masterdata):
            heapq.heappush(heap, (kind, key, n + k, text))
        self._busy = time.perf_counter() - t0
        if run.progress >= run.next_progress:
            def op(floor: Floor, change: Change) -> None:
                self._progress(run, change)
            await self.service.execute(op, cmd_id=run.cmd_id, background=True)

    async def _write_staged(self, run: _Run, gen: int) -> None:
        """Write a replace's rows in key order, STAGE_ROWS per commit, once all of them are known. Written as
        they were admitted, part by part, each row of a later part landed on another page of the table (a hub
        may slice its lists any way: bench.bulk's parts take every tenth SKU), and every commit rewrote some
        25 pages for 60 rows: 100 KB of WAL per commit, 210 MB for 120,000 items. A scan's commit pays for
        those bytes, its fsync flushing them (bench.bulk: half the scan commits' fsyncs took over 0.7 ms during
        bulk work, against 0.45 idle). In key order a commit appends to a few pages. Rows wait in memory for
        this (some 40 MB for 120,000), never in the journal: a restart applies the stored parts again. A row
        whose key came twice is written in arrival order, so the last one stays, as before.

        After each commit the writer is left alone as long as the commit took (`write_yield`): back to back,
        every scan of the write phase waited for one, and half of bench.bulk's slowest scans fell in it. Paced,
        scan p99 during bulk was lower in 6 of 7 paired runs (3.1-3.8 against 3.7-4.9 ms on a quiet machine),
        for 1-2 s more."""
        heap = self._staged
        while heap:
            await self.journal.quiet()
            rows = [(gen, kind, key, text) for kind, key, _, text in
                    (heapq.heappop(heap) for _ in range(min(STAGE_ROWS, len(heap))))]

            def op(floor: Floor, change: Change, rows: list[tuple[int, str, str, Any]] = rows) -> None:
                change.masterdata.extend(rows)
                change.unseen = True  # a generation not yet live: the floor's commits may go first
                run.written += len(rows)
                if run.progress < run.total:
                    self._progress(run, change)
            t0 = time.perf_counter()
            await self.service.execute(op, cmd_id=run.cmd_id, background=True)
            await asyncio.sleep((time.perf_counter() - t0) * self.write_yield)

    async def _orders_chunk(self, run: _Run, orders: list[Any], part: int, start: int) -> None:
        at = At(self.clock.now(), self.clock.monotonic())

        def op(floor: Floor, change: Change) -> None:
            t0 = time.perf_counter()
            for i, raw in enumerate(orders):
                try:
                    order = OrderIn.model_validate(raw)
                    sub = Change(cmd_id=change.cmd_id)
                    receive_order(floor, sub, order, at)
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(x) for x in err["loc"])
                    reason = f"{where}: {err['msg']}" if where else str(err["msg"])
                    run.outcome.rejected.append({"list": "orders", "part": part, "index": start + i,
                                                 "reason": reason})
                    continue
                except DomainError as e:
                    run.outcome.rejected.append({"list": "orders", "part": part, "index": start + i,
                                                 "reason": f"{e.code}: {e.message}"})
                    continue
                change.absorb(sub)
                run.outcome.applied += 1
                # Its tasks wait until the whole set is in: dispatch gives out the most urgent orders of the set
                # first. Given out as they came, 20 at a time, a backlog of 8,000 filled every picker with the
                # first orders of the batch while orders due hours earlier waited behind them.
                park(floor, change, run.sync_id, f"{run.sync_id}:{part}:{start}", order.order_id)
            run.done += len(orders)
            change.meta[f"bulk:{run.sync_id}:cursor"] = dumps({
                "part": part, "next": start + len(orders), "done": run.done, "applied": run.outcome.applied,
                "rejected": run.outcome.rejected})
            if run.progress < run.total:
                self._progress(run, change)
            self._busy = time.perf_counter() - t0
        await self.service.execute(op, cmd_id=run.cmd_id, background=True)

    async def _finish(self, run: _Run, staging: tuple[MasterData, int] | None) -> None:
        result: dict[str, Any] = {"cmd_id": run.cmd_id, "ok": True, "ts": rfc3339(self.clock.now()),
                                  "status": "done", "sync_id": run.sync_id, "applied": run.outcome.applied,
                                  "rejected": run.outcome.rejected}

        old: list[MasterData] = []

        def op(floor: Floor, change: Change) -> None:
            if staging is not None:
                old.append(floor.md)
                swap_generation(floor, change, staging[0], staging[1])
                follow_masterdata(floor, change, self.service.at())
            self._progress(run, change, final=True)
            change.meta[f"bulk:{run.sync_id}:result"] = dumps(result)
            released.append(unpark(floor, change, run.sync_id))  # the set's tasks go to dispatch together

        released: list[int] = []
        await self.service.execute(op, cmd_id=run.cmd_id, background=True)
        if released and released[0]:
            self.service.notify(("dispatch", "bulk"))
        self._stored(run.sync_id)
        if old and old[0] is not self.service.floor.md:
            self._releasing = asyncio.ensure_future(release(old.pop()))
        log.info("bulk set done", extra={"fields": {"sync_id": run.sync_id, "applied": run.outcome.applied,
                                                     "rejected": len(run.outcome.rejected)}})
        await self._cleanup_and_publish(run.sync_id, result)

    def _stored(self, sync_id: str) -> None:
        """The set's result is committed: it is done, and a new part under its sync_id starts a new set as soon
        as its stored parts are cleared (until then it is answered `busy`, so it comes again)."""
        s = self._sets.get(sync_id)
        if s is not None:
            s.done = True

    async def _fail(self, sync_id: str, run: _Run | None, e: Exception) -> None:
        """End a set that cannot be applied with its one `done` result, ok false, to the part that completed it,
        and free its sync_id. What a merge or a batch committed before it stopped is live and counted; a
        replace is never swapped in, so nothing of it is."""
        meta = await self.journal.read_meta()
        done = json.loads(meta.get(f"bulk:{sync_id}:result", "null"))
        s = self._sets.get(sync_id)
        cmd_id = meta.get(f"bulk:{sync_id}:completed_by") or (s.completed_by if s else None) or (
            run.cmd_id if run else None)
        if done is not None and done.get("cmd_id") == cmd_id:
            await self._cleanup_and_publish(sync_id, done)  # it failed after its result was stored
            return
        if cmd_id is None:
            log.error("bulk set failed with no part left to answer", extra={"fields": {"sync_id": sync_id}})
            return
        live = run is not None and not run.staged
        applied = run.outcome.applied if run is not None and live else 0
        if isinstance(e, SetConflict):
            code, message = "conflict", f"the stored parts disagree: {e}; nothing of the set was applied"
        elif isinstance(e, bulkwork.StreamError):
            code, message = "invalid_payload", f"a stored part cannot be read: {e}"
        else:
            code, message = "invalid_payload", (f"the gateway could not apply this set ({type(e).__name__}); "
                                                f"the details are in its log")
        if applied:
            message += f"; {applied} items were applied before it stopped"
        result: dict[str, Any] = {
            "cmd_id": cmd_id, "ok": False, "ts": rfc3339(self.clock.now()), "status": "done", "sync_id": sync_id,
            "applied": applied, "rejected": run.outcome.rejected if run is not None and live else [],
            "error": {"code": code, "message": message}}

        def op(floor: Floor, change: Change) -> int:
            change.meta[f"bulk:{sync_id}:result"] = dumps(result)
            return unpark(floor, change, sync_id)
        if await self.service.execute(op, cmd_id=cmd_id, background=True):
            self.service.notify(("dispatch", "bulk"))
        self._stored(sync_id)
        await self._cleanup_and_publish(sync_id, result)

    async def _cleanup_and_publish(self, sync_id: str, result: dict[str, Any]) -> None:
        """The set is done once its result is stored: clearing its parts is housekeeping, and if that fails (a
        full disk) the result still goes out, once; the clearing is tried again later (and at the next start).
        Its sync_id stays taken until then: a new set's parts must not be stored beside the old ones."""
        async def cleanup(db: Any) -> None:
            await db.execute("DELETE FROM bulk_parts WHERE sync_id = ?", (sync_id,))
            await db.execute("DELETE FROM meta WHERE key IN (?, ?)", (f"bulk:{sync_id}:completed_by",
                                                                     f"bulk:{sync_id}:cursor"))
        s = self._sets.get(sync_id)
        try:
            await self.journal.run_job(cleanup)
        except (JournalError, sqlite3.Error) as e:
            wait = self._clear_waits.get(sync_id, self.retry_s)
            self._clear_waits[sync_id] = min(wait * 2, RETRY_MAX_S)
            log.warning("bulk set's parts not cleared; trying again", extra={"fields": {
                "sync_id": sync_id, "error": str(e), "retry_s": wait}})
            asyncio.get_running_loop().call_later(wait, self._queue.put_nowait, sync_id)
        else:
            self._sets.pop(sync_id, None)
            self._clear_waits.pop(sync_id, None)
        if s is None or not s.published:
            if s is not None:
                s.published = True
            self.publish_result(result)
