"""The black-box floor's own bookkeeping, through the real parts (the gateway in its own process, Modbus TCP,
pty scanners, SQLite, the broker), on interleavings forced step by step instead of left to the fault tests'
timing.

The stale-module path: a PTL module drops off the bus while it shows a job, so it keeps showing that job
after the gateway has finished the line. The picker scans an item for it and the gateway refuses the scan (the
SKU is on no open line). Seen in `bench.faults` (devices fault, seed 7): the refused unit was left in the tote
and remembered as "in the tote, not yet counted"; the tote's order was packed (the unit refused at packing and
put aside), the emptied tote was bound to the next task with a line of that SKU, and the picker scanned the
unit it believed was still in the tote without putting one in. The gateway then recorded one unit more than
the tote held and the order stayed in `packing` (BB0007). Here the refused unit goes back to the shelf, and a
tote handed back empty by a packer starts with no memory of units in it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from simulators.floor.blackbox import MODE_ERROR, MODE_JOB, until
from tests.faults.rig import Rig, floor_rig

WAIT_S = 60.0


async def send_order(rig: Rig, order_id: str, lines: list[tuple[str, int]]) -> None:
    order: dict[str, Any] = {"order_id": order_id, "channel": "web", "priority": {"value_cents": 1000},
                             "lines": [{"line_no": i + 1, "sku": sku, "qty": q} for i, (sku, q) in enumerate(lines)]}
    rig.floor.orders[order_id] = order
    r = await rig.hub.command("order.upsert", {"order": order}, timeout=WAIT_S)
    assert r["ok"], r


async def state_becomes(rig: Rig, order_id: str, *states: str) -> None:
    def now() -> str | None:
        rig.floor.facts.update()
        return rig.floor.facts.order_state.get(order_id)
    assert await until(lambda: now() in states, WAIT_S), f"{order_id} is {now()}, not {states}"


async def pack(rig: Rig, order_id: str, packer: int = 0) -> None:
    await state_becomes(rig, order_id, "picked", "short_picked")
    rig.floor.claimed.add(order_id)
    async with asyncio.timeout(WAIT_S):
        await rig.floor.packers[packer].pack(order_id)


def quiet(rig: Rig) -> None:
    """No random mistakes, short shelves or extra units: only the forced interleaving."""
    rig.floor.error_rate = rig.floor.short_rate = rig.floor.extra_rate = 0.0


async def test_a_refused_scan_on_a_stale_module_leaves_nothing_in_the_tote(tmp_path: Path) -> None:
    async with floor_rig(tmp_path) as rig:
        quiet(rig)
        floor, ptl = rig.floor, rig.ptl
        picker = floor.pickers[0]
        stale, other = 3, 1  # p1's modules: SKU-0002 and SKU-0000
        assert floor.plan.module_sku[stale] == "SKU-0002" and floor.plan.module_sku[other] == "SKU-0000"
        # The module drops off the bus showing a job the gateway will never write to it again.
        ptl.set_gone(stale)
        ptl.module(stale).write_holding(0, [MODE_JOB, 1, 2, 0, 4242], ptl.now_ms())

        await send_order(rig, "BX0001", [("SKU-0000", 1)])
        assert await until(lambda: ptl.module(other).mode == MODE_JOB, WAIT_S)
        await picker.work(stale)  # the tote is bound to BX0001, the SKU-0002 scan is refused
        tote = picker.tote
        assert tote is not None
        assert any("item scan of SKU-0002 was refused" in a for a in floor.report.anomalies), floor.report
        assert [u.sku for u in floor.totes[tote]] == [], "the refused unit stayed in the tote"
        assert await until(lambda: ptl.module(other).mode == MODE_JOB, WAIT_S)  # the error signal is over
        await picker.work(other)
        await pack(rig, "BX0001")
        assert floor.parcels["BX0001"] and not floor.aside, (floor.parcels, floor.aside)

        # The module is back (rebooted); the emptied tote goes on the next task, which has a SKU-0002 line.
        ptl.set_gone(stale, False)
        ptl.reboot(stale)
        await send_order(rig, "BX0002", [("SKU-0002", 3)])
        assert await until(lambda: ptl.module(stale).mode == MODE_JOB and ptl.module(stale).quantity == 3,
                           WAIT_S)
        while ptl.module(stale).mode in (MODE_JOB, MODE_ERROR):
            await picker.work(stale)
        assert picker.tote == tote, "the emptied tote was not reused: the path is not exercised"
        await pack(rig, "BX0002")

        await state_becomes(rig, "BX0002", "packed")
        assert Counter(u.sku for u in floor.parcels["BX0002"]) == {"SKU-0002": 3}
        assert not floor.wrong_parcels(), floor.wrong_parcels()
        assert floor.report.missing_reported == 0, floor.report


async def test_a_unit_lost_from_the_tote_is_reported_missing_and_the_order_leaves_packing(tmp_path: Path) -> None:
    """Whatever makes the gateway's record and the tote disagree, the station offers a way out and the packer takes
    it: the missing code, a review (`pack.review_required`, reason `items_missing`), the supervisor's approve, and
    the parcel ships with what was verified; the hub's view of it matches the parcel."""
    async with floor_rig(tmp_path) as rig:
        quiet(rig)
        floor, ptl = rig.floor, rig.ptl
        picker, unit = floor.pickers[0], 1
        await send_order(rig, "BX0001", [("SKU-0000", 2)])
        assert await until(lambda: ptl.module(unit).mode == MODE_JOB, WAIT_S)
        while ptl.module(unit).mode in (MODE_JOB, MODE_ERROR):
            await picker.work(unit)
        await state_becomes(rig, "BX0001", "picked")
        [tote] = floor.facts.order_totes["BX0001"]
        assert [u.sku for u in floor.totes[tote]] == ["SKU-0000", "SKU-0000"]
        floor.totes[tote].pop()  # dropped on the way to packing
        await pack(rig, "BX0001")
        await state_becomes(rig, "BX0001", "packed")
        assert floor.report.missing_reported == 1 and floor.report.reviews == 1, floor.report
        reviews = [e["data"] for e in rig.hub.journals[rig.hub.current or ""].events.values()
                   if e["type"] == "pack.review_required"]
        assert reviews == [{"station": "pack-1", "reason": "items_missing", "expected_g": 80.0 + 150.0,
                            "missing": [{"sku": "SKU-0000", "gtin": "04000000000013", "qty": 1}]}], reviews
        assert Counter(u.sku for u in floor.parcels["BX0001"]) == {"SKU-0000": 1}
        assert not floor.wrong_parcels(), floor.wrong_parcels()
        assert rig.hub.invalid == [], rig.hub.invalid[:3]
