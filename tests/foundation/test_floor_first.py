"""Bulk work stands aside while a floor change commits (Journal.floor_first), and the bulk path that writes
master data rows as one JSON statement stores exactly the rows it was given."""

from __future__ import annotations

import asyncio
import json

from gateway.domain.change import Change
from gateway.journal import Journal
from gateway.streamjson import iter_items


async def test_floor_first_waits_for_a_floor_commit_not_for_bulk_work(journal: Journal) -> None:
    await journal.floor_first()  # nothing pending: returns after one turn of the loop
    bulk = Change(background=True)
    bulk.emit("bulk.progress", {"sync_id": "s", "done": 1, "total": 2, "failed": 0, "eta_s": 1.0})
    bulk_fut = journal.submit(bulk)
    waiter = asyncio.ensure_future(journal.floor_first())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiter.done()  # bulk work does not wait for its own commits
    await bulk_fut

    floor = Change()
    floor.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                 "reason": "unknown", "raw": "x"})
    floor_fut = journal.submit(floor)
    waiter = asyncio.ensure_future(journal.floor_first())
    await asyncio.sleep(0)
    assert not waiter.done()  # a scan is being committed: bulk work waits
    stored = await floor_fut
    async with asyncio.timeout(10):
        await waiter
    assert [e.type for e in stored] == ["scan.rejected"]


async def test_floor_first_is_released_by_a_failed_or_abandoned_commit(journal: Journal) -> None:
    floor = Change()
    floor.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                 "reason": "unknown", "raw": "x"})
    fut = journal.submit(floor)
    fut.cancel()  # the caller gave up (its task was cancelled): bulk work must not wait for ever
    async with asyncio.timeout(10):
        await journal.floor_first()


async def test_iter_items_pauses_between_slices_with_the_given_pause() -> None:
    payload = json.dumps({"skus": [{"sku": f"S-{i}", "pad": "x" * 200} for i in range(200)]}).encode()
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1
        await asyncio.sleep(0)
    got = [item async for chunk in iter_items(payload, "skus", 20, None, pause) for item in chunk]
    assert [g["sku"] for g in got] == [f"S-{i}" for i in range(200)]
    assert pauses >= len(payload) // 8192


async def test_many_masterdata_rows_in_one_statement_are_stored_exactly(journal: Journal) -> None:
    rows: list[tuple[int, str, str, dict[str, object] | str | None]] = [
        (7, "sku", f"S-{i:03d}", {"sku": f"S-{i:03d}", "name": f'quote " backslash \\ ünï {i}', "n": i})
        for i in range(60)]
    ch = Change(background=True)
    ch.masterdata.extend(rows)
    await journal.submit(ch)
    stored = await journal.load_masterdata(7)
    assert sorted(stored, key=lambda kb: str(kb[1]["sku"])) == [("sku", r[3]) for r in rows]
    got = list(await journal.reader.execute_fetchall("SELECT typeof(gen), typeof(id) FROM masterdata WHERE gen = 7"))
    assert set(got) == {("integer", "text")}
