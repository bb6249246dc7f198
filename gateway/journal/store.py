"""The journal: one SQLite file, one writer connection, group commit.

Every `Change` (entity documents, events, command result, audit rows) is written in one transaction; many
changes that arrive while a commit is under way share the next one, so `synchronous=FULL` (an fsync per
commit) costs little per event. Events are numbered here: `seq` grows by exactly one per event within a
journal and survives crashes, because a batch either commits whole or not at all and numbering restarts
from the last committed seq after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite
import orjson

from gateway.clock import Clock, rfc3339
from gateway.domain.change import Change
from gateway.ids import uuid7_many
from gateway.journal.schema import migrate
from gateway.jsontext import dumps, json_str
from gateway.logs import log_events

log = logging.getLogger("floorgate.journal")

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "FULL",
    "busy_timeout": "5000",
    "foreign_keys": "ON",
    "wal_autocheckpoint": "0",  # checkpoints run beside the writer (Journal._checkpointer), never in a commit
    "cache_size": "-8000",
    "temp_store": "MEMORY",
}
MAX_BATCH = 512  # changes per commit; bounds the latency one batch can add
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024  # a passive checkpoint beside the writer after about this much written
# The WAL restarts from its beginning (and is cut back to this size) only once a checkpoint has copied all of it
# while no commit came in between. Under a steady stream of commits the checkpointer beside the writer never
# gets there, and the WAL grew without end (bench.journal_append: 225 MB after 3 s), every commit lengthening
# the file, which made its fsync dearer (one-commit-per-event: 5,000/s growing, 7,400/s reusing the file). Past
# this size the writer finishes a checkpoint itself, between two batches, after the first batch's callers were
# answered.
WAL_LIMIT_BYTES = 16 * 1024 * 1024
FINISH_RETRY_BATCHES = 16  # a checkpoint kept from the end by a reader is tried again this many batches later


class JournalError(Exception):
    """A commit failed; nothing of the change was stored and the caller was shown nothing."""


class StorageFull(JournalError):
    """The disk (or SQLite's page limit) is full."""


class JournalUnavailable(JournalError):
    """The journal is recovering from a failed commit; retry shortly."""


SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes: "database disk image is malformed", "not a database"


class JournalDamaged(Exception):
    """The database file cannot be opened as a journal at all (not SQLite, a destroyed header): nothing a
    restart mends. Said in one line naming the file and what to do, not as a traceback."""


class StoredEvent(NamedTuple):
    seq: int
    type: str
    body: str


# An event as submitted: (seq, type, ts, order_id, the envelope's "cmd_id" member or "", data as JSON text). Its
# envelope is completed when its batch is written (_envelopes): the id, and the text around the data.
_Draft = tuple[int, str, str, str | None, str, str]
# An event row as stored: (seq, event_id, type, ts, order_id, journal, body).
_EventRow = tuple[int, str, str, str, str | None, str, str]


@dataclass(slots=True)
class _Pending:
    events: list[_Draft]
    docs_put: list[tuple[str, str, str]]
    docs_del: list[tuple[str, str]]
    md_put: list[tuple[int, str, str, str]]
    md_del: list[tuple[int, str, str]]
    meta: list[tuple[str, str]]
    result: tuple[str, str, str, str] | None
    audit: list[tuple[str, str, str | None, str | None, str | None, str | None, str | None, str | None, str]]
    bulk: list[tuple[str, str, int, int, str, str, int, bytes | str]]
    last_seq: int
    future: asyncio.Future[list[StoredEvent]] = field(repr=False)
    background: bool = False  # bulk work (Change.background)
    unseen: bool = False  # Change.unseen


def _deferrable(p: _Pending) -> bool:
    """Rows nobody reads yet (Change.unseen) and nothing else: no event (no seq), no state the floor sees. They
    may commit after changes submitted later: nothing those changes did can depend on them."""
    return (p.unseen and not (p.events or p.bulk or p.docs_put or p.docs_del or p.meta or p.audit)
            and p.result is None)


@dataclass(slots=True)
class _Job:
    fn: Callable[[aiosqlite.Connection], Awaitable[Any]]
    future: asyncio.Future[Any]


def run_in_connection(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Awaitable[Any]:
    """Run `fn(sqlite3_connection)` in the aiosqlite connection's own thread, as one call.

    aiosqlite has no public way to run several statements in one trip to its thread; its `_execute` has been
    stable for years and a test (tests/foundation/test_journal.py) fails loudly if it ever goes.
    """
    execute: Callable[[Callable[[], Any]], Awaitable[Any]] = db._execute
    return execute(lambda: fn(db._conn))


@dataclass(slots=True)
class _Rows:
    """Everything one batch writes, gathered on the loop, written in the connection's thread."""

    events: list[_EventRow]
    bulk: list[tuple[str, str, int, int, str, str, int, bytes | str]]
    docs_put: list[tuple[str, str, str]]
    docs_del: list[tuple[str, str]]
    md_put: list[tuple[int, str, str, str]]
    md_del: list[tuple[int, str, str]]
    meta: list[tuple[str, str]]
    results: list[tuple[str, str, str, str]]
    audit: list[tuple[str, str, str | None, str | None, str | None, str | None, str | None, str | None, str]]
    last_seq: int
    # Bulk rows that nobody has seen yet (no event, no received part): committed without an fsync of their own
    # (synchronous=NORMAL, still corruption-safe in WAL mode); the next floor commit's fsync makes them durable,
    # and a crash before it loses only work the bulk set redoes from its stored parts.
    relaxed: bool = False

    @classmethod
    def of(cls, batch: list[_Pending], events: list[_EventRow]) -> _Rows:
        rows = cls(events, [], [], [], [], [], [], [], [], 0, True)
        for p in batch:  # one pass, touching only what a change holds: most hold events and a document or two
            if p.docs_put:
                rows.docs_put += p.docs_put
            if p.docs_del:
                rows.docs_del += p.docs_del
            if p.md_put:
                rows.md_put += p.md_put
            if p.md_del:
                rows.md_del += p.md_del
            if p.meta:
                rows.meta += p.meta
            if p.result is not None:
                rows.results.append(p.result)
            if p.audit:
                rows.audit += p.audit
            if p.bulk:
                rows.bulk += p.bulk
            if rows.relaxed and not (p.background and not p.events and not p.bulk and p.result is None):
                rows.relaxed = False
            if p.last_seq > rows.last_seq:
                rows.last_seq = p.last_seq
        return rows

    def size(self) -> int:
        """About how many bytes these rows add to the WAL (their text; SQLite adds its pages' overhead)."""
        return (sum(len(r[6]) for r in self.events) + sum(len(r[7]) for r in self.bulk)
                + sum(len(r[2]) for r in self.docs_put) + sum(len(r[3]) for r in self.md_put)
                + sum(len(r[8]) for r in self.audit) + sum(len(r[3]) for r in self.results))

    def write(self, conn: sqlite3.Connection) -> None:
        if self.relaxed:
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._write(conn)
            finally:
                conn.execute("PRAGMA synchronous=FULL")
        else:
            self._write(conn)

    def _write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.events:
                _insert_events(conn, self.events)
            if self.bulk:
                conn.executemany("INSERT OR REPLACE INTO bulk_parts(sync_id, name, part, parts, cmd_id, ts, items, "
                                 "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.bulk)
            if self.docs_put:
                conn.executemany("INSERT OR REPLACE INTO docs(kind, id, body) VALUES (?, ?, ?)", self.docs_put)
            if self.docs_del:
                conn.executemany("DELETE FROM docs WHERE kind = ? AND id = ?", self.docs_del)
            if len(self.md_put) > 20:
                # One statement, one step: executemany hands the GIL back and forth once per row, and beside a
                # busy loop each hand-back waits (a 500-row commit measured 2 ms alone, 23 ms beside bulk work).
                conn.execute("INSERT OR REPLACE INTO masterdata(gen, kind, id, body) SELECT value->>0, value->>1, "
                             "value->>2, value->>3 FROM json_each(?)", (orjson.dumps(self.md_put),))
            elif self.md_put:
                conn.executemany("INSERT OR REPLACE INTO masterdata(gen, kind, id, body) VALUES (?, ?, ?, ?)",
                                 self.md_put)
            if self.md_del:
                conn.executemany("DELETE FROM masterdata WHERE gen = ? AND kind = ? AND id = ?", self.md_del)
            if self.meta:
                conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", self.meta)
            if self.results:
                conn.executemany("INSERT OR IGNORE INTO commands(cmd_id, name, ts, result) VALUES (?, ?, ?, ?)",
                                 self.results)
            if self.audit:
                conn.executemany("INSERT INTO audit(ts, kind, device_id, operator_id, order_id, lot, raw, result, "
                                 "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.audit)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?)", (str(self.last_seq),))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise


# 128 rows x 7 values stays under 999, the bound on a statement's parameters of SQLite before 3.32.
_EVENT_CHUNKS = (128, 64, 32, 16, 8, 4, 2, 1)
_EVENT_SQL = {n: "INSERT INTO events(seq, event_id, type, ts, order_id, journal, body) VALUES "
                 + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * n) for n in _EVENT_CHUNKS}


def _insert_events(conn: sqlite3.Connection, events: list[_EventRow]) -> None:
    """A batch's events in a few multi-row statements (128 rows each, the rest by powers of two; each prepared
    once), not one statement per row: executemany steps once per row and hands the GIL back after every step,
    and each hand-back waits behind a busy loop; a multi-row insert is also ~10% cheaper in SQLite itself."""
    i, n = 0, len(events)
    for size in _EVENT_CHUNKS:
        while n - i >= size:
            conn.execute(_EVENT_SQL[size], [x for row in events[i:i + size] for x in row])
            i += size


def ensure_identity(conn: sqlite3.Connection, site: str, gateway: str, now: str, path: str) -> dict[str, str]:
    """The journal's identity in `meta`, made on first use: whatever opens a database first (the gateway, or
    `floorgate user set-password` before the first start) gives it its journal id and names. A database left
    without them was backed up into a file that `restore` refused."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "journal_id" in meta and (meta.get("site"), meta.get("gateway")) == (site, gateway):
        return meta  # the usual case: nothing to write
    # Read again under the write lock: the gateway's first start and `user set-password` may both be here.
    conn.execute("BEGIN IMMEDIATE")
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if "journal_id" not in meta:
            meta = {"journal_id": str(uuid.uuid4()), "journal_start_seq": "1", "last_seq": "0",
                    "created_at": now, "site": site, "gateway": gateway, "md_gen": "1"}
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
        elif (meta.get("site"), meta.get("gateway")) != (site, gateway):
            # The gateway was renamed in its config: the journal is its, under the new name. Kept at the first
            # name, the gateway's own later backups were refused by `restore` as another gateway's.
            log.warning("journal renamed to follow the config (a renamed gateway; if not, check data_dir)",
                        extra={"fields": {"path": path, "was": f"{meta.get('site')}/{meta.get('gateway')}",
                                          "now": f"{site}/{gateway}", "journal": meta["journal_id"]}})
            meta = {**meta, "site": site, "gateway": gateway}
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             [("site", site), ("gateway", gateway)])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return meta


def _prepare(path: str, site: str, gateway: str, now: str) -> dict[str, Any]:
    """Open-time work in a worker thread: pragmas, migrations, quick_check, the journal identity."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=wal").fetchone()[0]
        if mode != "wal":
            raise JournalError(f"{path}: cannot switch the database to WAL mode (got {mode!r})")
        version = migrate(conn)
        check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        meta = ensure_identity(conn, site, gateway, now, path)
        row = conn.execute("SELECT max(seq) FROM events").fetchone()
        max_seq = int(row[0]) if row[0] is not None else 0
        return {"version": version, "quick_check": check, "meta": meta, "max_seq": max_seq}
    finally:
        conn.close()


class Journal:
    def __init__(self, path: Path, site: str, gateway: str, clock: Clock) -> None:
        self.path = path
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self.journal_id = ""
        self.start_seq = 1
        self.last_seq = 0  # last committed
        self._next_seq = 1  # next to hand out
        self.integrity: list[str] = ["ok"]
        self.meta: dict[str, str] = {}
        self.schema_version = 0
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # The writer's queue: a deque and one waiter, not an asyncio.Queue, whose bookkeeping (unfinished-task
        # counts, a getter list) cost a microsecond per change on the hot path for features unused here.
        self._queue: deque[_Pending | _Job | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._ckpt: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self.checkpoints = 0
        # Bytes of rows committed since the checkpointer last started: it copies every CHECKPOINT_WAL_BYTES of
        # them, woken by the writer (polling the WAL's size does not work: a restarted WAL keeps its length).
        self._unchecked = 0
        self._checkpoint_due = asyncio.Event()
        self._checkpointing = asyncio.Lock()  # one checkpoint at a time: the writer's or the one beside it
        self.finished_checkpoints = 0  # by the writer, past WAL_LIMIT_BYTES
        self._next_finish = 0  # self.commits from which the writer may finish a checkpoint again
        self._failed: JournalError | None = None
        self._listeners: list[Callable[[list[StoredEvent]], None]] = []
        self._failure_listeners: list[Callable[[JournalError], None]] = []
        self.commits = 0
        self.events_written = 0
        self.log_events = True
        self._pending = 0  # changes submitted and not yet taken by the writer to a commit or a failure
        self._idle = asyncio.Event()
        self._idle.set()

    # -- life cycle -----------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, *, site: str, gateway: str, clock: Clock,
                   max_page_count: int | None = None) -> Journal:
        j = cls(Path(path), site, gateway, clock)
        j.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = await asyncio.to_thread(_prepare, str(j.path), site, gateway, rfc3339(clock.now()))
        except sqlite3.DatabaseError as e:
            if int(getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF not in (SQLITE_NOTADB, SQLITE_CORRUPT):
                raise  # locked, read-only, I/O, a failed migration: not a reason to set the file aside
            raise JournalDamaged(f"{j.path} is not a usable Floorgate database ({e}); restore the last backup "
                                 "(floorgate restore), or move the file aside to start an empty journal") from None
        j.schema_version = info["version"]
        j.integrity = info["quick_check"]
        j.meta = info["meta"]
        j.journal_id = j.meta["journal_id"]
        j.start_seq = int(j.meta.get("journal_start_seq", "1"))
        j.last_seq = max(int(j.meta.get("last_seq", "0")), info["max_seq"])
        j._next_seq = j.last_seq + 1
        j._db = await aiosqlite.connect(str(j.path), isolation_level=None)
        for k, v in PRAGMAS.items():
            await j._db.execute(f"PRAGMA {k}={v}")
        await j._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # a restarted WAL is cut back to it
        if max_page_count is not None:
            await j._db.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        j._reader = await aiosqlite.connect(str(j.path), isolation_level=None)
        await j._reader.execute("PRAGMA busy_timeout=5000")
        await j._reader.execute("PRAGMA query_only=1")
        j._ckpt = await aiosqlite.connect(str(j.path), isolation_level=None)
        await j._ckpt.execute("PRAGMA busy_timeout=5000")
        j._writer = asyncio.create_task(j._run_writer(), name="journal-writer")
        j._checkpoints = asyncio.create_task(j._checkpointer(), name="journal-checkpointer")
        if j.integrity != ["ok"]:
            log.error("journal quick_check failed", extra={"fields": {"detail": j.integrity[:5]}})
        return j

    async def close(self) -> None:
        self._closing = True  # from now on nothing new is taken: what came after the writer's stop marker
        # would be neither written nor answered
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._writer is not None:
            self._put(None)
            await self._writer
            self._writer = None
        if self._ckpt is not None:
            with contextlib.suppress(sqlite3.Error):
                # A courtesy (the next open copies whatever is left), so it waits briefly: after a failed commit
                # on a full disk it found the database busy and waited the whole busy timeout (5 s) of a SIGTERM.
                await self._ckpt.execute("PRAGMA busy_timeout=200")
                await self._ckpt.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for conn in (self._db, self._reader, self._ckpt):
            if conn is not None:
                await conn.close()
        self._db = self._reader = self._ckpt = None

    async def _checkpointer(self) -> None:
        """Copy the WAL into the database beside the writer (PASSIVE: never blocks a commit), so a commit (and a
        scan waiting on it) does not pay for a checkpoint's writes and fsync. Only under a stream of commits
        that never pauses does the writer copy the rest itself (past WAL_LIMIT_BYTES, _finish_checkpoint)."""
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            self._unchecked = 0
            if self._ckpt is None:
                return
            async with self._checkpointing:
                try:
                    await self._ckpt.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                except sqlite3.Error as e:
                    log.warning("checkpoint failed; will try again", extra={"fields": {"error": str(e)}})

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        return self._writer

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and not self._writer.done()

    @property
    def integrity_ok(self) -> bool:
        return self.integrity == ["ok"]

    def on_commit(self, fn: Callable[[list[StoredEvent]], None]) -> None:
        self._listeners.append(fn)

    def on_failure(self, fn: Callable[[JournalError], None]) -> None:
        self._failure_listeners.append(fn)

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, change: Change) -> asyncio.Future[list[StoredEvent]]:
        """Number and serialize `change` now (a snapshot of its entities), commit it with the next batch."""
        if self._failed is not None:
            raise JournalUnavailable(f"journal recovering from a failed commit: {self._failed}")
        if self._writer is None or self._closing:
            raise JournalUnavailable("journal is closed")
        fut: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        ts = self.clock.stamp()
        events: list[_Draft] = []
        if change.events:
            change.sequence(self._next_seq)
            cmd = f'"cmd_id":{dumps(change.cmd_id)},' if change.cmd_id is not None else ""
            for ev in change.events:
                try:  # the data is encoded now: the caller may change its dicts once this returns
                    data = orjson.dumps(ev.data).decode()
                except TypeError:
                    data = dumps(ev.data)
                if not isinstance(ev.type, str) or not (ev.order_id is None or isinstance(ev.order_id, str)):
                    # Refused here, to this caller, before the seq moves: the envelope is completed in the writer,
                    # where a bad value would fail the whole batch.
                    raise TypeError(f"event type and order_id must be text: {ev.type!r}, {ev.order_id!r}")
                events.append((ev.seq, ev.type, ts, ev.order_id, cmd, data))
            self._next_seq += len(events)
        docs_put: list[tuple[str, str, str]] = []
        docs_del: list[tuple[str, str]] = []
        if change.docs:
            for (kind, key), doc in change.docs.items():
                if doc is None:
                    docs_del.append((kind, key))
                else:
                    docs_put.append((kind, key, dumps(doc.to_doc())))
        md_put: list[tuple[int, str, str, str]] = []
        md_del: list[tuple[int, str, str]] = []
        if change.masterdata:
            for g, k, i, d in change.masterdata:
                if d is None:
                    md_del.append((g, k, i))
                else:
                    md_put.append((g, k, i, d if isinstance(d, str) else dumps(d)))
        result = None
        if change.result is not None:
            rid, name, res = change.result
            result = (rid, name, ts, dumps(res))
        audit = [(a.get("ts", ts), a["kind"], a.get("device_id"), a.get("operator_id"), a.get("order_id"),
                  a.get("lot"), a.get("raw"), a.get("result"), dumps(a)) for a in change.audit] if change.audit else []
        bulk = [(sid, name, part, parts, cid, ts, items, payload)
                for sid, name, part, parts, cid, items, payload in change.bulk_parts] if change.bulk_parts else []
        self._put(_Pending(events, docs_put, docs_del, md_put, md_del,
                           list(change.meta.items()) if change.meta else [], result, audit, bulk,
                           self._next_seq - 1, fut, change.background, change.unseen))
        self._pending += 1
        self._idle.clear()
        return fut

    def _put(self, item: _Pending | _Job | None) -> None:
        self._queue.append(item)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def _settle(self, n: int) -> None:
        """`n` changes reached their end (committed or failed). Counted here rather than in a done-callback on
        each future: that callback was one more loop turn per change (bench.journal_append)."""
        self._pending -= n
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()

    async def quiet(self) -> None:
        """Wait until nothing is being committed. Bulk work calls this between its slices, so that a scan's
        commit never runs beside it: the commit runs in the writer's thread, which needs the GIL back after
        every SQLite step, and a loop kept busy by bulk work hands it back late (bench.bulk: a scan's commit
        took 40-120 ms beside bulk work, 1-2 ms once bulk work stood aside; the bulk's own commits run
        faster alone too). Always lets the loop turn once."""
        await asyncio.sleep(0)
        while self._pending:
            await self._idle.wait()

    async def commit(self, change: Change) -> list[StoredEvent]:
        return await self.submit(change)

    async def run_job(self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """Run `fn(conn)` on the writer connection between batches (maintenance, pruning, backups). `fn` must
        not leave a statement open (read rows with `execute_fetchall`), or the next commit cannot finish."""
        if self._writer is None or self._closing:
            raise JournalUnavailable("journal is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Job(fn, fut))
        return await fut

    def reset_after_failure(self) -> None:
        """Accept changes again once the owner has rebuilt its state from what is committed."""
        self._next_seq = self.last_seq + 1
        self._failed = None

    async def _run_writer(self) -> None:
        q = self._queue
        while True:
            while not q:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            item = q.popleft()
            if item is None:
                return
            if isinstance(item, _Job):
                await self._run_one_job(item)
                continue
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH and q:
                nxt = q.popleft()
                if nxt is None:
                    stop = True
                    break
                if isinstance(nxt, _Job):
                    if batch:
                        await self._write_batch(batch)
                        batch = []
                    await self._run_one_job(nxt)
                    continue
                batch.append(nxt)
            if batch:
                await self._write_split(batch)
            if self.commits >= self._next_finish and self._wal_size() > WAL_LIMIT_BYTES:
                await self._finish_checkpoint()
            if stop:
                return

    def _wal_size(self) -> int:
        try:
            return os.stat(str(self.path) + "-wal").st_size
        except OSError:
            return 0

    async def _finish_checkpoint(self) -> None:
        """Copy what is left of the WAL from the writer's own connection: no commit can come in between, so (unless
        a reader still reads an older snapshot) all of it is copied and the next commit restarts the WAL.

        It first waits for a copy the checkpointer beside is making: SQLite runs one checkpoint at a time and
        answers a second PASSIVE one busy at once, so the writer's failed and was put off FINISH_RETRY_BATCHES
        batches, again and again while the one beside ran often or slowly (a noisy CI disk: a 256 KB limit
        reached 2.7 MB; the checkpointer beside run every 64 KB: 8.6 MB)."""
        async with self._checkpointing:
            try:
                rows = await run_in_connection(self._conn,
                                               lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
            except sqlite3.Error as e:
                log.warning("checkpoint failed; will try again", extra={"fields": {"error": str(e)}})
                rows = []
        _, frames, copied = rows[0] if rows else (1, -1, -1)
        if 0 <= frames == copied:
            self.finished_checkpoints += 1
            self._unchecked = 0  # all of it is copied: the checkpointer beside has nothing to do yet
            self._checkpoint_due.clear()
        else:  # a reader still reads an older snapshot (or the checkpointer beside held the lock): later
            self._next_finish = self.commits + FINISH_RETRY_BATCHES

    async def _write_split(self, batch: list[_Pending]) -> None:
        """Commit `batch`, the floor's changes ahead of the staged bulk rows queued before them: a scan that
        arrived while a bulk commit ran would otherwise share the next commit with 50-100 master data rows and
        wait for their writing too (bench.bulk: 1.9 against 0.7 ms in the writer's thread)."""
        later = [p for p in batch if _deferrable(p)]
        if not later or len(later) == len(batch) or any(p.md_put or p.md_del for p in batch if not _deferrable(p)):
            await self._write_batch(batch)
            return
        await self._write_batch([p for p in batch if not _deferrable(p)])
        await self._write_batch(later)

    async def _run_one_job(self, job: _Job) -> None:
        try:
            res = await job.fn(self._conn)
        except BaseException as e:
            if not job.future.done():
                job.future.set_exception(e)
        else:
            if not job.future.done():
                job.future.set_result(res)

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise JournalUnavailable("journal is closed")
        return self._db

    async def _write_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        if self._failed is not None:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(self._failed)
            self._settle(len(batch))
            return
        db = self._conn
        try:
            events = self._envelopes([e for p in batch for e in p.events])
            rows = _Rows.of(batch, events)
            rows.last_seq = max(rows.last_seq, self.last_seq)  # a deferred batch (_write_split) comes after newer
            # The whole transaction in one trip to the connection's thread: every extra round trip would wait
            # a full turn of a busy event loop, and a scan's commit would pay for each.
            await run_in_connection(db, rows.write)
        except Exception as e:  # SQLite's errors, and a bug in preparing the rows: either way nothing is stored
            self._fail(batch, e)
            return
        self.last_seq = max(self.last_seq, rows.last_seq)
        self.commits += 1
        self._unchecked += rows.size()
        if self._unchecked >= CHECKPOINT_WAL_BYTES:
            self._checkpoint_due.set()
        self._settle(len(batch))
        self.events_written += len(events)
        stored = [StoredEvent(e[0], e[2], e[6]) for e in events]
        i = 0
        for p in batch:
            n = len(p.events)
            if not p.future.done():
                p.future.set_result(stored[i:i + n])
            i += n
        try:
            if self.log_events:
                log_events(events)
        except Exception:  # a broken stdout must never stop the journal
            log.exception("could not write event log lines")
        for fn in self._listeners:
            try:
                fn(stored)
            except Exception:
                log.exception("commit listener failed", extra={"fields": {"listener": repr(fn)}})

    def _envelopes(self, drafts: list[_Draft]) -> list[_EventRow]:
        """The batch's event rows, each envelope assembled as text around its data's JSON: this is the hot path
        (bench.journal_append), done here for a whole batch in one comprehension, its ids taken at once."""
        if not drafts:
            return []
        jid = self.journal_id
        head = f'{{"v":1,"journal":"{jid}","event_id":"'
        where = f'"site":"{self.site}","gateway":"{self.gateway}",'
        return [(seq, eid, typ, ts, oid, jid,
                 f'{head}{eid}","seq":{seq},"type":"{typ}","ts":"{ts}",{where}{cmd}"data":{data}}}' if oid is None else
                 f'{head}{eid}","seq":{seq},"type":"{typ}","ts":"{ts}",{where}"order_id":{json_str(oid)},{cmd}'
                 f'"data":{data}}}')
                for eid, (seq, typ, ts, oid, cmd, data) in zip(uuid7_many(len(drafts)), drafts, strict=True)]

    def _fail(self, batch: list[_Pending], e: Exception) -> None:
        full = isinstance(e, sqlite3.Error) and ("full" in str(e).lower()
                                                  or getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)
        err: JournalError = (StorageFull(f"storage full: {e}") if full
                             else JournalError(f"commit failed: {e}"))
        self._failed = err
        failed = list(batch)
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Pending):
                failed.append(item)
            elif isinstance(item, _Job):
                if not item.future.done():  # its caller may have stopped waiting (a barrier under a timeout)
                    item.future.set_exception(err)
            else:
                self._queue.appendleft(None)
                break
        for p in failed:
            if not p.future.done():
                p.future.set_exception(err)
        self._settle(len(failed))
        log.error("journal commit failed; nothing of it was stored",
                  extra={"fields": {"error": str(e), "changes": len(failed)}})
        for fn in self._failure_listeners:
            fn(err)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise JournalUnavailable("journal is closed")
        return self._reader

    async def load_docs(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.reader.execute_fetchall("SELECT kind, id, body FROM docs")
        return [(k, i, json.loads(b)) for k, i, b in rows]

    async def load_masterdata(self, gen: int) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.reader.execute_fetchall("SELECT kind, body FROM masterdata WHERE gen = ?", (gen,))
        return [(k, json.loads(b)) for k, b in rows]

    async def read_meta(self) -> dict[str, str]:
        rows = await self.reader.execute_fetchall("SELECT key, value FROM meta")
        return {k: v for k, v in rows}

    async def read_events(self, from_seq: int, to_seq: int | None = None, limit: int = 1000
                          ) -> list[StoredEvent]:
        hi = to_seq if to_seq is not None else 2**62
        rows = await self.reader.execute_fetchall(
            "SELECT seq, type, body FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
            (from_seq, hi, limit))
        return [StoredEvent(int(s), t, b) for s, t, b in rows]

    async def barrier(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        async def nothing(db: aiosqlite.Connection) -> None:
            return None
        await self.run_job(nothing)

    async def set_meta(self, key: str, value: str) -> None:
        """Write one meta value outside any change (bookkeeping that needs no event)."""
        async def job(db: aiosqlite.Connection) -> None:
            await db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
        await self.run_job(job)

    async def earliest_seq(self, journal: str | None = None) -> int:
        """The first seq still stored of this journal (or of `journal`: the one a restore replaced)."""
        rows = list(await self.reader.execute_fetchall("SELECT min(seq) FROM events WHERE journal = ?",
                                                       (journal or self.journal_id,)))
        first = rows[0][0] if rows else None
        return int(first) if first is not None else self.last_seq + 1

    async def prune_command_results(self, cutoff: str) -> int:
        """Forget the stored results of commands answered before `cutoff` (RFC 3339, as stored); returns how
        many went. Kept whatever their age: a result as long as any event of its time is still stored (events
        are pruned only once the hub holds them, so a command the hub may still resend is answered again,
        never applied again), the results of a bulk set's parts until the set is applied, and a bulk set's
        final result exactly as long as the result of the part that completed it (a repeat of that part gets
        both answers)."""
        async def job(db: aiosqlite.Connection) -> int:
            oldest = list(await db.execute_fetchall("SELECT ts FROM events ORDER BY seq LIMIT 1"))
            before = min(cutoff, str(oldest[0][0])) if oldest else cutoff
            cur = await db.execute("DELETE FROM commands WHERE ts < ? AND cmd_id NOT IN "
                                   "(SELECT cmd_id FROM bulk_parts)", (before,))
            n = int(cur.rowcount)
            await cur.close()
            cur = await db.execute(
                "DELETE FROM meta WHERE key GLOB 'bulk:*:result' AND NOT EXISTS (SELECT 1 FROM commands "
                "WHERE commands.cmd_id = CASE WHEN json_valid(meta.value) THEN json_extract(meta.value, '$.cmd_id') "
                "END)")
            await cur.close()
            return n
        return int(await self.run_job(job))

    async def command_result(self, cmd_id: str) -> dict[str, Any] | None:
        rows = list(await self.reader.execute_fetchall("SELECT result FROM commands WHERE cmd_id = ?", (cmd_id,)))
        return json.loads(rows[0][0]) if rows else None

    async def size_bytes(self) -> int:
        """(page_count - freelist_count) x page_size plus the WAL: what SPEC counts against the cap."""
        db = self.reader
        rows = list(await db.execute_fetchall("SELECT * FROM pragma_page_count(), pragma_freelist_count(), "
                                              "pragma_page_size()"))
        pages, free, size = rows[0]
        try:
            wal = os.stat(str(self.path) + "-wal").st_size
        except FileNotFoundError:
            wal = 0
        return int((pages - free) * size + wal)
