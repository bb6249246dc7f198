"""The audit row a scan leaves: scans typed on a virtual serial scanner (a real pty) go through the gateway,
and each row is read back from the journal's SQLite file: who (operator), when (RFC 3339 UTC with
milliseconds and `Z`), which device, the raw value (escaped per SPEC §2), the result, and the body with the
station, source, message and interpretation."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.clock import SystemClock
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.conftest import LOCATIONS, OPERATORS, SKUS, make_config, until

RFC3339_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
COLUMNS = ("id", "ts", "kind", "device_id", "operator_id", "order_id", "lot", "raw", "result", "body")


def scan_rows(db: Path) -> list[dict[str, Any]]:
    """The scan rows of the audit trail, as stored (a separate connection to the file, as an auditor has)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE kind = 'scan' ORDER BY id").fetchall()
    finally:
        conn.close()
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def utc(ts: str) -> datetime:
    assert RFC3339_MS_Z.match(ts), ts
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[App, VirtualSerialScanner]]:
    link = tmp_path / "usb-scanner-1"
    sim = VirtualSerialScanner(link, terminator="crlf")
    sim.plug()
    cfg = make_config(tmp_path / "gw", scanners=[{"id": "scan-1", "port": str(link), "station": "pick"}])
    app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
    task = asyncio.create_task(app.run(install_signals=False), name="audit-test-gateway")
    try:
        await until(lambda: app.ready.is_set() and app.registry.devices["scan-1"].online, "the scanner online")
        assert app.service is not None
        service = app.service
        commands: list[tuple[str, dict[str, Any]]] = [
            ("masterdata.sync", {"mode": "replace", "sync_id": "m", "part": 1, "parts": 1, "skus": SKUS,
                                 "locations": LOCATIONS, "operators": OPERATORS}),
            ("order.upsert", {"order": {"order_id": "O-1", "lines": [{"line_no": 1, "sku": "SKU-LOT", "qty": 2}]}}),
        ]
        for n, (name, payload) in enumerate(commands):
            cmd = COMMANDS[name].model_validate({"cmd_id": f"c{n}", **payload})
            at = service.at()

            def op(f: Any, ch: Any, cmd: Any = cmd, at: Any = at) -> Any:
                return apply_command(f, ch, cmd, at)

            r = await service.execute_command(name, cmd.cmd_id, op)
            assert r["ok"], r
        yield app, sim
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)
        sim.close()


async def test_every_field_of_the_audit_row_of_a_scan(gateway: tuple[App, VirtualSerialScanner]) -> None:
    app, sim = gateway
    assert app.fleet is not None and app.journal is not None and app.ticker is not None and app.service is not None
    floor = app.service.floor
    info = app.registry.devices["scan-1"]
    scanner = app.fleet.scanners["scan-1"]
    before = datetime.now(UTC).replace(microsecond=0)

    async def scan(data: bytes, n: int) -> None:
        await sim.send(data)
        await until(lambda: info.scans == n, f"scan {n} handled")

    # 1. A badge: the operator logs in on the scanner.
    await scan(b"BADGE-P1\r\n", 1)
    app.ticker.poke()  # the order goes to the picker now logged in
    await until(lambda: any(t.operator_id == "p1" for t in floor.tasks.values()), "a task for p1")
    # 2. A GS1 symbol (AIM ]C1) with a lot, an expiry and FNC1 as GS: the item of the picker's line.
    await scan(b"]C10109506000134352" + b"10LOT-7\x1d17491231\r\n", 2)
    # 3. Junk with a control character and a byte that is not UTF-8: refused, and kept escaped.
    await scan(b"NO\x07PE\\\xff\r\n", 3)
    await app.journal.barrier()
    after = datetime.now(UTC)
    assert [o.ok for o in scanner.outcomes] == [True, True, False]

    rows = scan_rows(app.cfg.db_path)
    assert len(rows) == 3
    badge, item, junk = rows
    for row in rows:
        assert before <= utc(row["ts"]) <= after
        assert row["kind"] == "scan" and row["device_id"] == "scan-1" and row["operator_id"] == "p1"
        body = json.loads(row["body"])
        # The body repeats the columns (the hub and the export read it) and adds what has no column.
        for col in ("ts", "kind", "device_id", "operator_id", "order_id", "lot", "raw", "result"):
            assert body[col] == row[col], (col, body, row)
        assert (body["station"], body["source"]) == ("pick", "scanner")
        assert isinstance(body["message"], str)
    assert [utc(r["ts"]) for r in rows] == sorted(utc(r["ts"]) for r in rows)

    assert (badge["raw"], badge["result"], badge["order_id"], badge["lot"]) == ("BADGE-P1", "ok", None, None)
    assert json.loads(badge["body"])["interpretation"] == {"kind": "badge", "code": "BADGE-P1"}

    assert item["raw"] == "]C10109506000134352" + "10LOT-7\\x1d17491231"
    assert (item["result"], item["order_id"], item["lot"]) == ("ok", "O-1", "LOT-7")
    interpretation = json.loads(item["body"])["interpretation"]
    assert {k: interpretation[k] for k in ("gtin", "sku", "lot", "expiry", "symbology")} == {
        "gtin": "09506000134352", "sku": "SKU-LOT", "lot": "LOT-7", "expiry": "2049-12-31", "symbology": "]C1"}

    assert junk["raw"] == "NO\\x07PE\\x5c\\xff"
    assert (junk["result"], junk["order_id"], junk["lot"]) == ("unknown_barcode", None, None)
    assert json.loads(junk["body"])["interpretation"]["kind"] == "unknown"


async def test_a_scan_too_long_is_refused_and_its_reason_says_how_long(
        gateway: tuple[App, VirtualSerialScanner]) -> None:
    app, sim = gateway
    assert app.journal is not None
    await sim.send(b"7" * 5000 + b"\r\n")
    await until(lambda: app.registry.devices["scan-1"].scans == 1, "the scan")
    await app.journal.barrier()
    conn = sqlite3.connect(app.cfg.db_path)
    try:
        rejected = [json.loads(b)["data"] for (b,) in conn.execute(
            "SELECT body FROM events WHERE type = 'scan.rejected' ORDER BY seq")]
    finally:
        conn.close()
    assert [d["code"] for d in rejected] == ["invalid_barcode"]
    assert rejected[0]["raw"] == "7" * 4096  # SPEC: what was scanned (its head), nothing added to it
    assert rejected[0]["reason"].startswith("scan of 5000 characters is longer than 4096")
