"""A backlog sent as one `order.upsert_batch` set is dispatched by urgency, not in the order it came. Found on a
gateway given 8,000 orders at shift start: the set is applied 20 orders at a time and dispatch ran between the
chunks, so every picker's cap filled with the first orders of the batch while orders due hours earlier, further
down, waited."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from gateway.clock import ManualClock, rfc3339
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.tasks import dispatch_tick
from gateway.journal import Journal
from gateway.service import FloorService
from tests.bulk.test_bulk_resume import command
from tests.bulk.test_set_consistency import applying, dones, stop, submit
from tests.conftest import LOCATIONS, OPERATORS, SKUS, until

N = 30


async def test_a_batch_is_given_out_most_urgent_first(opened: tuple[Journal, FloorService],
                                                      clock: ManualClock) -> None:
    _, s = opened
    assert (await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "replace", "sync_id": "md", "part": 1,
                                                 "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                                 "operators": OPERATORS}))["ok"]
    at = s.at()
    badge = ScanInput("scan-1", "pick", "BADGE-P1", None, raw="BADGE-P1")
    assert (await s.execute(lambda f, c: handle_scan(f, c, badge, at, False))).ok
    # The batch's last orders are the most urgent: B-29 is due first.
    now = clock.now()
    orders = [{"order_id": f"B-{k:02d}", "priority": {"cutoff_at": rfc3339(now + timedelta(hours=N - k))},
               "lines": [{"line_no": 1, "sku": "SKU-1", "qty": 1}]} for k in range(N)]
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
