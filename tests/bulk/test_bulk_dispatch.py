"""A backlog sent as one `order.upsert_batch` set is dispatched by urgency, not in the order it came. Found on a
gateway given 8,000 orders at shift start: the set is applied 20 orders at a time and dispatch ran between the
chunks, so every picker's cap filled with the first orders of the batch while orders due hours earlier, further
down, waited."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.bulk import BulkApplier
from gateway.bulkwork import WorkerLost
from gateway.clock import ManualClock, rfc3339
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.tasks import dispatch_tick
from gateway.journal import Journal
from gateway.service import FloorService
from tests.bulk.test_bulk_resume import command, open_service
from tests.bulk.test_set_consistency import applying, dones, stop, submit
from tests.conftest import LOCATIONS, OPERATORS, SKUS, until

N = 30


def due_last_first(clock: ManualClock) -> list[dict[str, Any]]:
    """N orders of one unit; the batch's last are the most urgent: B-29 is due first."""
    now = clock.now()
    return [{"order_id": f"B-{k:02d}", "priority": {"cutoff_at": rfc3339(now + timedelta(hours=N - k))},
             "lines": [{"line_no": 1, "sku": "SKU-1", "qty": 1}]} for k in range(N)]


async def test_a_batch_is_given_out_most_urgent_first(opened: tuple[Journal, FloorService],
                                                      clock: ManualClock) -> None:
    _, s = opened
    await load_masterdata(s)
    at = s.at()
    badge = ScanInput("scan-1", "pick", "BADGE-P1", None, raw="BADGE-P1")
    assert (await s.execute(lambda f, c: handle_scan(f, c, badge, at, False))).ok
    orders = due_last_first(clock)
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    applier.chunk = 2

    async def ticking() -> None:  # the gateway's ticker, as often as it can: between every two chunks
        while True:
            await s.execute(lambda f, c: dispatch_tick(f, c, s.at()))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(ticking())
    runner = asyncio.create_task(applier.run())
    try:
        part = {"cmd_id": "b-1", "sync_id": "b", "part": 1, "parts": 1, "orders": orders}
        assert (await submit(s, applier, "order.upsert_batch", part))["ok"]
        await until(lambda: bool(dones(results)), "the set's done result", timeout=30)
        await until(lambda: any(t.operator_id for t in s.floor.tasks.values()), "an assignment", timeout=30)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await stop(applier, runner)
    assert dones(results) == [("b-1", True)] and results[-1]["applied"] == N
    given = sorted(t.order_id for t in s.floor.tasks.values() if t.operator_id == "p1")
    cap = len(given)
    assert cap >= 1
    assert given == [f"B-{k:02d}" for k in range(N - cap, N)], given  # the most urgent, whatever the cap


async def load_masterdata(s: FloorService) -> None:
    assert (await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "replace", "sync_id": "md", "part": 1,
                                                 "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                                 "operators": OPERATORS}))["ok"]


def stop_after(monkeypatch: pytest.MonkeyPatch, n: int, error: BaseException) -> None:
    """The set's applier stops with `error` after `n` chunks of its orders have been committed."""
    real = BulkApplier._orders_chunk
    chunks = 0

    async def stopping(self: BulkApplier, run: Any, batch: list[Any], part: int, start: int) -> None:
        nonlocal chunks
        if chunks == n:
            raise error
        chunks += 1
        await real(self, run, batch, part, start)
    monkeypatch.setattr(BulkApplier, "_orders_chunk", stopping)


async def test_a_batch_cut_off_by_a_restart_keeps_its_tasks_parked(tmp_path: Path, clock: ManualClock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The parking is stored with the chunks that made it. Kept in memory only, the orders applied before a
    restart mid-set were given out at once after it, least urgent first, while the set went on from its
    cursor."""
    j, s = await open_service(tmp_path, clock)
    await load_masterdata(s)
    orders = due_last_first(clock)
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    applier.chunk = 2
    stop_after(monkeypatch, 5, asyncio.CancelledError())  # stands for the process killed between two chunks
    part = {"cmd_id": "b-1", "sync_id": "b", "part": 1, "parts": 1, "orders": orders}
    assert (await submit(s, applier, "order.upsert_batch", part))["ok"]
    with pytest.raises(asyncio.CancelledError):
        await applier._apply(applier._queue.get_nowait())
    monkeypatch.undo()
    await applier.close()
    await j.close()

    j, s = await open_service(tmp_path, clock)  # the restart: the floor and its engine from the journal
    try:
        assert len(s.floor.orders) == 10  # five chunks of two
        at = s.at()
        badge = ScanInput("scan-1", "pick", "BADGE-P1", None, raw="BADGE-P1")
        assert (await s.execute(lambda f, c: handle_scan(f, c, badge, at, False))).ok
        await s.execute(lambda f, c: dispatch_tick(f, c, s.at()))
        assert not any(t.operator_id for t in s.floor.tasks.values())  # parked until the set is in
        restarted = await applying(s, clock, results)
        restarted.chunk = 2
        await restarted._apply(restarted._queue.get_nowait())
        assert dones(results) == [("b-1", True)] and results[-1]["applied"] == N
        await s.execute(lambda f, c: dispatch_tick(f, c, s.at()))
        given = sorted(t.order_id for t in s.floor.tasks.values() if t.operator_id == "p1")
        assert given and given == [f"B-{k:02d}" for k in range(N - len(given), N)], given
        assert not s.floor.extra.get("bulk_parked")
        await restarted.close()
    finally:
        await j.close()


async def test_a_batch_that_stops_gives_its_parked_tasks_out_meanwhile(opened: tuple[Journal, FloorService],
                                                                       clock: ManualClock,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A set stopped by a fault (here the worker lost) is tried again later; its tasks do not wait for that,
    in the engine or as stored (a restart during the wait does not park them again)."""
    _, s = opened
    await load_masterdata(s)
    at = s.at()
    badge = ScanInput("scan-1", "pick", "BADGE-P1", None, raw="BADGE-P1")
    assert (await s.execute(lambda f, c: handle_scan(f, c, badge, at, False))).ok
    orders = [{"order_id": f"B-{k:02d}", "lines": [{"line_no": 1, "sku": "SKU-1", "qty": 1}]} for k in range(N)]
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    applier.chunk = 2
    stop_after(monkeypatch, 3, WorkerLost("the worker died"))
    part = {"cmd_id": "b-1", "sync_id": "b", "part": 1, "parts": 1, "orders": orders}
    assert (await submit(s, applier, "order.upsert_batch", part))["ok"]
    with pytest.raises(WorkerLost):
        await applier._apply(applier._queue.get_nowait())
    assert not s.floor.extra.get("bulk_parked")
    await s.execute(lambda f, c: dispatch_tick(f, c, s.at()))
    assert any(t.operator_id == "p1" for t in s.floor.tasks.values())
    await s.reload()  # as after a restart: nothing parked again
    assert not s.floor.extra.get("bulk_parked")
    await applier.close()
