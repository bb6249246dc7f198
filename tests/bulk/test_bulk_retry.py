"""A bulk set whose chunk fails to commit (an I/O error mid-way) is never half live and is finished later.

Chunks are pipelined (the next one is computed while the last one commits), so a failed commit must stop the
set before the swap: the floor keeps the old master data, then the set is applied again from its stored
parts and answered once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gateway import bulk
from gateway.bulk import BulkApplier
from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor, MasterData
from gateway.journal import store
from gateway.service import FloorService
from tests.bulk.test_bulk_resume import command, open_service
from tests.conftest import SKUS, until

N = 200


def accept(applier: BulkApplier, cmd: Any, raw: str, floor: Floor, change: Change) -> None:
    applier.accept(change, "masterdata.sync", cmd, raw, 0)  # stored as text, uncounted: as before counts


def replace_set() -> dict[str, Any]:
    skus = [{"sku": f"NEW-{i}", "gtins": []} for i in range(N)]
    locations = [{"code": f"L-{i}", "zone": "zone-a", "sku": f"NEW-{i}"} for i in range(N)]
    return {"cmd_id": "md-big", "mode": "replace", "sync_id": "big", "part": 1, "parts": 1, "skus": skus,
            "locations": locations}


async def stored_replace(s: FloorService, clock: ManualClock, results: list[dict[str, Any]]) -> BulkApplier:
    """An applier (no pauses) with the one-part replace of `replace_set` stored, as the intake leaves it."""
    applier = BulkApplier(s, clock, results.append, chunk=20)
    applier.yield_factor = 0.0
    body = replace_set()
    cmd = COMMANDS["masterdata.sync"].model_validate(body)
    await s.execute(partial(accept, applier, cmd, json.dumps(body)))
    return applier



def fail_first_cleanup(j: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """The first clearing of a done set's parts fails as on a full disk (the journal's job is real otherwise);
    returns how many failed so far."""
    real_run_job = j.run_job
    failed = 0

    async def run_job(fn: Any) -> Any:
        nonlocal failed
        if "cleanup" in getattr(fn, "__qualname__", "") and not failed:
            failed += 1
            raise sqlite3.OperationalError("database or disk is full")
        return await real_run_job(fn)
    monkeypatch.setattr(j, "run_job", run_job)
    return lambda: failed

async def test_a_chunk_that_fails_to_commit_leaves_the_old_master_data_and_the_set_finishes_later(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    j, s = await open_service(tmp_path, clock)
    await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "merge", "sync_id": "md", "part": 1, "parts": 1,
                                         "skus": SKUS})
    old_gen, old_skus = s.floor.md_gen, set(s.floor.md.skus)
    results: list[dict[str, Any]] = []
    applier = await stored_replace(s, clock, results)
    applier.retry_s = 0.05

    real_write = store._Rows.write
    writes = 0
    seen: list[tuple[int, set[str]]] = []

    monkeypatch.setattr(bulk, "STAGE_ROWS", 50)  # several commits of staged rows

    def failing_write(self: store._Rows, conn: sqlite3.Connection) -> None:
        nonlocal writes
        writes += bool(self.md_put)
        if writes == 3 and self.md_put:  # mid-way through the SKUs, a commit of staged rows fails
            seen.append((s.floor.md_gen, set(s.floor.md.skus)))
            raise sqlite3.OperationalError("disk I/O error")
        real_write(self, conn)

    monkeypatch.setattr(store._Rows, "write", failing_write)
    runner = asyncio.create_task(applier.run())
    applier.kick("big")
    try:
        await until(lambda: bool(results), "the set's one result")
        await asyncio.sleep(0.2)  # a second result would come now, were the set applied twice
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert seen == [(old_gen, old_skus)]  # at the failure, the floor saw the old master data only
    [done] = results
    assert done["status"] == "done" and done["applied"] == 2 * N and not done["rejected"], done
    assert s.floor.md_gen == old_gen + 1 and set(s.floor.md.skus) == {f"NEW-{i}" for i in range(N)}
    stored = await j.load_masterdata(s.floor.md_gen)
    assert sorted(k for k, _ in stored) == ["location"] * N + ["sku"] * N
    await restart_sees_the_new_generation(s)
    await applier.close()
    await j.close()


async def restart_sees_the_new_generation(s: FloorService) -> None:
    before = set(s.floor.md.locations)
    await s.reload()
    assert set(s.floor.md.locations) == before and len(before) == N


async def test_a_replace_leaves_no_rows_of_an_unfinished_one_and_the_old_generation_is_pruned(
        tmp_path: Path, clock: ManualClock) -> None:
    """A replace stages the next generation beside the live one: rows an unfinished replace left there must not
    come back with the new one, and the swapped-out generation (100,000 SKUs a day) must not stay on disk."""
    j, s = await open_service(tmp_path, clock)
    await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "merge", "sync_id": "md", "part": 1, "parts": 1,
                                         "skus": SKUS})
    old_gen = s.floor.md_gen

    async def ghost(db: Any) -> None:  # what an earlier replace, cut off, left in the generation to be staged
        await db.execute("INSERT INTO masterdata(gen, kind, id, body) VALUES (?, 'sku', 'GHOST', ?)",
                         (old_gen + 1, json.dumps({"sku": "GHOST", "gtins": []})))
    await j.run_job(ghost)
    results: list[dict[str, Any]] = []
    applier = await stored_replace(s, clock, results)
    await applier._apply("big")
    assert results and results[0]["applied"] == 2 * N

    async def gens(db: Any) -> dict[int, int]:
        return {int(g): int(n) for g, n in await db.execute_fetchall(
            "SELECT gen, count(*) FROM masterdata GROUP BY gen")}
    assert (await j.run_job(gens))[old_gen] == len(SKUS)
    assert await s.prune_masterdata("old", chunk=7) == len(SKUS)  # several chunks
    assert await j.run_job(gens) == {old_gen + 1: 2 * N}
    await s.reload()
    assert "GHOST" not in s.floor.md.skus and len(s.floor.md.skus) == N
    await applier.close()
    await j.close()


async def test_a_set_whose_clean_up_fails_is_answered_and_never_applied_twice(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The set is done once its result commits with the swap; clearing its stored parts afterwards is
    housekeeping. If that fails (a full disk), the result still goes out, and when the set comes round again
    (the next start) it is answered again from what is stored, not staged and swapped a second time."""
    j, s = await open_service(tmp_path, clock)
    old_gen = s.floor.md_gen
    results: list[dict[str, Any]] = []
    applier = await stored_replace(s, clock, results)
    failed = fail_first_cleanup(j, monkeypatch)
    await applier._apply("big")
    assert failed() == 1 and [r["status"] for r in results] == ["done"]
    assert s.floor.md_gen == old_gen + 1

    restarted = BulkApplier(s, clock, results.append, chunk=20)  # the next start finds the parts still stored
    await restarted.start()
    await restarted._apply(restarted._queue.get_nowait())
    assert s.floor.md_gen == old_gen + 1  # not staged and swapped again
    assert [r["status"] for r in results] == ["done", "done"] and results[0] == results[1]
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")
    await applier.close()
    await restarted.close()
    await j.close()


