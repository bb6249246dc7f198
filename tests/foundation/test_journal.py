"""The journal on a real SQLite file with the production settings."""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal, JournalError, StorageFull
from gateway.journal.schema import LATEST
from gateway.journal.store import WAL_LIMIT_BYTES
from gateway.service import FloorService


async def test_production_connection_pragmas(journal: Journal) -> None:
    db = journal._conn  # the one writer connection, as production opens it
    async def pragma(name: str) -> Any:
        rows = list(await db.execute_fetchall(f"PRAGMA {name}"))
        return rows[0][0]
    assert await pragma("journal_mode") == "wal"
    assert await pragma("synchronous") == 2  # FULL: fsync on every commit, so a committed event survives power loss
    assert await pragma("foreign_keys") == 1
    assert await pragma("busy_timeout") == 5000
    assert await pragma("user_version") == LATEST
    assert await pragma("wal_autocheckpoint") == 0  # never a checkpoint inside a commit
    assert await pragma("journal_size_limit") == WAL_LIMIT_BYTES
    assert journal.integrity_ok


def emit(n: int, prefix: str = "test") -> Any:
    def op(floor: Floor, change: Change) -> None:
        for i in range(n):
            change.emit(f"{prefix}.event", {"i": i})
    return op


async def test_seq_contiguous_and_identity_survives_reopen(cfg: Config, clock: ManualClock) -> None:
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    await asyncio.gather(*(s.execute(emit(k % 4)) for k in range(200)))
    jid, last = j.journal_id, j.last_seq
    await j.close()
    j2 = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    try:
        assert (j2.journal_id, j2.last_seq) == (jid, last)
        s2 = FloorService(cfg, j2, clock)
        await s2.start()
        await s2.execute(emit(1))
        rows = await j2.read_events(1, limit=10_000)
        assert [r[0] for r in rows] == list(range(1, last + 2))
    finally:
        await j2.close()


async def test_group_commit_shares_commits(service: FloorService) -> None:
    j = service.journal
    before = j.commits
    await asyncio.gather(*(service.execute(emit(1)) for _ in range(500)))
    assert j.last_seq == 500
    assert j.commits - before < 500  # many changes per fsync


async def test_feedback_waits_for_the_commit(service: FloorService) -> None:
    """A signal (a light, a beep) is handed out only once its event is readable from another connection."""
    seen: list[tuple[Any, bool]] = []

    def on_signal(sig: Any) -> None:
        conn = sqlite3.connect(service.journal.path)
        try:
            n = conn.execute("SELECT count(*) FROM events WHERE type = 'pick.beep'").fetchone()[0]
        finally:
            conn.close()
        seen.append((sig, n == 1))

    service.on_signal(on_signal)

    def op(floor: Floor, change: Change) -> None:
        change.emit("pick.beep", {})
        change.signal("beep")

    task = asyncio.create_task(service.execute(op))
    await asyncio.sleep(0)
    assert seen == []  # decided, not yet committed: nothing shown
    await task
    assert seen == [("beep", True)]


