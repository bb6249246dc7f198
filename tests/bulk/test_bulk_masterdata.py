"""100,000 SKUs (and 20,000 locations) in a replace with 50 malformed items while scans keep arriving: every
good item applied, the 50 reported, no scan lost, and the floor sees the old master data or the new, never
a mix."""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from pathlib import Path

from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import At
from gateway.domain.scanning import ScanInput, handle_scan
from tests.brokers import Broker
from tests.bulk.workload import masterdata_parts
from tests.sync.conftest import gateway_config, running_gateway, running_hub


def scan_item(f: Floor, c: Change, at: At) -> None:
    handle_scan(f, c, ScanInput("pda-1", "pick", "4006381333931", raw="4006381333931"), at)


async def test_100k_skus_with_50_bad_items_while_scanning(tmp_path: Path, broker: Broker) -> None:
    cfg = gateway_config(tmp_path, broker)
    async with running_gateway(cfg) as app, running_hub(broker.port, validate=False) as hub:
        service = app.service
        assert service is not None and app.journal is not None
        first = await hub.command("masterdata.sync", {
            "mode": "replace", "sync_id": "small", "part": 1, "parts": 1,
            "skus": [{"sku": "SKU-1", "gtins": ["4006381333931"]}, {"sku": "OLD-2", "gtins": ["05012345678900"]}],
            "operators": [{"operator_id": "p1", "badge": "BADGE-P1", "roles": ["picker"], "zones": ["zone-a"]}]})
        await hub.wait_result(first["cmd_id"], count=2)
        old_n = len(service.floor.md.skus)
        at = service.at()
        await service.execute(lambda f, c: handle_scan(f, c, ScanInput("pda-1", "pick", "BADGE-P1"), at))

        parts, bad = masterdata_parts(100_000, 20_000, parts=5, bad_every=2000)
        assert bad == 49
        parts[0]["skus"].append({"sku": "X", "gtins": []})  # a 50th: SKU id fine, but...
        parts[0]["skus"][-1]["gtins"] = ["123"]  # ...a GTIN of 3 digits
        new_n = sum(len(p["skus"]) for p in parts) - 50

        sizes: set[int] = set()
        scans = 0
        stop = asyncio.Event()

        async def scanner() -> None:
            nonlocal scans
            while not stop.is_set():
                sizes.add(len(service.floor.md.skus))
                now = service.at()
                await service.execute(partial(scan_item, at=now))
                scans += 1
                await asyncio.sleep(0.005)

        scan_task = asyncio.create_task(scanner(), name="bulk-test-scanner")
        ids = [hub.send("masterdata.sync", p) for p in parts]
        for cid in ids:
            r = await hub.wait_result(cid, timeout=120)
            assert r["ok"] and r["status"] == "accepted", r
        done = await hub.wait_result(ids[-1], timeout=300, count=2)
        stop.set()
        await scan_task
        assert done["status"] == "done" and done["ok"]
        assert len(done["rejected"]) == 50
        assert done["applied"] == new_n + 20_001 + 1
        assert {x["list"] for x in done["rejected"]} == {"skus"}
        assert all(x["reason"] and x["part"] in range(1, 6) for x in done["rejected"])
        assert sizes <= {old_n, new_n}, sizes  # old or new, never half
        assert len(service.floor.md.skus) == new_n and "OLD-2" not in service.floor.md.skus
        await app.journal.barrier()
        conn = sqlite3.connect(app.journal.path)
        stored = conn.execute("SELECT count(*) FROM audit WHERE kind = 'scan' AND device_id = 'pda-1'").fetchone()[0]
        conn.close()
        assert stored == scans + 1  # every scan (and the badge) stored
        assert scans > 20
        progress = [e for e in hub.journals[app.journal.journal_id].events.values() if e["type"] == "bulk.progress"
                    and e["data"]["sync_id"] == "big"]
        assert progress and progress[-1]["data"]["done"] == progress[-1]["data"]["total"]
        dones = [e["data"]["done"] for e in sorted(progress, key=lambda e: e["seq"])]
        assert dones == sorted(dones) and len(set(dones)) >= 10, dones  # through admitting and writing
        conn = sqlite3.connect(app.journal.path)
        live = conn.execute("SELECT count(*) FROM masterdata WHERE gen = (SELECT value FROM meta "
                            "WHERE key = 'md_gen')").fetchone()[0]
        conn.close()
        assert live == done["applied"]  # every admitted row written before the swap
        assert app.link is not None and app.link.bulk._releasing is not None
        assert await app.link.bulk._releasing > 0  # the old generation let go a slice at a time (bulk.release)
        assert all(e["cmd_id"] == ids[-1] for e in progress)
