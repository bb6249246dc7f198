"""The gateway and a hub simulator over a real Mosquitto: status, commands and results, events in order."""

from __future__ import annotations

from pathlib import Path

from tests.brokers import Broker
from tests.conftest import LOCATIONS, OPERATORS, SKUS, order
from tests.sync.conftest import gateway_config, running_gateway, running_hub


async def test_status_commands_results_and_events(tmp_path: Path, broker: Broker) -> None:
    cfg = gateway_config(tmp_path, broker)
    async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
        await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "online", 30)
        assert hub.status is not None
        assert {"site", "gateway", "version", "journal", "ts", "last_seq"} <= set(hub.status)
        md = await hub.command("masterdata.sync", {"mode": "replace", "sync_id": "md1", "part": 1, "parts": 1,
                                                   "skus": SKUS, "locations": LOCATIONS, "operators": OPERATORS})
        assert md["ok"] and md["status"] == "accepted"
        done = await hub.wait_result(md["cmd_id"], count=2)
        assert done["status"] == "done" and done["applied"] == 9 and done["rejected"] == []
        r = await hub.command("order.upsert", {"order": order("O-1")})
        assert r["ok"] and r["state"] == "received"
        assert app.journal is not None
        last = app.journal.last_seq
        await hub.wait_until(lambda: hub.holds(last), 30)
        view = hub.journals[app.journal.journal_id]
        types = [view.events[s]["type"] for s in sorted(view.events)]
        assert types[-1] == "order.received" and "bulk.progress" in types
        ev = view.events[last]
        assert ev["order_id"] == "O-1" and ev["cmd_id"] == r["cmd_id"] and ev["data"] == {"lines": 2}
        assert ev["site"] == "dc1" and ev["gateway"] == "zone-a" and ev["ts"].endswith("Z") and ev["v"] == 1
        await hub.wait_until(lambda: app.link is not None and app.link.publisher.hub_acked >= last, 30)
        assert hub.invalid == []
