"""Orders, holds and master data through the one domain API, committed through the real journal."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.clock import ManualClock
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.service import FloorService
from tests.conftest import CARTONS, LOCATIONS, OPERATORS, SKUS, order


async def cmd(service: FloorService, name: str, payload: dict[str, Any], clock: ManualClock) -> dict[str, Any]:
    command = COMMANDS[name].model_validate(payload)
    return await service.execute_command(name, command.cmd_id,
                                         lambda f, c: apply_command(f, c, command, service.at()))


async def load_md(service: FloorService, clock: ManualClock) -> None:
    r = await cmd(service, "masterdata.sync", {"cmd_id": "md-1", "mode": "replace", "sync_id": "s1", "part": 1,
                                               "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                               "operators": OPERATORS, "cartons": CARTONS}, clock)
    assert r["ok"] and r["rejected"] == [], r


def events(service: FloorService) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    conn = sqlite3.connect(service.journal.path)
    try:
        rows = conn.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()
    out = []
    for seq, body in rows:
        b = json.loads(body)
        out.append((seq, b["type"], b.get("order_id"), b["data"]))
    return out


async def test_new_order_then_update_then_conflict(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    r1 = await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order()}, clock)
    assert r1["ok"] and r1["state"] == "received"
    r2 = await cmd(service, "order.upsert", {"cmd_id": "c2", "order": order(lines=[(1, "SKU-1", 5)])}, clock)
    assert r2["ok"]
    assert [(t, d) for _, t, _, d in events(service)] == [("order.received", {"lines": 2}),
                                                         ("order.updated", {"lines": 1})]
    service.floor.orders["O-1"].state = "assigned"  # as if a task had been assigned
    r3 = await cmd(service, "order.upsert", {"cmd_id": "c3", "order": order()}, clock)
    assert not r3["ok"] and r3["error"]["code"] == "conflict"
    assert len(events(service)) == 2


async def test_unknown_sku_is_invalid_payload_naming_it(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    r = await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order(lines=[(1, "NOPE", 1)])}, clock)
    assert r["error"]["code"] == "invalid_payload" and "NOPE" in r["error"]["message"]
    assert "O-1" not in service.floor.orders and events(service) == []


async def test_cancel_emits_cause_then_consequences(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order()}, clock)
    r = await cmd(service, "order.cancel", {"cmd_id": "c2", "order_id": "O-1", "reason": "customer"}, clock)
    assert r["ok"] and r["state"] == "cancelled"
    assert [t for _, t, _, _ in events(service)] == ["order.received", "order.cancelled", "task.cancelled",
                                                   "order.state_changed"]
    again = await cmd(service, "order.cancel", {"cmd_id": "c3", "order_id": "O-1"}, clock)
    assert again["ok"] and again["changed"] is False
    assert len(events(service)) == 4
    missing = await cmd(service, "order.cancel", {"cmd_id": "c4", "order_id": "O-404"}, clock)
    assert missing["error"]["code"] == "not_found"


async def test_hold_and_release_return_the_order_to_its_state(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order()}, clock)
    r = await cmd(service, "dispatch.hold", {"cmd_id": "c2", "scope": "order", "id": "O-1"}, clock)
    assert r["ok"] and service.floor.orders["O-1"].state == "on_hold"
    assert (await cmd(service, "dispatch.hold", {"cmd_id": "c3", "scope": "order", "id": "O-1"}, clock))[
        "changed"] is False
    r = await cmd(service, "dispatch.release", {"cmd_id": "c4", "scope": "order", "id": "O-1"}, clock)
    assert r["ok"] and service.floor.orders["O-1"].state == "received"
    types = [(t, d) for _, t, _, d in events(service)][1:]
    assert types == [
        ("dispatch.held", {"scope": "order", "id": "O-1", "by": "hub"}),
        ("order.state_changed", {"from": "received", "to": "on_hold"}),
        ("dispatch.released", {"scope": "order", "id": "O-1", "by": "hub"}),
        ("order.state_changed", {"from": "on_hold", "to": "received"}),
    ]
    zone = await cmd(service, "dispatch.hold", {"cmd_id": "c5", "scope": "zone", "id": "zone-a"}, clock)
    assert zone["ok"] and "zone:zone-a" in service.floor.holds
    everything = await cmd(service, "dispatch.hold", {"cmd_id": "c6", "scope": "all"}, clock)
    assert everything["ok"] and "all:*" in service.floor.holds


async def test_review_only_from_a_pending_review(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order()}, clock)
    r = await cmd(service, "pack.review", {"cmd_id": "c2", "order_id": "O-1", "decision": "approve",
                                           "operator_id": "s1"}, clock)
    assert r["error"]["code"] == "conflict"


async def test_masterdata_bad_items_skipped_and_reported(service: FloorService, clock: ManualClock) -> None:
    skus = [*SKUS, {"sku": "BAD-GTIN", "gtins": ["4006381333932"]}, {"gtins": []},
            {"sku": "DUP", "gtins": ["4006381333931"]}]
    r = await cmd(service, "masterdata.sync", {"cmd_id": "m1", "mode": "merge", "sync_id": "s", "part": 1,
                                               "parts": 1, "skus": skus,
                                               "locations": [*LOCATIONS, {"code": "X", "zone": "zone-a",
                                                                          "sku": "NOPE"}]}, clock)
    assert r["ok"] and r["applied"] == 6
    bad = {(x["list"], x["index"]): x["reason"] for x in r["rejected"]}
    assert set(bad) == {("skus", 3), ("skus", 4), ("skus", 5), ("locations", 3)}
    assert "check digit" in bad[("skus", 3)] and "sku" in bad[("skus", 4)]
    assert "already belongs to SKU SKU-1" in bad[("skus", 5)] and "unknown sku NOPE" in bad[("locations", 3)]
    assert service.floor.md.gtins["04006381333931"] == ("SKU-1", 1)
    assert service.floor.md.gtins["15012345678907"] == ("SKU-2", 6)


async def test_masterdata_replace_swaps_whole_and_survives_restart(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    gen = service.floor.md_gen
    r = await cmd(service, "masterdata.sync", {"cmd_id": "m2", "mode": "replace", "sync_id": "s2", "part": 1,
                                               "parts": 1, "skus": SKUS[:1]}, clock)
    assert r["ok"] and service.floor.md_gen == gen + 1
    assert list(service.floor.md.skus) == ["SKU-1"] and not service.floor.md.locations  # lists left out emptied
    await service.reload()
    assert list(service.floor.md.skus) == ["SKU-1"] and service.floor.md_gen == gen + 1


async def test_state_survives_reload(service: FloorService, clock: ManualClock) -> None:
    await load_md(service, clock)
    await cmd(service, "order.upsert", {"cmd_id": "c1", "order": order()}, clock)
    await cmd(service, "dispatch.hold", {"cmd_id": "c2", "scope": "order", "id": "O-1"}, clock)
    before = service.floor.orders["O-1"].to_doc()
    await service.reload()
    assert service.floor.orders["O-1"].to_doc() == before
    assert before["updated_seq"] == events(service)[-1][0]
    assert "order:O-1" in service.floor.holds


async def test_a_hold_on_an_operator_not_in_master_data_makes_no_picker(service: FloorService,
                                                                       clock: ManualClock) -> None:
    await load_md(service, clock)
    r = await cmd(service, "dispatch.hold", {"cmd_id": "h1", "scope": "operator", "id": "nobody"}, clock)
    # Refused as not_found (a typo held nobody while the hub believed the picker stopped), and no picker made.
    assert not r["ok"] and r["error"]["code"] == "not_found"
    assert "nobody" not in [p.operator_id for p in service.floor.dispatch.pickers()]  # telemetry lists these
    assert "operator:nobody" not in service.floor.holds
