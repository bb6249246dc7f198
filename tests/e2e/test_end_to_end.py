"""End to end with nothing faked inside the process: a private Mosquitto, the PTL simulator over Modbus TCP,
serial scanners on ptys, a scale simulator on a pty and a label printer simulator on TCP. The hub sends master
data and 20 orders; a picker and a packer work them with the devices, including a wrong item, an expired lot,
a short pick, a cancellation mid-pick, a wrong lot and an over-scan at packing and an overweight parcel. The
hub receives exactly the journal's events (by seq, no gap, contract-valid) and the final states are right."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from gateway.app import App
from gateway.devices.fleet import DeviceFleet
from gateway.domain.lights import line_module
from gateway.domain.packing import expected_weight
from gateway.domain.picking import picker_view
from simulators.hub import HubSim
from simulators.printer.sim import PrinterSimulator
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.brokers import Broker
from tests.conftest import make_config
from tests.sync.conftest import running_gateway, running_hub

SKUS = [
    {"sku": "SKU-1", "gtins": ["4006381333931"], "unit_weight_g": 120.0},
    {"sku": "SKU-2", "gtins": ["05012345678900"], "unit_weight_g": 50.0},
    {"sku": "SKU-LOT", "gtins": ["09506000134352"], "lot_tracked": True, "expiry_tracked": True,
     "min_shelf_life_days": 30, "unit_weight_g": 300.0},
    {"sku": "SKU-X", "gtins": ["04012345000016"], "unit_weight_g": 10.0},  # on no order: a wrong item
]
GTIN = {"SKU-1": "4006381333931", "SKU-2": "05012345678900", "SKU-LOT": "09506000134352", "SKU-X": "04012345000016"}
LOCATIONS = [{"code": f"A-01-0{i}", "zone": "zone-a", "sku": s, "light": {"bus": "bus-a", "unit": i}}
             for i, s in enumerate(("SKU-1", "SKU-2", "SKU-LOT", "SKU-X"), start=1)]
OPERATORS = [{"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"], "zones": ["zone-a"]},
             {"operator_id": "k1", "name": "Kai", "badge": "BADGE-K1", "roles": ["packer"], "zones": ["zone-a"]},
             {"operator_id": "s1", "name": "Sue", "badge": "BADGE-S1", "roles": ["supervisor"], "zones": ["zone-a"]}]
Lot = tuple[str, str]  # (lot code, expiry as GS1 YYMMDD)


def lot_expiring(code: str, now: datetime, days: int) -> Lot:
    """A lot whose expiry is `days` from the gateway clock's `now`: the shelf-life checks (SKU-LOT needs 30
    days left) give the same answer whatever day the test runs."""
    return code, (now + timedelta(days=days)).strftime("%y%m%d")


def order_lines(i: int) -> list[tuple[int, str, int]]:
    mix = [("SKU-1", 1 + i % 3), ("SKU-2", 1 + i % 2), ("SKU-LOT", 1 + (i // 3) % 2)]
    lines = [mix[i % 3]] + ([mix[(i + 1) % 3]] if i % 2 == 0 else [])
    return [(n + 1, sku, qty) for n, (sku, qty) in enumerate(lines)]


def item_text(sku: str, lot: Lot) -> tuple[str, str | None]:
    """What the scanner sends for one unit; `lot` is used only by the lot-tracked SKU."""
    if sku == "SKU-LOT":
        lot_code, expiry = lot
        return f"01{GTIN[sku]}17{expiry}10{lot_code}", "]C1"
    return GTIN[sku], None


async def until(pred: Callable[[], bool], what: str, timeout: float = 30) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Rig:
    def __init__(self, app: App, hub: HubSim, ptl: PtlSimulator, picker: VirtualSerialScanner,
                 packer: VirtualSerialScanner, scale: ScaleSimulator) -> None:
        self.app, self.hub, self.ptl, self.picker, self.packer, self.scale = app, hub, ptl, picker, packer, scale
        assert app.service is not None
        self.service = app.service
        self.scans = 0
        now = self.service.clock.now()
        self.good_lot = lot_expiring("L100", now, 365)  # what the shelf holds
        self.expired_lot = lot_expiring("L001", now, -60)  # a unit past its date: refused at picking
        self.other_lot = lot_expiring("L200", now, 540)  # a lot never picked: refused at packing

    @property
    def fleet(self) -> DeviceFleet:
        assert self.app.fleet is not None, "the gateway runs its devices"
        return self.app.fleet

    def line_done(self, order_id: str, line_no: int) -> bool:
        return bool(self.floor.orders[order_id].line(line_no).done)

    def order_is(self, order_id: str, state: str) -> bool:
        return bool(self.floor.orders[order_id].state == state)

    def module_mode(self, unit: int, mode: int) -> bool:
        return bool(self.ptl.module(unit).mode == mode)

    @property
    def floor(self) -> Any:
        return self.service.floor

    def rejected(self) -> Counter[str]:
        return Counter(e["data"]["code"] for e in self._journal() if e["type"] == "scan.rejected")

    def _journal(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.service.journal.path)
        try:
            return [json.loads(b) for (b,) in conn.execute("SELECT body FROM events ORDER BY seq")]
        finally:
            conn.close()

    async def scan(self, scanner: VirtualSerialScanner, text: str, aim: str | None = None) -> None:
        """Type a barcode and wait until the gateway has stored it (the scanner's next scan audit row).

        Only that scanner's scan rows count: the weight row of the parcel packed just before commits a moment
        after the order shows `packed` in memory, and counting it would return before this scan is handled."""
        device = "scan-1" if scanner is self.picker else "pack-scan"
        before = self.scan_rows(device)
        await scanner.scan(text, aim=aim or "")
        await until(lambda: self.scan_rows(device) > before, f"the scan {text!r} to be stored")

    def scan_rows(self, device_id: str) -> int:
        conn = sqlite3.connect(self.service.journal.path)
        try:
            return int(conn.execute("SELECT count(*) FROM audit WHERE kind = 'scan' AND device_id = ?",
                                    (device_id,)).fetchone()[0])
        finally:
            conn.close()

    def module_shows(self, unit: int, qty: int) -> bool:
        node = self.ptl.module(unit)
        return node.mode == 1 and node.quantity == qty

    async def pick_line(self, line: dict[str, Any]) -> None:
        """Scan the shelf (so this line is the one in hand, SPEC §6), then the item (of the good lot)."""
        await self.scan(self.picker, line["location"])
        text, aim = item_text(line["sku"], self.good_lot)
        await self.scan(self.picker, text, aim)

    async def press(self, unit: int, key: str = "confirm", adjust: int = 0) -> None:
        node = self.ptl.module(unit)
        presses = self.ptl.presses[unit]
        if adjust:
            assert self.ptl.adjust(unit, adjust)
        assert self.ptl.press(unit, key), f"module {unit} took no key (mode {node.mode})"
        await until(lambda: self.ptl.presses[unit] > presses, "the press to register")


async def test_end_to_end_floor(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        async with PtlSimulator(range(1, 5), transport="tcp") as ptl, \
                PrinterSimulator() as printer, ScaleSimulator(unit="g") as scale:
            picker = VirtualSerialScanner(terminator="crlf")
            packer = VirtualSerialScanner(terminator="cr")
            picker.plug()
            packer.plug()
            try:
                cfg = make_config(
                    tmp_path / "gw", mqtt={"port": broker.port},
                    ptl={"buses": [{"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": ptl.port}]},
                    scanners=[{"id": "scan-1", "port": picker.path, "station": "pick", "good_feedback": "06",
                               "bad_feedback": "15"},
                              {"id": "pack-scan", "port": packer.path, "station": "pack-1", "terminator": "cr"}],
                    scales=[{"id": "scale-1", "station": "pack-1", "port": scale.path}],
                    printers=[{"id": "printer-1", "station": "pack-1", "host": "127.0.0.1", "port": printer.port}],
                    picking={"error_signal_ms": 200})
                async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
                    await _work_the_floor(Rig(app, hub, ptl, picker, packer, scale), printer)
            finally:
                picker.close()
                packer.close()
    finally:
        broker.stop()


async def _work_the_floor(rig: Rig, printer: PrinterSimulator) -> None:
    hub, floor = rig.hub, rig.floor
    md = await hub.command("masterdata.sync", {"mode": "replace", "sync_id": "md", "part": 1, "parts": 1,
                                               "skus": SKUS, "locations": LOCATIONS, "operators": OPERATORS,
                                               "cartons": [{"code": "BOX-S", "tare_g": 100.0}]})
    await hub.wait_result(md["cmd_id"], count=2)
    orders = {f"O-{i:02d}": order_lines(i) for i in range(1, 21)}
    batch = await hub.command("order.upsert_batch", {"sync_id": "orders-1", "part": 1, "parts": 1, "orders": [
        {"order_id": oid, "channel": "web", "lines": [{"line_no": n, "sku": s, "qty": q} for n, s, q in lines]}
        for oid, lines in orders.items()]})
    done = await hub.wait_result(batch["cmd_id"], count=2)
    assert done["applied"] == 20 and done["rejected"] == []
    await until(lambda: all(rig.app.registry.devices[d].online for d in ("scan-1", "pack-scan")), "scanners online")

    # --- picking -------------------------------------------------------------------------------------------
    await rig.scan(rig.picker, "BADGE-P1")
    assert rig.picker.read_feedback().endswith(b"\x06")  # a good beep, after the commit
    special_done: set[str] = set()
    while True:
        open_orders = [o for o in orders if floor.orders[o].state not in ("picked", "short_picked", "cancelled")]
        if not open_orders:
            break
        await until(lambda: bool(picker_view(floor, "p1")["lines"]), "a task for the picker")
        line = picker_view(floor, "p1")["lines"][0]
        oid, sku, qty = line["order_id"], line["sku"], line["remaining"]
        unit = line_module(floor, floor.orders[oid].line(line["line_no"]))
        assert unit is not None
        await until(partial(rig.module_shows, unit.unit, qty), f"module {unit.unit} to show {qty}")
        if oid == "O-03" and oid not in special_done:  # the wrong item first: refused, the module signals
            special_done.add(oid)
            await rig.scan(rig.picker, GTIN["SKU-X"])
            assert rig.picker.read_feedback().endswith(b"\x15")
            await until(partial(rig.module_mode, unit.unit, 3), "the error signal")
            await until(partial(rig.module_shows, unit.unit, qty), "the job to come back")
        if sku == "SKU-LOT" and "expired" not in special_done:
            special_done.add("expired")
            await rig.scan(rig.picker, line["location"])
            await rig.scan(rig.picker, *item_text("SKU-LOT", rig.expired_lot))
        await rig.pick_line(line)
        if oid == "O-08":  # cancelled mid-pick: its light goes (the module may pass to the next line waiting)
            r = await hub.command("order.cancel", {"order_id": "O-08", "reason": "customer called"})
            assert r["ok"]
            ptl_devices = rig.fleet.ptl
            assert ptl_devices is not None

            def o8_lit(devices: Any = ptl_devices) -> bool:
                return any(key[0].startswith("O-08~") for _, key in devices.shown.values())
            await until(lambda: not o8_lit(), "O-08's lights to go off")
            continue
        left = qty - 1
        if left > 0:
            node = rig.ptl.module(unit.unit)
            ln = floor.orders[oid].line(line["line_no"])
            await until(partial(rig.module_shows, unit.unit, left),
                        f"the display to count down ({oid} line {ln.line_no} {sku}: picked {ln.picked}, "
                        f"module {unit.unit} mode {node.mode} qty {node.quantity}, outcomes "
                        f"{[o.message for o in rig.fleet.scanners['scan-1'].outcomes[-3:]]})")
            if oid == "O-07" and "short" not in special_done:  # one unit missing on the shelf
                special_done.add("short")
                await rig.press(unit.unit, "shortage", adjust=-1)
            else:
                await rig.press(unit.unit, "confirm")
        await until(partial(rig.line_done, oid, line["line_no"]), f"{oid} line done")
    assert "short" in special_done
    assert floor.orders["O-08"].state == "cancelled" and floor.orders["O-07"].state == "short_picked"

    # --- packing -------------------------------------------------------------------------------------------
    await rig.scan(rig.packer, "BADGE-K1")
    for oid in orders:
        order = floor.orders[oid]
        if order.state == "cancelled":
            continue
        await rig.scan(rig.packer, oid)
        assert floor.stations["pack-1"].order_id == oid
        if oid == "O-02":
            await rig.scan(rig.packer, "BOX-S")
        units = [ln.sku for ln in order.lines for p in ln.picks for _ in range(p.qty)]  # every lot was good_lot
        weight = expected_weight(floor, order, floor.stations["pack-1"].carton)
        rig.scale.put(weight * (1.5 if oid == "O-06" else 1.0))
        for k, sku in enumerate(units):
            if oid == "O-11" and k == 0 and sku == "SKU-LOT":
                await rig.scan(rig.packer, *item_text(sku, rig.other_lot))  # a unit of another lot
            if oid == "O-04" and k == len(units) - 1:
                await rig.scan(rig.packer, *item_text(units[0], rig.good_lot))  # one too many...
            await rig.scan(rig.packer, *item_text(sku, rig.good_lot))
        if oid == "O-06":
            await until(partial(rig.order_is, "O-06", "on_hold"), "the weight review")
            r = await hub.command("pack.review", {"order_id": "O-06", "decision": "approve", "operator_id": "s1"})
            assert r["ok"]
        await until(partial(rig.order_is, oid, "packed"), f"{oid} packed")
        assert await rig.scale.take_off(), "the gateway reads the scale until the parcel is off"

    # --- what the hub holds ---------------------------------------------------------------------------------
    states = {o: floor.orders[o].state for o in orders}
    assert states == {o: ("cancelled" if o == "O-08" else "packed") for o in orders}
    # Exactly the mistakes made above, each refused once: the wrong item (O-03) and the expired unit at
    # picking, the unit of another lot (O-11) and the one too many (O-04) at packing.
    assert rig.rejected() == Counter({"wrong_item": 1, "expired": 1, "wrong_lot": 1, "over_scan": 1})
    journal = rig._journal()
    last = journal[-1]["seq"]
    await until(lambda: hub.holds(last), "the hub to hold every event", 60)
    view = hub.journals[rig.service.journal.journal_id]
    assert [view.events[s] for s in range(1, last + 1)] == journal  # exactly the journal's events, in seq order
    assert hub.conflicts == [] and hub.invalid == []
    types = Counter(e["type"] for e in journal)
    assert types["order.received"] == 20 and types["pack.verified"] == 19 and types["order.cancelled"] == 1
    assert types["task.cancelled"] == 1 and types["pick.line_short"] == 1
    assert types["pack.review_required"] == 1 and types["pack.review_resolved"] == 1
    assert hub.final_order_states() == states
    ssccs = [e["data"]["sscc"] for e in journal if e["type"] == "pack.verified"]
    await printer.wait_for_jobs(19, timeout_s=30)
    printed = b"".join(job.data for job in printer.jobs)
    assert all(s.encode() in printed for s in ssccs) and len(set(ssccs)) == 19
