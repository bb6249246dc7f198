"""A bulk master data merge that re-wires a lit shelf to another module moves its lit line there as it is
applied, as the small sync does (tests/floor/test_picking.py), not only after the next restart."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from gateway.bulk import BulkApplier
from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor
from gateway.domain.lights import desired
from gateway.domain.model import Light
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.tasks import dispatch_tick
from gateway.service import FloorService
from tests.bulk.test_bulk_resume import command, open_service
from tests.conftest import LOCATIONS, OPERATORS, SKUS, until


def accept(applier: BulkApplier, cmd: Any, raw: str, floor: Floor, change: Change) -> None:
    applier.accept(change, "masterdata.sync", cmd, raw, 0)


async def apply_set(s: FloorService, clock: ManualClock, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A one-part master data set through the real applier, in 20-item slices; its results."""
    results: list[dict[str, Any]] = []
    applier = BulkApplier(s, clock, results.append, chunk=20)
    applier.yield_factor = 0.0
    try:
        cmd = COMMANDS["masterdata.sync"].model_validate(body)
        await s.execute(partial(accept, applier, cmd, json.dumps(body)))
        await applier._apply(body["sync_id"])
        await until(lambda: bool(results), "the set's result")
    finally:
        await applier.close()
    return results


async def test_a_bulk_merge_moves_a_lit_line_to_its_shelfs_new_module(tmp_path: Path, clock: ManualClock) -> None:
    j, s = await open_service(tmp_path, clock)
    assert (await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "replace", "sync_id": "md", "part": 1,
                                                 "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                                 "operators": OPERATORS}))["ok"]
    signals: list[Any] = []
    s.on_signal(signals.append)
    badge = ScanInput("scan-1", "pick", "BADGE-P1", None, "BADGE-P1")
    assert (await s.execute(lambda f, c: handle_scan(f, c, badge, s.at(), False))).ok
    assert (await command(s, "order.upsert", {"cmd_id": "o1", "order": {"order_id": "O-1", "lines": [
        {"line_no": 1, "sku": "SKU-1", "qty": 2}]}}))["ok"]
    await s.execute(lambda f, c: dispatch_tick(f, c, s.at()))
    assert desired(s.floor, Light("bus-a", 1)) is not None

    # A merge of many locations (several chunks), one of which re-wires A-01-01 to module 6.
    locations: list[dict[str, Any]] = [{"code": f"L-{i}", "zone": "zone-a"} for i in range(60)]
    locations += [{**loc, "light": {"bus": "bus-a", "unit": 6}} for loc in LOCATIONS if loc["code"] == "A-01-01"]
    body = {"cmd_id": "md-merge", "mode": "merge", "sync_id": "rewire", "part": 1, "parts": 1,
            "locations": locations}
    try:
        results = await apply_set(s, clock, body)
        assert results[0]["ok"] and results[0]["applied"] == 61, results
        assert desired(s.floor, Light("bus-a", 1)) is None
        job = desired(s.floor, Light("bus-a", 6))
        assert job is not None and (job.line_no, job.qty) == (1, 2)
        changed = [x[1] for x in signals if isinstance(x, tuple) and x[0] == "modules_changed"]
        assert changed == [[Light("bus-a", 1), Light("bus-a", 6)]], signals  # one signal, by the slice that moved
    finally:
        await j.close()


async def test_a_bulk_replace_that_drops_a_logged_in_picker_logs_them_out(tmp_path: Path, clock: ManualClock) -> None:
    """The bulk path follows the operators as the small sync does (gateway/domain/sessions.py follow_masterdata)."""
    j, s = await open_service(tmp_path, clock)
    assert (await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "replace", "sync_id": "md", "part": 1,
                                                 "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                                 "operators": OPERATORS}))["ok"]
    badge = ScanInput("scan-1", "pick", "BADGE-P1", None, "BADGE-P1")
    assert (await s.execute(lambda f, c: handle_scan(f, c, badge, s.at(), False))).ok
    body = {"cmd_id": "md-2", "mode": "replace", "sync_id": "drop", "part": 1, "parts": 1, "skus": SKUS,
            "locations": LOCATIONS, "operators": [o for o in OPERATORS if o["operator_id"] != "p1"]}
    try:
        results = await apply_set(s, clock, body)
        assert results[0]["ok"], results
        assert not [x for x in s.floor.sessions.values() if x.operator_id == "p1"]
    finally:
        await j.close()
