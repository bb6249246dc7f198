"""What a full disk looks like from the devices (the whole floor under it is in test_floor_faults.py): a scan
that cannot be stored gets no beep at all (no beep is read as "not taken, scan again"; a bad beep would say
the item is wrong), a key press that cannot be stored is never acknowledged (the job is shown again under a
new token, never `done`), a weight that cannot be stored does not stop the gateway, and once there is room
again the same actions count exactly once. SQLite's page limit stands in for the full disk; a real ENOSPC (a
small tmpfs in a mount namespace of a child process) fails the same way."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.ptl import Mode, ModuleState
from gateway.app import App
from gateway.clock import SystemClock
from gateway.devices import fleet
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.domain.model import Station
from gateway.journal import store
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.conftest import LOCATIONS, OPERATORS, SKUS, make_config, until
from tests.faults.rig import fill_disk, free_disk

ROOT = Path(__file__).resolve().parents[2]
GOOD, BAD = b"\x06", b"\x15"
ITEM = "4006381333931"  # SKU-1, on module 1


def events(db: Path, typ: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = [json.loads(b) for (b,) in conn.execute("SELECT body FROM events ORDER BY seq")]
    finally:
        conn.close()
    return [r["data"] for r in rows if r["type"] == typ]


async def test_what_could_not_be_stored_is_never_shown(tmp_path: Path) -> None:
    scanner = VirtualSerialScanner(tmp_path / "by-id-scan-1", terminator="crlf")
    scanner.plug()
    try:
        async with PtlSimulator(range(1, 4), transport="tcp") as ptl, ScaleSimulator(unit="g") as scale:
            bus = {"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": ptl.port, "poll_ms": 20,
                   "timeout_ms": 200}
            cfg = make_config(tmp_path / "gw", ptl={"buses": [bus]},
                              scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick",
                                         "good_feedback": GOOD.hex(), "bad_feedback": BAD.hex()}],
                              scales=[{"id": "scale-1", "station": "pack-1", "port": scale.path}])
            app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
            task = asyncio.create_task(app.run(install_signals=False), name="disk-full-gateway")
            try:
                await until(app.ready.is_set, "the gateway")
                await run_floor(app, task, ptl, scanner, scale, cfg.db_path)
            finally:
                app.stop()
                await asyncio.wait_for(task, 60)
    finally:
        scanner.close()
    conn = sqlite3.connect(cfg.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [s for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()
    assert seqs == list(range(1, len(seqs) + 1))


async def run_floor(app: App, task: asyncio.Task[None], ptl: PtlSimulator, scanner: VirtualSerialScanner,
                    scale: ScaleSimulator, db: Path) -> None:
    service, journal, fleet = app.service, app.journal, app.fleet
    assert service is not None and journal is not None and fleet is not None and fleet.ptl is not None
    info = app.registry.devices["scan-1"]
    n = 0

    async def cmd(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal n
        n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"c{n}", **payload})
        at = service.at()
        return await service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def scan(text: str) -> None:
        """Scan and wait until the gateway has answered it (or decided not to)."""
        before = info.scans
        await scanner.scan(text)
        await until(lambda: info.scans > before, f"the gateway to handle {text}")

    # Every state the gateway asks module 1 to show, in order.
    driver = fleet.ptl.buses["bus-a"]
    shown: list[ModuleState] = []
    set_state = driver.set_state

    def spy(unit: int, state: ModuleState) -> None:
        if unit == 1:
            shown.append(state)
        set_state(unit, state)
    driver.set_state = spy  # type: ignore[method-assign]

    assert (await cmd("masterdata.sync", {"mode": "replace", "sync_id": "m", "part": 1, "parts": 1, "skus": SKUS,
                                          "locations": LOCATIONS, "operators": OPERATORS}))["ok"]
    await scan("BADGE-P1")
    assert await scanner.wait_feedback(1) == GOOD
    assert (await cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [
        {"line_no": 1, "sku": "SKU-1", "qty": 3}]}}))["ok"]
    assert app.ticker is not None
    app.ticker.poke()
    node = ptl.module(1)
    await until(lambda: node.mode == 1 and node.quantity == 3, "the job on module 1")
    await scan(ITEM)
    assert await scanner.wait_feedback(1) == GOOD
    await until(lambda: node.mode == 1 and node.quantity == 2, "the count down")

    # The disk fills up.
    await fill_disk(journal)
    failures: list[Exception] = []
    journal.on_failure(failures.append)
    await scan(ITEM)  # not stored: no beep (checked below, once a later scan has beeped)
    assert failures, "the scan was stored on a full disk"
    assert info.last_scans[-1]["ok"] is False and "not stored" in info.last_scans[-1]["message"]
    token = node.token
    seen = len(shown)
    presses = fleet.ptl.presses
    assert ptl.press(1, "confirm")
    await until(lambda: fleet.ptl is not None and fleet.ptl.presses > presses, "the press read")
    # Refused: at the journal, or before anything changed (a failed write leaves the gateway refusing until a
    # small write finds room, so one failure does not cost a rebuild of the floor per scan or press).
    await until(lambda: service._recovering is None, "the press refused")
    await until(lambda: node.mode == 1 and node.token != token, "the job shown again under a new token")
    assert node.quantity == 2
    assert all(s.mode == Mode.JOB and s.qty == 2 for s in shown[seen:]), shown[seen:]
    # A weight that cannot be stored: answered as not stored, and the gateway runs on. (The station is set to
    # await it in memory only: packing the order first would need the disk; the failed commit rebuilds it.)
    service.floor.stations["pack-1"] = Station("pack-1", order_id="O-1", awaiting_weight=True)
    scale.put(250.0)
    out = await fleet.scales["scale-1"].weigh("O-1")
    assert not out.ok and "not stored" in out.message
    assert not task.done(), "the gateway stopped"

    # Room again: the same scan and press count once each, and the picker hears only their beeps.
    await free_disk(journal)
    await scan(ITEM)
    assert await scanner.wait_feedback(1) == GOOD
    assert scanner.read_feedback() == b"", "the scan that was not stored was answered"
    await until(lambda: node.mode == 1 and node.quantity == 1, "the count down")
    assert ptl.press(1, "confirm")
    await until(lambda: service.floor.orders["O-1"].state == "picked", "the order picked")
    await journal.barrier()
    assert [d["qty"] for d in events(db, "pick.line_confirmed")] == [3]
    audit = list(await journal.reader.execute_fetchall("SELECT raw FROM audit WHERE raw LIKE ?", (f"%{ITEM}%",)))
    assert len(audit) == 2, audit  # two item scans stored: the one on the full disk left no trace


def test_a_real_enospc_fails_cleanly_and_commits_resume(tmp_path: Path) -> None:
    """The disk itself full (ENOSPC from write(2), not SQLite's page limit): each commit fails whole as
    `StorageFull`, no transaction is left open, nothing committed is lost, and the next commit after room
    returns goes through with the next seq."""
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    proc = subprocess.run([*unshare, sys.executable, "-m", "tests.faults.enospc_child", str(tmp_path / "mnt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if "MOUNTED" not in proc.stdout:
        pytest.skip(f"no mount namespace with a tmpfs here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == ["StorageFull"] * 3 and out["storage"] == "full", out
    assert not out["open_transaction"] and not out["open_transaction_after"], out
    assert out["after_seq"] == out["full_seq"] + 1 > 1, out
    assert out["integrity"] == "ok" and out["seqs"] == list(range(1, out["after_seq"] + 1)), out


async def test_device_changes_a_full_disk_kept_out_are_stored_once_there_is_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drivers report a change once: a scanner pulled out, a module gone from the bus or reporting a fault while
    the disk was full stayed `online` and unalarmed for the floor and the hub for good (each failed commit was
    logged and dropped). They are now stored, as the devices are then, once there is room. The full disk is
    SQLite's own error from every commit (fill_disk leaves room in a table's last page for a small event)."""
    full = False
    real_write = store._Rows.write

    def write(rows: store._Rows, conn: sqlite3.Connection) -> None:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        real_write(rows, conn)
    monkeypatch.setattr(store._Rows, "write", write)
    monkeypatch.setattr(fleet, "RESAVE_S", 0.2)  # the retry while the disk stays full
    scanner = VirtualSerialScanner(tmp_path / "by-id-scan-1", terminator="crlf")
    scanner.plug()
    try:
        async with PtlSimulator(range(1, 4), transport="tcp") as ptl:
            bus = {"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": ptl.port, "poll_ms": 20,
                   "timeout_ms": 200, "misses_offline": 2}
            cfg = make_config(tmp_path / "gw", ptl={"buses": [bus]},
                              scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick"}])
            app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
            task = asyncio.create_task(app.run(install_signals=False), name="disk-full-gateway")
            try:
                await until(app.ready.is_set, "the gateway")
                service, journal, registry = app.service, app.journal, app.registry
                assert service is not None and journal is not None
                c = COMMANDS["masterdata.sync"].model_validate({
                    "cmd_id": "md", "mode": "replace", "sync_id": "m", "part": 1, "parts": 1, "skus": SKUS,
                    "locations": LOCATIONS, "operators": OPERATORS})
                at = service.at()
                assert (await service.execute_command("masterdata.sync", "md",
                                                      lambda f, ch: apply_command(f, ch, c, at)))["ok"]
                await until(lambda: all(d in service.floor.devices and service.floor.devices[d].online
                                        for d in ("scan-1", "bus-a-u002", "bus-a-u003")), "every device online")

                full = True
                scanner.unplug()
                ptl.set_gone(2)
                ptl.set_fault_bit(3)
                await until(lambda: registry.unsaved >= {("scan-1", "status"), ("bus-a-u002", "status"),
                                                         ("bus-a-u003", "fault")}, "the changes not stored")
                await asyncio.sleep(1)  # a few resaves fail too
                assert not events(cfg.db_path, "device.offline") and not events(cfg.db_path, "alarm.raised")

                full = False
                await until(lambda: not registry.unsaved, "the changes stored")
                # Every device reported afresh, as it is now: those that had not changed too (before, the rebuilt
                # floor had no device at all until each next changed, so none could raise its offline alarm).
                devices = service.floor.devices
                assert not devices["scan-1"].online and not devices["bus-a-u002"].online
                assert devices["bus-a-u001"].online and devices["bus-a-u003"].online
                assert devices["bus-a"].kind == "bus" and devices["bus-a"].online  # its link, told again too
                assert "device_fault:bus-a-u003" in service.floor.alarms
                await journal.barrier()
                offline = [e["device_id"] for e in events(cfg.db_path, "device.offline")]
                assert sorted(offline) == ["bus-a-u002", "scan-1"], offline
                assert [e["alarm_id"] for e in events(cfg.db_path, "alarm.raised")] == ["device_fault:bus-a-u003"]

                scanner.plug()  # and the next change is stored as before
                await until(lambda: service.floor.devices["scan-1"].online, "the scanner back")
            finally:
                app.stop()
                await asyncio.wait_for(task, 60)
    finally:
        scanner.close()
