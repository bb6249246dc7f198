"""The storage cap (`sync.max_db_mb`): an alarm at 80%, new work refused at 100% while work in progress and
alarms still commit, nothing corrupted, and work resumes when space returns."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.domain.api import apply_command
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import STORAGE_FULL, STORAGE_OK, STORAGE_WARNING, Floor
from gateway.journal import Journal, StorageFull
from gateway.service import FloorService
from tests.conftest import SKUS, make_config, order


async def upsert(service: FloorService, clock: ManualClock, cmd_id: str, oid: str) -> dict[str, Any]:
    c = COMMANDS["order.upsert"].model_validate({"cmd_id": cmd_id, "order": order(oid, lines=[(1, "SKU-1", 1)])})
    return await service.execute_command("order.upsert", cmd_id, lambda f, ch: apply_command(f, ch, c, service.at()))


def fill(n_kb: int) -> Callable[[Floor, Change], None]:
    def op(floor: Floor, change: Change) -> None:
        for _ in range(n_kb):
            change.audit.append({"kind": "filler", "raw": "x" * 1000})
    return op


async def setup(tmp_path: Path, clock: ManualClock) -> tuple[Journal, FloorService]:
    cfg = make_config(tmp_path, sync={"max_db_mb": 1})
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    c = COMMANDS["masterdata.sync"].model_validate({"cmd_id": "md", "mode": "merge", "sync_id": "s", "part": 1,
                                                    "parts": 1, "skus": SKUS})
    await s.execute_command("masterdata.sync", "md", lambda f, ch: apply_command(f, ch, c, s.at()))
    return j, s


async def test_cap_warns_then_refuses_new_work_then_resumes(tmp_path: Path, clock: ManualClock) -> None:
    j, s = await setup(tmp_path, clock)
    try:
        assert await s.check_storage() == STORAGE_OK
        assert (await upsert(s, clock, "c0", "O-0"))["ok"]
        while s.storage_bytes < 0.85 * 1024 * 1024:
            await s.execute(fill(50))
            await s.check_storage()
        assert s.floor.storage == STORAGE_WARNING
        assert s.floor.alarms["storage_near_full"].severity == "warning"
        while s.storage_bytes < 1024 * 1024:
            await s.execute(fill(50))
            await s.check_storage()
        assert s.floor.storage == STORAGE_FULL
        assert s.floor.alarms["storage_full"].severity == "critical"
        assert "storage_near_full" not in s.floor.alarms
        assert not s.floor.dispatch.new_work_allowed  # and no queued task goes to a picker
        refused = await upsert(s, clock, "c1", "O-1")
        assert refused["ok"] is False and refused["error"]["code"] == "busy"
        assert "storage is full" in refused["error"]["message"] and "O-1" not in s.floor.orders
        # Work in progress still commits: an update to an existing order is not new work.
        assert (await upsert(s, clock, "c2", "O-0"))["ok"]
        # Space returns (the hub acked and events were pruned, or the cap was raised).
        await j.run_job(lambda db: db.execute("DELETE FROM audit WHERE kind = 'filler'"))
        await j.run_job(lambda db: db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))
        assert await s.check_storage() == STORAGE_OK
        assert not s.floor.alarms and s.floor.dispatch.new_work_allowed
        assert (await upsert(s, clock, "c3", "O-1"))["ok"]
        types = [r.body for r in await j.read_events(1)]
        assert sum('"alarm.raised"' in b for b in types) == 2 and sum('"alarm.cleared"' in b for b in types) == 2
    finally:
        await j.close()
    conn = sqlite3.connect(tmp_path / "floorgate.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_disk_full_refuses_then_resumes(tmp_path: Path, clock: ManualClock) -> None:
    """SQLite's page limit stands in for a full disk: the commit fails cleanly, nothing is half-written."""
    j, s = await setup(tmp_path, clock)
    try:
        assert (await upsert(s, clock, "c0", "O-0"))["ok"]
        pages = next(iter(await j.reader.execute_fetchall("PRAGMA page_count")))[0]
        await j._conn.execute(f"PRAGMA max_page_count={pages + 2}")
        with pytest.raises(StorageFull):
            for _ in range(100):
                await s.execute(fill(20))
        assert s.floor.storage == STORAGE_FULL and not s.floor.dispatch.new_work_allowed
        try:
            refused = await upsert(s, clock, "c1", "O-1")
            assert refused["error"]["code"] == "busy"  # refused by the domain, and the refusal fit on disk
        except StorageFull:
            pass  # or not even the refusal fit: the hub gets no result and resends later
        assert "O-1" not in s.floor.orders
        # While there is still no room, a check writes no change (it would fail and rebuild the floor from the
        # journal, seconds with 100,000 SKUs, every 5 s): the floor in memory stays the same object.
        await asyncio.sleep(0.05)  # a rebuild started by the last failed commit finishes
        floor = s.floor
        assert await s.check_storage() == STORAGE_FULL and await s.check_storage() == STORAGE_FULL
        with pytest.raises(StorageFull):  # refused before the op runs: nothing to undo, no rebuild
            await s.execute(fill(1))
        assert s.floor is floor and s.floor.storage == STORAGE_FULL
        await j._conn.execute("PRAGMA max_page_count=1073741823")
        # The first check commits the alarm (proving there is room again); the next one measures afresh.
        assert await s.check_storage() == STORAGE_FULL
        assert await s.check_storage() == STORAGE_OK
        assert (await upsert(s, clock, "c2", "O-1"))["ok"]
        bodies = [r.body for r in await j.read_events(1, limit=100_000)]
        assert any('"alarm.raised"' in b and "storage_full" in b for b in bodies)
        assert any('"alarm.cleared"' in b and "storage_full" in b for b in bodies)
        seqs = [r[0] for r in await j.read_events(1, limit=100_000)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await j.close()
    conn = sqlite3.connect(tmp_path / "floorgate.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_the_near_full_alarm_is_raised_once_while_the_free_disk_moves(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on a nearly full disk: the alarm's text carried the live free megabytes, which move with every other
    program's writes, and an alarm whose text changes is raised again: storage_near_full every 5 s."""
    import shutil

    j, s = await setup(tmp_path, clock)
    free = iter([100_000_000, 99_000_000, 97_500_000, 110_000_000])
    real = shutil.disk_usage

    def disk_usage(path: Any) -> Any:
        return real(path)._replace(free=next(free))

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    try:
        seq = j.last_seq
        for _ in range(4):
            assert await s.check_storage() == STORAGE_WARNING
        bodies = [r.body for r in await j.read_events(seq + 1)]
        assert sum('"alarm.raised"' in b for b in bodies) == 1, bodies
        assert "under 128 MB free on disk" in s.floor.alarms["storage_near_full"].message
    finally:
        await j.close()


async def test_the_near_full_alarm_does_not_flap_around_its_threshold(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found with a webhook: free space moving a few MB around 128 MB (logs written and rotated) raised and cleared
    storage_near_full at every check, 12 notices a minute. A level is left only some way back from its entry."""
    import shutil

    mb = 1024 * 1024
    j, s = await setup(tmp_path, clock)
    free = iter([127 * mb, 130 * mb, 126 * mb, 131 * mb, 150 * mb, 130 * mb])
    real = shutil.disk_usage

    def disk_usage(path: Any) -> Any:
        return real(path)._replace(free=next(free))

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    try:
        seq = j.last_seq
        levels = [await s.check_storage() for _ in range(6)]
        # Under 128 MB: warning, and it stays until 144 MB free; then OK, and 130 MB does not raise it again.
        assert levels == [STORAGE_WARNING] * 4 + [STORAGE_OK, STORAGE_OK]
        bodies = [r.body for r in await j.read_events(seq + 1)]
        assert sum('"alarm.raised"' in b for b in bodies) == 1 and sum('"alarm.cleared"' in b for b in bodies) == 1
    finally:
        await j.close()
