"""Bulk work stands aside while anything commits (Journal.quiet); the bulk path that writes master data rows
as one JSON statement stores exactly the rows it was given; eventless bulk rows skip their own fsync."""

from __future__ import annotations

import asyncio

from gateway.domain.change import Change
from gateway.journal import Journal


async def test_quiet_waits_until_nothing_is_being_committed(journal: Journal) -> None:
    await journal.quiet()  # nothing pending: returns after one turn of the loop
    floor = Change()
    floor.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                 "reason": "unknown", "raw": "x"})
    floor_fut = journal.submit(floor)
    waiter = asyncio.ensure_future(journal.quiet())
    await asyncio.sleep(0)
    assert not waiter.done()  # a scan is being committed: bulk work waits
    stored = await floor_fut
    async with asyncio.timeout(10):
        await waiter
    assert [e.type for e in stored] == ["scan.rejected"]


async def test_quiet_is_released_by_an_abandoned_commit(journal: Journal) -> None:
    floor = Change()
    floor.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                 "reason": "unknown", "raw": "x"})
    fut = journal.submit(floor)
    fut.cancel()  # the caller gave up (its task was cancelled): bulk work must not wait for ever
    async with asyncio.timeout(10):
        await journal.quiet()


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


async def test_eventless_bulk_rows_commit_without_their_own_fsync_then_full_again(journal: Journal) -> None:
    from gateway.journal.store import _Pending, _Rows
    loop = asyncio.get_running_loop()

    def pending(background: bool, events: int) -> _Pending:
        ev: list[tuple[int, str, str, str | None, str, str]] = [(1, "t", "ts", None, "", "{}")] * events
        return _Pending(ev, [], [], [(9, "sku", "S", "{}")], [], [], None, [], [], 0, loop.create_future(),
                        background)
    assert _Rows.of([pending(True, 0)], []).relaxed
    assert not _Rows.of([pending(True, 1)], []).relaxed  # an event is published: it must be durable first
    assert not _Rows.of([pending(True, 0), pending(False, 0)], []).relaxed  # a floor change shares the commit
    ch = Change(background=True)
    ch.masterdata.append((9, "sku", "S-1", {"sku": "S-1"}))
    await journal.submit(ch)
    rows = list(await journal._conn.execute_fetchall("PRAGMA synchronous"))
    assert rows[0][0] == 2  # FULL again for the next commit
    assert await journal.load_masterdata(9) == [("sku", {"sku": "S-1"})]


async def test_the_floors_commit_goes_ahead_of_staged_rows_queued_before_it(journal: Journal) -> None:
    """Rows of a generation nobody reads yet may wait for a scan queued after them (Journal._write_split): the
    scan's commit never carries them. seq and the stored last_seq stay right, and both changes are stored."""
    staged = Change(background=True, unseen=True)
    staged.masterdata.extend((9, "sku", f"S-{i:03d}", {"sku": f"S-{i:03d}"}) for i in range(50))
    scan = Change()
    scan.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                "reason": "unknown", "raw": "x"})
    order: list[str] = []
    commits = journal.commits
    staged_fut = journal.submit(staged)
    staged_fut.add_done_callback(lambda _: order.append("staged"))
    scan_fut = journal.submit(scan)  # queued behind the staged rows, before the writer looks
    scan_fut.add_done_callback(lambda _: order.append("scan"))
    [ev] = await scan_fut
    await staged_fut
    assert order == ["scan", "staged"] and journal.commits == commits + 2
    assert journal.last_seq == ev.seq and (await journal.read_meta())["last_seq"] == str(ev.seq)
    assert len(await journal.load_masterdata(9)) == 50


async def test_rows_the_floor_may_read_keep_their_place(journal: Journal) -> None:
    """Bulk rows not marked unseen (a merge writes live master data) commit in the order they were submitted."""
    live = Change(background=True)
    live.masterdata.append((1, "sku", "S-1", {"sku": "S-1"}))
    scan = Change()
    scan.emit("scan.rejected", {"device_id": "scan-1", "operator_id": None, "code": "unknown_barcode",
                                "reason": "unknown", "raw": "x"})
    order: list[str] = []
    journal.submit(live).add_done_callback(lambda _: order.append("live"))
    fut = journal.submit(scan)
    fut.add_done_callback(lambda _: order.append("scan"))
    await fut
    await journal.barrier()
    assert order == ["live", "scan"]