async def test_a_rebuild_that_fails_is_tried_again_and_the_journal_takes_changes_after(
        cfg: Config, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed commit the floor is read back from the journal; if that read fails too (an I/O error), it
    is tried again, so the gateway does not refuse every change until someone restarts it."""
    import gateway.service as service_mod

    monkeypatch.setattr(service_mod, "RECOVER_RETRY_S", 0.01)
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    try:
        s = FloorService(cfg, j, clock)
        await s.start()
        await s.execute(emit(1))
        real_reload, reloads = s.reload, 0

        async def flaky_reload() -> None:
            nonlocal reloads
            reloads += 1
            if reloads <= 2:
                raise sqlite3.OperationalError("disk I/O error")
            await real_reload()
        monkeypatch.setattr(s, "reload", flaky_reload)
        pages = next(iter(await j.reader.execute_fetchall("PRAGMA page_count")))[0]
        await j._conn.execute(f"PRAGMA max_page_count={pages}")

        def big(floor: Floor, change: Change) -> None:
            change.save("blob", "x", _Blob("x" * 200_000))
            change.emit("big.event", {})
        with pytest.raises(StorageFull):
            await s.execute(big)
        assert reloads == 3
        await j._conn.execute("PRAGMA max_page_count=1073741823")
        await s.execute(emit(2))
        rows = await j.read_events(1)
        assert [r[0] for r in rows] == [1, 2, 3]
    finally:
        await j.close()


async def test_failed_commit_shows_nothing_and_memory_follows_disk(cfg: Config, clock: ManualClock) -> None:
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    try:
        s = FloorService(cfg, j, clock)
        await s.start()
        await s.execute(emit(1))
        signals: list[Any] = []
        s.on_signal(signals.append)
        pages = next(iter(await j.reader.execute_fetchall("PRAGMA page_count")))[0]
        await j._conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full

        def big(floor: Floor, change: Change) -> None:
            floor.extra.setdefault("blob", {})["x"] = {"v": 1}
            change.save("blob", "x", _Blob("x" * 200_000))
            change.emit("big.event", {})
            change.signal("shown")

        with pytest.raises(StorageFull):
            await s.execute(big)
        # Nothing of the failed change is shown; the devices are only told to show again what is stored.
        assert signals == [("floor_reloaded",)]
        assert "blob" not in s.floor.extra  # rebuilt from disk before the error is raised: gone from memory too
        await j._conn.execute("PRAGMA max_page_count=1073741823")  # space returns
        await s.execute(emit(2))  # a small write first finds there is room again
        rows = await j.read_events(1)
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 3
        assert "big.event" not in {r[1] for r in rows}
        conn = sqlite3.connect(cfg.db_path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    finally:
        await j.close()


class _Blob:
    def __init__(self, text: str) -> None:
        self.text = text

    def to_doc(self) -> dict[str, Any]:
        return {"text": self.text}


def add_audit(f: Floor, c: Change, lot: str) -> None:
    c.audit.append({"kind": "scan", "raw": "x" * 500, "lot": lot})


async def test_quick_check_failure_raises_an_alarm(tmp_path: Path, clock: ManualClock, cfg: Config) -> None:
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    for i in range(50):
        await s.execute(partial(add_audit, lot=f"L{i}"))
    await j.close()
    conn = sqlite3.connect(cfg.db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit_lot'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(cfg.db_path, "r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(b"\xff" * 64)
    j2 = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    try:
        assert not j2.integrity_ok
        s2 = FloorService(cfg, j2, clock)
        await s2.start()
        alarm = s2.floor.alarms["db_integrity"]
        assert alarm.severity == "critical" and "quick_check" in alarm.message
        assert [r for r in await j2.read_events(1) if r.type == 'alarm.raised']
    finally:
        await j2.close()


async def test_closed_journal_refuses(cfg: Config, clock: ManualClock) -> None:
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    await j.close()
    with pytest.raises(JournalError):
        j.submit(Change())


async def test_aiosqlite_still_runs_a_function_in_its_thread(journal: Journal) -> None:
    """The journal writes a whole batch in one trip to aiosqlite's thread through its `_execute`; if a new
    aiosqlite drops it, this fails before anything else does."""
    import threading

    from gateway.journal.store import run_in_connection

    main = threading.get_ident()
    ident = await run_in_connection(journal._conn, lambda conn: (threading.get_ident(),
                                                                conn.execute("SELECT 1").fetchone()[0]))
    assert ident[1] == 1 and ident[0] != main


async def test_a_technicians_events_carry_their_data_in_the_log(service: FloorService) -> None:
    """`journalctl` must say which scanner went offline and why; order and pick lines stay short (the hot path
    writes one per event)."""
    import io
    import json
    import logging

    from gateway.logs import setup_logging

    def op(floor: Floor, change: Change) -> None:
        change.emit("device.offline", {"device_id": "scan-1", "kind": "scanner",
                                       "detail": "end of file: the device went away"})
        change.emit("order.received", {"lines": 2}, order_id="O-1")
        change.emit("scan.rejected", {"device_id": "pack-scan", "code": "not_allowed", "reason": "no role",
                                      "raw": "BADGE-P1"})

    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("info", out)
    try:
        await service.execute(op)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines() if '"msg":"event"' in ln]
    assert [(r["type"], r.get("data"), r.get("order_id")) for r in lines] == [
        ("device.offline", {"device_id": "scan-1", "kind": "scanner", "detail": "end of file: the device went away"},
         None),
        ("order.received", None, "O-1"),
        # a refused scan may be a badge code, which logs a person in on the pages: its raw stays out of the log
        ("scan.rejected", {"device_id": "pack-scan", "code": "not_allowed", "reason": "no role"}, None)]