async def test_a_replace_writes_its_rows_in_key_order_the_last_of_a_repeated_key_stays(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of a replace are written once every item is admitted, sorted by key (parts sliced any way by the
    hub would otherwise scatter each commit over the table's pages), and a SKU sent twice keeps its last
    version, on disk as in memory. Progress moves through both passes and ends at the total."""
    monkeypatch.setattr(bulk, "STAGE_ROWS", 7)  # several commits
    j, s = await open_service(tmp_path, clock)
    written: list[list[tuple[str, str]]] = []
    submit = j.submit

    def spy(change: Change) -> Any:
        if change.unseen:
            written.append([(kind, key) for _, kind, key, _ in change.masterdata])
        return submit(change)
    monkeypatch.setattr(j, "submit", spy)
    results: list[dict[str, Any]] = []
    applier = BulkApplier(s, clock, results.append, chunk=5)
    applier.yield_factor = 0.0
    skus = [{"sku": f"S-{i:03d}", "gtins": [], "description": "first"} for i in range(60)]
    parts = [skus[p::3] for p in range(3)]  # every third SKU: interleaved, as bench.bulk's parts are
    parts[2].append({"sku": "S-000", "gtins": [], "description": "last"})  # S-000 again, in the last part
    for p, part_skus in enumerate(parts):
        body = {"cmd_id": f"md-{p}", "mode": "replace", "sync_id": "big", "part": p + 1, "parts": 3,
                "skus": part_skus}
        cmd = COMMANDS["masterdata.sync"].model_validate(body)
        await s.execute(partial(accept, applier, cmd, json.dumps(body)))
    await applier._apply("big")
    assert results and results[0]["applied"] == 61 and not results[0]["rejected"]
    rows = [r for batch in written for r in batch]
    assert rows == sorted(rows) and len(rows) == 61
    assert all(len(batch) <= 7 for batch in written) and len(written) == 9
    assert s.floor.md.skus["S-000"].description == "last"
    await s.reload()  # what the journal holds
    assert len(s.floor.md.skus) == 60 and s.floor.md.skus["S-000"].description == "last"
    events = await j.read_events(1)
    progress = [json.loads(e.body)["data"] for e in events if e.type == "bulk.progress"]
    dones = [p["done"] for p in progress]
    assert dones == sorted(dones) and dones[-1] == progress[-1]["total"] == 61
    assert len(progress) >= 5 and progress[-1]["eta_s"] == 0.0
    await applier.close()
    await j.close()


async def test_a_swapped_out_generation_is_let_go_a_slice_at_a_time_unless_someone_still_holds_it(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropped at once, 100,000 SKUs are freed in one go on the loop (31 ms here): the applier lets go of them a
    slice per turn instead. A generation or dict someone still holds (a reader across an await) is left whole."""
    monkeypatch.setattr(bulk, "RELEASE_SLICE", 3)
    j, s = await open_service(tmp_path, clock)
    await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "merge", "sync_id": "md", "part": 1, "parts": 1,
                                         "skus": SKUS})
    old = s.floor.md
    entries = sum(len(d) for d in (old.skus, old.gtins, old.locations, old.locations_by_sku, old.operators,
                                   old.badges, old.cartons))
    assert entries > 3
    results: list[dict[str, Any]] = []
    applier = await stored_replace(s, clock, results)
    await applier._apply("big")
    assert s.floor.md is not old and len(s.floor.md.skus) == N
    assert applier._releasing is not None
    assert await applier._releasing == 0  # this test holds `old`: left whole
    assert len(old.skus) == len(SKUS)

    held = MasterData()
    skus: dict[str, Any] = held.skus  # a reader holding one dict
    skus.update({f"S-{i}": i for i in range(10)})
    gtins: dict[str, Any] = held.gtins
    gtins.update({f"G-{i}": i for i in range(10)})
    del gtins
    task = asyncio.ensure_future(bulk.release(held))
    del held
    assert await task == 10  # the GTINs go (released first), the held SKUs stay
    assert len(skus) == 10

    free = MasterData()
    free.skus.update({f"S-{i}": old.skus["SKU-1"] for i in range(10)})
    free.locations_by_sku.update({f"S-{i}": [] for i in range(7)})
    task = asyncio.ensure_future(bulk.release(free))
    del free
    assert await task == 17
    await applier.close()
    await j.close()
