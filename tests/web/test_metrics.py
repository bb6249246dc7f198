"""/metrics on a real gateway: every family the issue asks for (scans, rejects, events pending sync, bus
transactions, module misses, dispatch decisions) with values that follow the floor, and the sync backlog
taken from the journal whether a hub link runs or not: pending = last committed seq - the hub's last ack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.ptl import PtlSimulator
from tests.brokers import Broker
from tests.sync.conftest import gateway_config, running_gateway, running_hub
from tests.web.conftest import Gate, action_id, badge_client, gateway, web_config

pytestmark = pytest.mark.timeout(120)
GTIN_1, GTIN_2 = "4006381333931", "05012345678900"
# counters lose their _total in the parser's family names
REQUIRED = ("floorgate_scans", "floorgate_scan_rejects", "floorgate_sync_pending_events",
            "floorgate_ptl_bus_transactions", "floorgate_ptl_module_misses", "floorgate_dispatch_decisions")


async def scrape(gate: Gate) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gate.base) as anon:
        r = await anon.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    found = [s.value for s in families[name].samples if s.labels == labels]
    assert len(found) == 1, (name, labels, families[name].samples)
    return float(found[0])


async def test_every_required_family_is_there_and_counts_without_a_hub_link(tmp_path: Path) -> None:
    async with PtlSimulator([1, 2, 3], port=0) as sim:
        cfg = web_config(tmp_path, ptl={"buses": [{"id": "bus-a", "port": sim.port, "timeout_ms": 200}]})
        async with gateway(cfg) as gate:  # no MQTT link at all, as `floorgate demo --no-broker`
            assert gate.app.link is None
            await gate.order("O-1", [(1, "SKU-1", 2)])
            c, _ = await badge_client(gate, "BADGE-P1")
            try:
                await gate.until(lambda: gate.service.floor.orders["O-1"].state == "assigned")
                for code in (GTIN_2, GTIN_1):  # a wrong item, then the right one
                    r = await c.post("/api/v1/pda/scan", json={"action_id": action_id(), "text": code})
                    assert r.status_code == 200, r.text
            finally:
                await c.aclose()
            await gate.until(lambda: len(gate.app.fleet.ptl.buses["bus-a"].snapshot()["modules"]) == 3  # type: ignore[union-attr]
                             and gate.app.fleet.ptl.buses["bus-a"].snapshot()["transactions"] > 0)  # type: ignore[union-attr]
            families = await scrape(gate)
            for name in REQUIRED:
                assert name in families, name
            assert value(families, "floorgate_scans", source="page", device="pages") == 2
            assert value(families, "floorgate_scan_rejects", source="page", device="pages") == 1
            last = gate.service.journal.last_seq
            assert last > 0
            assert value(families, "floorgate_sync_pending_events") == last  # nothing was ever acked
            assert value(families, "floorgate_sync_hub_acked_seq") == 0
            assert value(families, "floorgate_hub_connected") == 0
            assert value(families, "floorgate_journal_last_seq") == last
            assert value(families, "floorgate_ptl_bus_transactions", bus="bus-a") > 0
            assert {s.labels["module"] for s in families["floorgate_ptl_module_misses"].samples} == {
                "bus-a-u001", "bus-a-u002", "bus-a-u003"}
            assert value(families, "floorgate_dispatch_decisions") >= 1  # the assignment of O-1


async def test_pending_sync_follows_the_hubs_ack_with_the_link_and_after_it(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        cfg = gateway_config(tmp_path, broker)
        async with running_gateway(cfg) as app:
            gate = Gate(app)
            await gate.load()
            for n in range(3):
                await gate.order(f"O-{n}", [(1, "SKU-1", 1)])
            await gate.until(lambda: app.link is not None and app.link.mqtt.connected.is_set())
            assert app.journal is not None and app.link is not None
            last = app.journal.last_seq
            acked = last - 2
            async with running_hub(broker.port, auto_ack=False) as hub:
                hub.send("sync.ack", {"up_to_seq": acked, "journal": app.journal.journal_id})
                await gate.until(lambda: app.link is not None and app.link.publisher.hub_acked == acked)
            families = await scrape(gate)
            assert value(families, "floorgate_sync_pending_events") == app.journal.last_seq - acked
            assert value(families, "floorgate_sync_hub_acked_seq") == acked
            assert value(families, "floorgate_hub_connected") == 1
            meta = await app.journal.read_meta()
            assert meta["hub_acked_seq"] == str(acked)
        # the same journal without a hub link: the stored ack stands, everything after it is pending
        async with gateway(cfg, load=False) as gate:
            assert gate.app.link is None
            families = await scrape(gate)
            last = gate.service.journal.last_seq
            assert value(families, "floorgate_sync_pending_events") == last - acked >= 2
            assert value(families, "floorgate_sync_hub_acked_seq") == acked
            assert value(families, "floorgate_hub_connected") == 0
    finally:
        broker.stop()
