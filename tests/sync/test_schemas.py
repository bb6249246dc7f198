"""The JSON Schemas shipped for integrators are the ones the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.contract import all_schemas, validate_event

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_schemas_match_the_code() -> None:
    generated = all_schemas()
    shipped = {str(p.relative_to(ROOT / "schemas")): json.loads(p.read_text(encoding="utf-8"))
               for p in (ROOT / "schemas").rglob("*.json")}
    assert set(shipped) == set(generated), "run `floorgate schemas --out schemas` and commit"
    for name, schema in generated.items():
        assert shipped[name] == json.loads(json.dumps(schema)), f"{name} drifted: run `floorgate schemas --out schemas`"


def test_every_command_and_event_has_a_schema() -> None:
    names = set(all_schemas())
    for cmd in ("masterdata.sync", "order.upsert", "order.upsert_batch", "order.cancel", "dispatch.hold",
                "dispatch.release", "pack.review", "sync.ack", "sync.replay", "sync.snapshot"):
        assert f"commands/{cmd}.json" in names
    for ev in ("pick.line_confirmed", "pack.verified", "scan.rejected", "bulk.progress", "task.assigned"):
        assert f"events/{ev}.json" in names


def test_contract_validation_catches_a_wrong_event() -> None:
    good = {"v": 1, "journal": "j", "event_id": "01a209e4-dcd5-76ad-b840-5267586f730c", "seq": 1,
            "type": "order.state_changed", "ts": "2026-11-23T08:00:00.000Z", "site": "dc1", "gateway": "zone-a",
            "order_id": "O-1", "data": {"from": "received", "to": "assigned"}}
    validate_event(good)
    bad = {**good, "data": {"from": "received"}}
    try:
        validate_event(bad)
    except ValueError:
        return
    raise AssertionError("a state change without `to` passed")
