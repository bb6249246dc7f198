"""A floor on the real service and journal, with a moved clock: master data and orders from commands,
scans through the one scan pipeline, PTL keys through the domain, dispatch ticks on demand."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.api import apply_command, set_hold
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor
from gateway.domain.outcome import Outcome, attempt
from gateway.domain.packing import pack_weight
from gateway.domain.picking import key_press, undo
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.tasks import dispatch_tick
from gateway.journal import Journal
from gateway.service import FloorService
from tests.conftest import CARTONS, LOCATIONS, OPERATORS, SKUS, make_config

EXTRA_SKUS = [
    {"sku": "SKU-SER", "gtins": ["04012345000016"], "serial_tracked": True, "unit_weight_g": 500.0},
]
EXTRA_LOCATIONS = [{"code": "A-01-04", "zone": "zone-a", "sku": "SKU-SER", "light": {"bus": "bus-a", "unit": 4}}]
EXTRA_OPERATORS = [
    {"operator_id": "p2", "name": "Bo", "badge": "BADGE-P2", "roles": ["picker"], "zones": ["zone-a"]},
]


def gs1(gtin: str, lot: str | None = None, expiry: str | None = None, serial: str | None = None) -> str:
    """A GS1-128 element string as a scanner sends it after `]C1` (variable fields end with GS)."""
    s = "01" + gtin
    if expiry:
        s += "17" + expiry
    if lot:
        s += "10" + lot + "\x1d"
    if serial:
        s += "21" + serial + "\x1d"
    return s.rstrip("\x1d")


class Harness:
    def __init__(self, service: FloorService, clock: ManualClock) -> None:
        self.service = service
        self.clock = clock
        self.signals: list[Any] = []
        service.on_signal(self.signals.append)
        self.n = 0

    @property
    def floor(self) -> Floor:
        return self.service.floor

    async def cmd(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"c{self.n}", **payload})
        at = self.service.at()
        return await self.service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def load(self) -> None:
        r = await self.cmd("masterdata.sync", {"mode": "replace", "sync_id": "md", "part": 1, "parts": 1,
                                               "skus": SKUS + EXTRA_SKUS, "locations": LOCATIONS + EXTRA_LOCATIONS,
                                               "operators": OPERATORS + EXTRA_OPERATORS, "cartons": CARTONS})
        assert r["ok"] and not r["rejected"], r

    async def order(self, order_id: str, lines: list[tuple[int, str, int]], **prio: Any) -> dict[str, Any]:
        return await self.cmd("order.upsert", {"order": {"order_id": order_id, "channel": "web", "priority": prio,
                                                         "lines": [{"line_no": n, "sku": s, "qty": q}
                                                                   for n, s, q in lines]}})

    async def scan(self, device: str, text: str, station: str = "pick", symbology: str | None = None,
                   has_scale: bool = False) -> Outcome:
        at = self.service.at()
        scan = ScanInput(device, station, text, symbology, raw=text.replace("\x1d", "\\x1d"))
        return await self.service.execute(lambda f, c: handle_scan(f, c, scan, at, has_scale))

    async def item(self, device: str, gtin: str, station: str = "pick", **gs: Any) -> Outcome:
        if gs:
            return await self.scan(device, gs1(gtin, **gs), station, "]C1", has_scale=gs.pop("has_scale", False))
        return await self.scan(device, gtin, station)

    async def tick(self) -> int:
        at = self.service.at()
        return await self.service.execute(lambda f, c: dispatch_tick(f, c, at))

    async def key(self, task_id: str, line_no: int, kind: str = "confirm", qty: int = 0,
                  adjusted: bool = False, via: str = "ptl_button") -> Outcome:
        at = self.service.at()
        return await self.service.execute(
            lambda f, c: key_press(f, c, task_id, line_no, kind, qty, adjusted, via, at, "bus-a-u001"))

    async def undo(self, task_id: str, line_no: int, by: str = "p1") -> Outcome:
        at = self.service.at()
        return await self.service.execute(lambda f, c: attempt(c, lambda e: undo(f, e, task_id, line_no, by, at)))

    async def weigh(self, station: str, grams: float) -> Outcome:
        at = self.service.at()
        return await self.service.execute(lambda f, c: attempt(c, lambda e: pack_weight(f, e, station, grams, at)))

    async def hold(self, scope: str, target: str, on: bool = True) -> dict[str, Any]:
        at = self.service.at()
        return await self.service.execute(lambda f, c: set_hold(f, c, scope, target, "s1", at, on))

    def events(self, since: int = 0) -> list[tuple[str, str | None, dict[str, Any]]]:
        conn = sqlite3.connect(self.service.journal.path)
        try:
            rows = conn.execute("SELECT body FROM events WHERE seq > ? ORDER BY seq", (since,)).fetchall()
        finally:
            conn.close()
        out = []
        for (body,) in rows:
            b = json.loads(body)
            out.append((b["type"], b.get("order_id"), b["data"]))
        return out

    def types(self, since: int = 0, skip: tuple[str, ...] = ("scan.rejected",)) -> list[str]:
        return [t for t, _, _ in self.events(since) if t not in skip]

    @property
    def seq(self) -> int:
        return self.service.journal.last_seq

    def lit(self) -> dict[tuple[str, int], Any]:
        from gateway.domain.lights import desired

        return {(light.bus, light.unit): desired(self.floor, light) for light in self.floor.modules}

    async def picker_with_task(self, order_id: str = "O-1", lines: list[tuple[int, str, int]] | None = None,
                               device: str = "scan-1") -> str:
        """Log p1 in, receive an order, let dispatch assign it; returns the task id."""
        if device not in self.floor.sessions:
            await self.scan(device, "BADGE-P1")
        await self.order(order_id, lines or [(1, "SKU-1", 2), (2, "SKU-2", 1)])
        await self.tick()
        task = next(t for t in self.floor.tasks.values() if t.order_id == order_id)
        assert task.operator_id == "p1", task
        return task.task_id


@pytest.fixture
def floor_cfg(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """`[picking]` keys may be given by a test (indirect parametrization); location scans optional by default."""
    picking = {"location_scan": "optional", **getattr(request, "param", {})}
    return make_config(tmp_path, picking=picking)


@pytest.fixture
async def h(floor_cfg: Config, clock: ManualClock) -> AsyncIterator[Harness]:
    j = await Journal.open(floor_cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(floor_cfg, j, clock)
    await s.start()
    harness = Harness(s, clock)
    await harness.load()
    yield harness
    await j.close()


__all__ = ["Change", "Harness", "gs1"]
