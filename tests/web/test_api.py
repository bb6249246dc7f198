"""The JSON API on a real gateway: actions applied once (also when repeated at the same time and after a
restart), the PDA's confirms, short-picks, undo and break, packing with a reprint on a real TCP printer,
the supervisor's actions, lot recall and the CSV, the technician driving a simulated PTL bus, /metrics."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.printer import PrinterSimulator
from simulators.ptl import PtlSimulator
from simulators.scale import ScaleSimulator
from simulators.scanner import VirtualSerialScanner
from tests.web.conftest import (
    SUPERVISOR_PW,
    TECH_PW,
    Gate,
    action_id,
    badge_client,
    gateway,
    password_client,
    web_config,
)

pytestmark = pytest.mark.timeout(120)
GTIN_1, GTIN_2, GTIN_LOT = "4006381333931", "05012345678900", "09506000134352"
TASK = "O-1~zone-a"


def gs1_lot(lot: str) -> str:
    expiry = (datetime.now(UTC) + timedelta(days=400)).strftime("%y%m%d")
    return f"]C101{GTIN_LOT}17{expiry}10{lot}"


async def assigned(gate: Gate, order_id: str, lines: list[tuple[int, str, int]], badge: str = "BADGE-P1"
                   ) -> httpx.AsyncClient:
    await gate.order(order_id, lines)
    c, _ = await badge_client(gate, badge)
    await gate.until(lambda: gate.service.floor.orders[order_id].state == "assigned")
    return c


async def post(c: httpx.AsyncClient, path: str, **body: Any) -> dict[str, Any]:
    body.setdefault("action_id", action_id())
    r = await c.post(path, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_an_action_is_applied_once_even_when_sent_twice_at_once_and_after_a_restart(tmp_path: Path) -> None:
    cfg = web_config(tmp_path)
    async with gateway(cfg) as gate:
        c = await assigned(gate, "O-1", [(1, "SKU-1", 3)])
        try:
            body = {"action_id": "scan-0001-aaaa", "text": GTIN_1}
            first, second = await asyncio.gather(c.post("/api/v1/pda/scan", json=body),
                                                 c.post("/api/v1/pda/scan", json=body))
            answers = sorted([first.json(), second.json()], key=lambda a: a["replayed"])
            assert [a["replayed"] for a in answers] == [False, True]
            assert answers[0]["message"] == answers[1]["message"] == "SKU-1: 1 of 3, 2 to go"
            assert gate.service.floor.orders["O-1"].lines[0].picked == 1
        finally:
            await c.aclose()
    async with gateway(cfg, load=False) as gate:  # the answer was journaled with the effect
        c, _ = await badge_client(gate, "BADGE-P1")
        try:
            again = await post(c, "/api/v1/pda/scan", action_id="scan-0001-aaaa", text=GTIN_1)
            assert again["replayed"] is True and again["message"] == "SKU-1: 1 of 3, 2 to go"
            assert gate.service.floor.orders["O-1"].lines[0].picked == 1
            r = await c.post("/api/v1/pda/scan", json={"action_id": "scan-0001-aaaa", "text": GTIN_2})
            assert r.status_code == 409 and "already used for another action" in r.json()["error"]["message"]
            r = await c.post("/api/v1/pda/scan", json={"action_id": "x", "text": GTIN_1})
            assert r.status_code == 422 and r.json()["error"]["message"].startswith("action_id:")
        finally:
            await c.aclose()


async def test_pda_confirm_short_undo_and_break(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate:
        c = await assigned(gate, "O-1", [(1, "SKU-1", 3), (2, "SKU-2", 2)])
        try:
            r = await post(c, "/api/v1/pda/confirm", task_id=TASK, line_no=1, qty=3)
            assert r["ok"] is False and r["code"] == "not_allowed" and "scan the item" in r["message"]
            await post(c, "/api/v1/pda/scan", text=GTIN_1)
            r = await post(c, "/api/v1/pda/short", task_id=TASK, line_no=1, qty_picked=1)
            assert r["ok"] and r["message"] == "line 1: 2 picked, 1 short"
            view = (await c.get("/api/v1/pda/view")).json()
            assert view["undo"]["line_no"] == 1 and view["next"]["line_no"] == 2
            r = await post(c, "/api/v1/pda/undo", task_id=TASK, line_no=1)
            assert r["ok"] and r["message"] == "line 1 is open again"
            # an empty shelf: nothing to scan, the whole line is short
            r = await post(c, "/api/v1/pda/short", task_id=TASK, line_no=2, qty_picked=0)
            assert r["ok"] and r["message"] == "line 2: nothing picked, 2 short"
            await post(c, "/api/v1/pda/scan", text=GTIN_1)
            r = await post(c, "/api/v1/pda/confirm", task_id=TASK, line_no=1, qty=2)
            assert r["ok"]
            assert gate.service.floor.orders["O-1"].state == "short_picked"
            r = await post(c, "/api/v1/pda/break", on=True)
            assert r["ok"] and r["detail"]["on_break"] is True
            assert (await c.get("/api/v1/pda/view")).json()["on_break"] is True
            await post(c, "/api/v1/pda/break", on=False)
        finally:
            await c.aclose()
        shorts = [(e["data"]["line_no"], e["data"]["qty_picked"], e["data"]["reason"])
                  for e in gate.events("pick.line_short")]
        assert shorts == [(1, 2, "pda"), (2, 0, "pda")]
        assert [e["data"]["by"] for e in gate.events("pick.line_undone")] == ["p1"]
        assert len(gate.events("operator.break_started")) == len(gate.events("operator.break_ended")) == 1


async def test_a_picker_cannot_touch_another_pickers_task(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate:
        c1 = await assigned(gate, "O-1", [(1, "SKU-1", 1)])
        c2, _ = await badge_client(gate, "BADGE-P2")
        try:
            r = await post(c2, "/api/v1/pda/confirm", task_id=TASK, line_no=1, qty=1)
            assert r["ok"] is False and r["message"] == f"task {TASK} is not yours"
            await post(c1, "/api/v1/pda/scan", text=GTIN_1)
            r = await post(c2, "/api/v1/pda/undo", task_id=TASK, line_no=1)
            assert r["ok"] is False and "not yours" in r["message"]
            assert (await c2.get("/api/v1/auth/me")).json()["language"] == "zh"  # from master data
        finally:
            await c1.aclose()
            await c2.aclose()


async def _picked(gate: Gate, order_id: str, lot: str = "L1") -> None:
    c = await assigned(gate, order_id, [(1, "SKU-1", 1), (2, "SKU-LOT", 1)])
    try:
        for code in (GTIN_1, gs1_lot(lot)):
            r = await post(c, "/api/v1/pda/scan", text=code)
            assert r["ok"], r
    finally:
        await c.aclose()


async def test_packing_a_weight_review_a_reprint_recall_and_the_csv(tmp_path: Path) -> None:
    async with PrinterSimulator() as printer, ScaleSimulator(link=tmp_path / "scale") as scale:
        cfg = web_config(tmp_path, printers=[{"id": "prn-1", "station": "pack-1", "host": "127.0.0.1",
                                              "port": printer.port}],
                         scales=[{"id": "scale-2", "station": "pack-2", "port": scale.path}])
        async with gateway(cfg) as gate:
            await _picked(gate, "O-1", lot="=SUM+1")
            k, _ = await badge_client(gate, "BADGE-K1", "pack-1")
            try:
                r = await post(k, "/api/v1/pack/pack-1/scan", text="O-1")
                assert r["ok"] and r["message"] == "order O-1: scan its 2 item(s)"
                view = (await k.get("/api/v1/pack/pack-1/view")).json()
                assert {(i["sku"], i["lot"], i["expected"]) for i in view["items"]} == {
                    ("SKU-1", None, 1), ("SKU-LOT", "=SUM+1", 1)}
                assert view["expected_g"] == 420.0 and view["tolerance_pct"] == 15
                r = await post(k, "/api/v1/pack/pack-1/scan", text=gs1_lot("OTHER"))
                assert r["code"] == "wrong_lot" and "was not picked for this order" in r["message"]
                await post(k, "/api/v1/pack/pack-1/scan", text=gs1_lot("=SUM+1"))
                r = await post(k, "/api/v1/pack/pack-1/scan", text=GTIN_1)
                assert r["kind"] == "packed"
                sscc = r["detail"]["sscc"]
                r = await post(k, "/api/v1/pack/pack-1/reprint")
                assert r["sscc"] == sscc
                jobs = await printer.wait_for_jobs(2)  # the label, then its reprint
                assert all(sscc.encode() in j.data for j in jobs)
                resp = await k.post("/api/v1/pack/pack-1/reprint", json={"action_id": action_id(), "sscc": "1" * 18})
                assert resp.status_code == 404
            finally:
                await k.aclose()
            # a second order, packed at a station with a scale, weighs too much: held for the supervisor
            await _picked(gate, "O-2", lot="L2")
            scale.put(900.0)  # 420 g expected
            k2, _ = await badge_client(gate, "BADGE-K1", "pack-2")
            try:
                for code in ("O-2", GTIN_1):
                    await post(k2, "/api/v1/pack/pack-2/scan", text=code)
                r = await post(k2, "/api/v1/pack/pack-2/scan", text=gs1_lot("L2"))
                assert r["message"] == "all items match: weighing"
                await gate.until(lambda: gate.service.floor.orders["O-2"].state == "on_hold")
                view = (await k2.get("/api/v1/pack/pack-2/view")).json()
                assert view["reviews"] == ["O-2"] and view["has_scale"] is True
                assert view["result"]["ok"] is False and "+114.3% off" in view["result"]["message"]
            finally:
                await k2.aclose()
            s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
            try:
                snap = (await s.get("/api/v1/supervisor/snapshot")).json()
                assert [r["order_id"] for r in snap["reviews"]] == ["O-2"]
                r = await post(s, "/api/v1/supervisor/reviews/O-2", decision="approve")
                assert r["state"] == "packed"
                # The station's red "waits for a supervisor" is replaced: it stood beside the card saying packed.
                told = gate.web.live.station_results["pack-2"]
                assert told["ok"] and told["source"] == "review" and "approved by s1" in told["message"], told
                again = await s.post("/api/v1/supervisor/reviews/O-2", json={"action_id": action_id(),
                                                                             "decision": "approve"})
                assert again.status_code == 409 and "no weight review pending" in again.json()["error"]["message"]
                rec = (await s.get("/api/v1/supervisor/recall", params={"lot": "=SUM+1"})).json()
                assert rec["orders"] == ["O-1"]
                assert [(p["order_id"], p["qty"]) for p in rec["picks"]] == [("O-1", 1)]
                assert [(p["order_id"], p["sscc"]) for p in rec["packs"]] == [("O-1", sscc)]
                assert sorted(x["device_id"][:4] for x in rec["scans"]) == ["pda-", "pkwe"]  # picked, then packed
                got = await s.get("/api/v1/supervisor/export.csv")
                assert got.headers["content-type"].startswith("text/csv")
                assert got.content.startswith(b"\xef\xbb\xbf")
                rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
                kinds = [(x["type"], x["order_id"]) for x in rows]
                assert kinds.count(("pick.line_confirmed", "O-1")) == 2 and ("pack.verified", "O-2") in kinds
                lots = {x["lot"] for x in rows if x["order_id"] == "O-1"}
                assert "'=SUM+1" in lots  # never a live formula in a spreadsheet
                assert (await s.get("/api/v1/supervisor/export.csv", params={"day": "2001-02-30"})).status_code == 422
            finally:
                await s.aclose()


async def test_supervisor_holds_reassigns_undoes_and_sees_returns(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate:
        c = await assigned(gate, "O-1", [(1, "SKU-1", 1), (2, "SKU-2", 1)])
        p2, _ = await badge_client(gate, "BADGE-P2")
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            await post(c, "/api/v1/pda/scan", text=GTIN_1)
            snap = (await s.get("/api/v1/supervisor/snapshot")).json()
            assert [(u["task_id"], u["line_no"]) for u in snap["undo"]] == [(TASK, 1)]
            assert {p["operator_id"] for p in snap["pickers"]} == {"p1", "p2"}
            task = next(t for t in snap["tasks"] if t["task_id"] == TASK)
            assert task["operator_id"] == "p1"
            # The decision as made (p2 was not logged in then), with the score and reason of its event; no
            # preview of a new ranking for a task that is not waiting.
            assigned_ev = gate.events("task.assigned")[-1]["data"]
            d = task["decision"]
            assert (d["kind"], d["operator_id"], d["name"]) == ("assigned", "p1", "Ana")
            assert (d["score"], d["reason"]) == (assigned_ev["score"], assigned_ev["reason"])
            assert [(x["operator_id"], x["note"]) for x in d["candidates"]] == [("p1", "chosen")]
            assert task["choice"] is None
            r = await post(s, "/api/v1/supervisor/undo", task_id=TASK, line_no=1)
            assert r["ok"] and r["message"] == "line 1 is open again"
            r = await post(s, f"/api/v1/supervisor/tasks/{TASK}/reassign", operator_id="p2")
            assert r["ok"] and gate.service.floor.tasks[TASK].operator_id == "p2"
            stored = (await s.get(f"/api/v1/supervisor/tasks/{TASK}/decision")).json()
            assert stored["operator_id"] == "p2"
            assert {k: stored["decision"][k] for k in ("kind", "operator_id", "from_operator", "reason")} == {
                "kind": "manual", "operator_id": "p2", "from_operator": "p1", "reason": "moved by hand by s1"}
            assert (await s.get("/api/v1/supervisor/tasks/nope/decision")).status_code == 404
            resp = await s.post(f"/api/v1/supervisor/tasks/{TASK}/reassign", json={"action_id": action_id(),
                                                                                     "operator_id": "k1"})
            assert resp.status_code == 404 and resp.json()["error"]["message"] == "no picker k1"
            r = await post(s, "/api/v1/supervisor/hold", scope="order", id="O-1")
            assert r["changed"] and gate.service.floor.orders["O-1"].state == "on_hold"
            r = await post(p2, "/api/v1/pda/scan", text=GTIN_1)
            assert r["code"] == "not_allowed" and "on hold" in r["message"]
            await post(s, "/api/v1/supervisor/release", scope="order", id="O-1")
            # A zone hold and an `all` hold show on the task and the pickers too (the page said "held: no" and
            # "available: yes" under them).
            # A task already with a picker goes on under them (not held).
            for n, (scope, target) in enumerate((("zone", "zone-a"), ("all", None))):
                await post(s, "/api/v1/supervisor/hold", scope=scope, id=target)
                waiting = f"OH-{n}"
                assert (await gate.cmd("order.upsert", {"order": {"order_id": waiting, "lines": [
                    {"line_no": 1, "sku": "SKU-1", "qty": 1}]}}))["ok"]
                snap = (await s.get("/api/v1/supervisor/snapshot")).json()
                held = {t["order_id"]: t["held"] for t in snap["tasks"]}
                assert held[waiting] and not held["O-1"], (scope, held)
                assert not any(p["available"] for p in snap["pickers"]), scope
                await post(s, "/api/v1/supervisor/release", scope=scope, id=target)
                await gate.cmd("order.cancel", {"order_id": waiting, "reason": "test"})
            snap = (await s.get("/api/v1/supervisor/snapshot")).json()
            assert not any(t["held"] for t in snap["tasks"])
            assert any(p["available"] for p in snap["pickers"])
            resp = await s.post("/api/v1/supervisor/hold", json={"action_id": action_id(), "scope": "order",
                                                                "id": "NOPE"})
            assert resp.status_code == 404
            resp = await s.post("/api/v1/supervisor/hold", json={"action_id": action_id(), "scope": "zone"})
            assert resp.status_code == 422 and "needs an id" in resp.json()["error"]["message"]
            await post(p2, "/api/v1/pda/scan", text=GTIN_1)
            await gate.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"})
            returns = (await s.get("/api/v1/supervisor/returns")).json()
            assert returns == [{"order_id": "O-1", "line_no": 1, "sku": "SKU-1", "qty": 1, "lot": None,
                                "location": "A-01-01", "tote": None}]
            resp = await s.get("/api/v1/supervisor/tasks/nope/choice")
            assert resp.status_code == 404
        finally:
            for x in (c, p2, s):
                await x.aclose()


async def test_technician_drives_a_ptl_module_sees_raw_scans_and_metrics_show_them(tmp_path: Path) -> None:
    with VirtualSerialScanner(tmp_path / "scan-1") as scanner:
        async with PtlSimulator([1, 2, 3], port=0) as sim:
            await _technician(tmp_path, sim, scanner)


async def _technician(tmp_path: Path, sim: PtlSimulator, scanner: VirtualSerialScanner) -> None:
    cfg = web_config(tmp_path, ptl={"buses": [{"id": "bus-a", "port": sim.port, "timeout_ms": 200}]},
                     scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick"}])
    async with gateway(cfg) as gate:
        t, _ = await password_client(gate, "t1", TECH_PW)
        try:
            await gate.until(lambda: gate.app.registry.devices["scan-1"].online)
            await scanner.scan("BADGE-P1")
            await scanner.send(b"NO\x07SUCH\r\n")
            await gate.until(lambda: gate.app.registry.devices["scan-1"].scans == 2)
            scans = (await t.get("/api/v1/technician/devices")).json()["scanners"][0]["last_scans"]
            assert [(x["raw"], x["ok"], x["code"]) for x in scans] == [
                ("NO\\x07SUCH", False, "unknown_barcode"), ("BADGE-P1", True, None)]
            await gate.until(lambda: all(m["online"] for b in
                                         [gate.app.fleet.ptl.buses["bus-a"].snapshot()]  # type: ignore[union-attr]
                                         for m in b["modules"].values()) and
                             len(gate.app.fleet.ptl.buses["bus-a"].snapshot()["modules"]) == 3)  # type: ignore[union-attr]
            resp = await t.get("/api/v1/technician/modules/bus-a-u002/identity")
            assert resp.status_code == 200 and resp.json()["serial"] == "SIM-000002", resp.text
            done = await post(t, "/api/v1/technician/modules/bus-a-u001/identify")
            assert done["ok"] and sim.module(1).identify_until > 0
            assert (await t.post("/api/v1/technician/modules/bus-a-u009/identify", json={})).status_code == 404
            assert (await t.post("/api/v1/technician/modules/bus-z-u001/self-test", json={})).status_code == 404
            for unit in ("000", "248"):  # not a module's unit id (0 is Modbus broadcast): said so
                r = await t.get(f"/api/v1/technician/modules/bus-a-u{unit}/identity")
                assert r.status_code == 404 and "unit id is 1 to 247" in r.json()["error"]["message"], r.text
            devices = (await t.get("/api/v1/technician/devices")).json()
            assert [m["module_id"] for m in devices["buses"][0]["modules"]] == [
                "bus-a-u001", "bus-a-u002", "bus-a-u003"]
        finally:
            await t.aclose()
        async with httpx.AsyncClient(base_url=gate.base) as anon:
            r = await anon.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        scans_total = {s.labels["device"]: s.value for s in families["floorgate_scans"].samples}
        assert scans_total == {"scan-1": 2.0, "pages": 0.0}
        for name in ("floorgate_scans", "floorgate_scan_rejects", "floorgate_ptl_bus_transactions",
                     "floorgate_ptl_module_misses", "floorgate_dispatch_decisions", "floorgate_orders",
                     "floorgate_scan_latency_recent_seconds", "floorgate_journal_last_seq"):
            assert name in families, name
        tx = [s for s in families["floorgate_ptl_bus_transactions"].samples if s.labels == {"bus": "bus-a"}]
        assert tx and tx[0].value > 0
        misses = {s.labels["module"] for s in families["floorgate_ptl_module_misses"].samples}
        assert misses == {"bus-a-u001", "bus-a-u002", "bus-a-u003"}
        stale = [s for s in families["floorgate_ptl_stale_keys"].samples if s.labels == {"bus": "bus-a"}]
        assert stale and stale[0].value == 0  # presses dropped as stale: none here


async def test_healthz_openapi_and_sync_backlog_with_a_broker(tmp_path: Path) -> None:
    from tests.brokers import Broker
    from tests.sync.conftest import gateway_config, running_gateway

    broker = Broker(tmp_path / "broker").start()
    try:
        async with running_gateway(gateway_config(tmp_path, broker)) as app:
            gate = Gate(app)
            await gate.load()
            await gate.order("O-1", [(1, "SKU-1", 1)])  # events for the hub, which never acks here
            await gate.until(lambda: app.link is not None and app.link.mqtt.connected.is_set())
            async with httpx.AsyncClient(base_url=gate.base) as anon:
                health = (await anon.get("/healthz")).json()
                assert health["ok"] is True and health["mqtt"] is True and health["storage"] == "ok"
                schema = (await anon.get("/api/v1/openapi.json")).json()
            assert "/api/v1/pda/scan" in schema["paths"] and "/api/v1/supervisor/hold" in schema["paths"]
            s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
            try:
                sync = (await s.get("/api/v1/supervisor/snapshot")).json()["sync"]
                assert sync["connected"] is True and sync["pending"] == app.journal.last_seq > 0  # type: ignore[union-attr]
            finally:
                await s.aclose()
    finally:
        broker.stop()


async def test_live_stream_sends_a_new_snapshot_when_the_floor_changes(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate:
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            async with s.stream("GET", "/api/v1/supervisor/stream") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                seen: list[int] = []
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        import json

                        seen.append(json.loads(line[6:])["orders"]["by_state"]["received"])
                        if len(seen) == 1:
                            await gate.order("O-5", [(1, "SKU-1", 1)])
                        elif seen[-1] == 1:
                            break
                assert seen[0] == 0 and seen[-1] == 1
        finally:
            await s.aclose()


async def test_the_dashboard_explains_the_decision_as_made_not_a_new_ranking(tmp_path: Path) -> None:
    """p2 is held when the task is decided: the stored decision says so (with the event's score and reason),
    and still says so after the hold is released, while a ranking made now would find p2 eligible."""
    async with gateway(web_config(tmp_path)) as gate:
        p1, _ = await badge_client(gate, "BADGE-P1")
        p2, _ = await badge_client(gate, "BADGE-P2")
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            await post(s, "/api/v1/supervisor/hold", scope="operator", id="p2")
            await gate.order("O-1", [(1, "SKU-1", 1)])
            await gate.until(lambda: TASK in gate.service.floor.tasks
                             and gate.service.floor.tasks[TASK].operator_id is not None)
            await post(s, "/api/v1/supervisor/release", scope="operator", id="p2")
            ev = gate.events("task.assigned")[-1]["data"]
            assert ev["operator_id"] == "p1"
            snap = (await s.get("/api/v1/supervisor/snapshot")).json()
            d = next(t for t in snap["tasks"] if t["task_id"] == TASK)["decision"]
            assert (d["kind"], d["operator_id"], d["score"], d["reason"]) == ("assigned", "p1", ev["score"],
                                                                              ev["reason"])
            assert {x["operator_id"]: (x["eligible"], x["note"]) for x in d["candidates"]} == {
                "p1": (True, "chosen"), "p2": (False, "held")}
            now = (await s.get(f"/api/v1/supervisor/tasks/{TASK}/choice")).json()
            assert {x["operator_id"]: x["eligible"] for x in now["candidates"]}["p2"] is True
            pickers = {p["operator_id"]: p for p in snap["pickers"]}
            assert pickers["p2"]["last_decision"] == {"task_id": TASK, "at": d["at"], "got": False, "note": "held"}
            assert pickers["p1"]["last_decision"]["got"] is True
            stored = (await s.get(f"/api/v1/supervisor/tasks/{TASK}/decision")).json()
            assert stored["decision"] == d
        finally:
            for x in (p1, p2, s):
                await x.aclose()


async def test_another_badge_on_the_pda_page_carries_on_as_that_picker(tmp_path: Path) -> None:
    """SPEC §6: a second badge logs the first operator out (`replaced`). On the PDA page the new picker was
    logged in on a device no page showed (and could be given work nobody saw); the page now carries on as them."""
    async with gateway(web_config(tmp_path)) as gate:
        c, me = await badge_client(gate, "BADGE-P1")
        try:
            r = await post(c, "/api/v1/pda/scan", text="BADGE-P2")
            assert r["ok"] and r["switched_to"] == "p2", r
            assert r["me"]["operator_id"] == "p2" and r["me"]["csrf"]  # the next action needs the new token at once
            who = (await c.get("/api/v1/auth/me")).json()  # the client keeps the new cookie
            assert who["operator_id"] == "p2" and who["language"] == "zh"  # p2's own, from master data
            device = me["device_id"]
            sessions = [s for s in gate.service.floor.sessions.values() if s.device_id == device]
            assert [s.operator_id for s in sessions] == ["p2"]
            view = (await c.get("/api/v1/pda/view")).json()
            assert view["operator_id"] == "p2"
        finally:
            await c.aclose()


async def test_the_supervisor_sees_the_most_urgent_tasks_when_there_are_too_many_to_show(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on a peak day: with a backlog over the 150 tasks shown, the supervisor saw the 150 oldest, and an
    urgent order (and every escalation) behind them was not there at all."""
    from gateway.web import views

    monkeypatch.setattr(views, "MAX_TASKS", 3)
    async with gateway(web_config(tmp_path)) as gate:
        for k in range(4):
            await gate.order(f"O-OLD-{k}", [(1, "SKU-1", 1)])
        soon = (datetime.now(UTC) + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await gate.order("O-URGENT", [(1, "SKU-1", 1)], cutoff_at=soon)
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            snap = (await s.get("/api/v1/supervisor/snapshot")).json()
        finally:
            await s.aclose()
        assert snap["tasks_total"] == 5
        assert snap["tasks"][0]["order_id"] == "O-URGENT"
        assert len(snap["tasks"]) == 3


async def test_a_failed_badge_login_goes_through_the_scan_pipeline(tmp_path: Path) -> None:
    """SPEC §2: every scan from any source enters the same pipeline. A scanner's unknown badge, shelf or item
    with nobody logged in gives `scan.rejected` and an audit row; at the PDA's badge login they left no trace."""
    import sqlite3

    async with gateway(web_config(tmp_path)) as gate:
        codes = ["BADGE-X", "A-01-01", GTIN_1]
        async with httpx.AsyncClient(base_url=gate.base, timeout=20) as c:
            for code in codes:
                r = await c.post("/api/v1/auth/badge", json={"badge": code, "station": "pick"})
                assert r.status_code == 401 and r.json()["error"]["code"] == "unknown_barcode", r.text
        await gate.service.journal.barrier()
        rejected = [e["data"] for e in gate.events("scan.rejected")]
        assert [d["raw"] for d in rejected] == codes
        assert all(d["device_id"].startswith("pda-") for d in rejected)
        conn = sqlite3.connect(gate.service.journal.path)
        try:
            rows = conn.execute("SELECT raw, device_id FROM audit WHERE kind = 'scan' ORDER BY id").fetchall()
        finally:
            conn.close()
        assert [r[0] for r in rows[-3:]] == codes and all(r[1].startswith("pda-") for r in rows[-3:])


async def _pack(gate: Gate, order_id: str, lot: str) -> str:
    """Pick `order_id` and pack it at pack-1; returns its SSCC."""
    await _picked(gate, order_id, lot=lot)
    k, _ = await badge_client(gate, "BADGE-K1", "pack-1")
    try:
        for code in (order_id, gs1_lot(lot), GTIN_1):
            r = await post(k, "/api/v1/pack/pack-1/scan", text=code)
        assert r["kind"] == "packed", r
        return str(r["detail"]["sscc"])
    finally:
        await k.aclose()


async def test_a_label_not_printed_is_told_at_its_station_and_kept_until_printed(tmp_path: Path) -> None:
    """The printer was off: the station kept its green "packed", and the printer's alarm named only the last
    label that failed, so a first unlabelled parcel was forgotten once a second one failed."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the printer is off
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = web_config(tmp_path, printers=[{"id": "prn-1", "station": "pack-1", "host": "127.0.0.1", "port": port}])
    async with gateway(cfg) as gate:
        first = await _pack(gate, "O-1", "L1")
        await gate.until(lambda: "printer:prn-1" in gate.service.floor.alarms)
        k, _ = await badge_client(gate, "BADGE-K1", "pack-1")
        try:
            await gate.until(lambda: gate.web.live.station_results.get("pack-1", {}).get("source") == "printer")
            view = (await k.get("/api/v1/pack/pack-1/view")).json()
            assert view["result"]["ok"] is False and "label for order O-1" in view["result"]["message"]
        finally:
            await k.aclose()
        second = await _pack(gate, "O-2", "L2")
        await gate.until(lambda: "2 label(s)" in gate.service.floor.alarms["printer:prn-1"].message)
        message = gate.service.floor.alarms["printer:prn-1"].message
        assert first in message and second in message, message
        async with PrinterSimulator(port=port) as printer:  # the printer is back
            k, _ = await badge_client(gate, "BADGE-K1", "pack-1")
            try:
                await post(k, "/api/v1/pack/pack-1/reprint", sscc=second)
                await printer.wait_for_jobs(1)
                await gate.until(lambda: "1 label(s)" in gate.service.floor.alarms["printer:prn-1"].message)
                assert first in gate.service.floor.alarms["printer:prn-1"].message  # O-1 still unlabelled
                await post(k, "/api/v1/pack/pack-1/reprint", sscc=first)
                await gate.until(lambda: "printer:prn-1" not in gate.service.floor.alarms)
            finally:
                await k.aclose()
