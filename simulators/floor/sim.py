"""The floor simulation: N pickers and M packers with a configurable error rate, working a stream of orders
through the real gateway code (the one scan pipeline, the PTL key rules, packing, dispatch), on a moved
clock: an hour of floor in seconds of machine time.

Pickers grab units from shelves; with probability `error_rate` a grab goes wrong: the wrong item (the SKU
next to it), the wrong lot (an expired one, or units of another lot behind the one scanned), or the wrong
quantity (one unit too many or too few). The gateway sees only what is scanned and confirmed; the world keeps
what is physically in each tote. Packers scan what is physically there. At the end every packed parcel is
compared with the order: no parcel may leave that differs.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.clock import ManualClock
from gateway.domain.api import apply_command
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor
from gateway.domain.model import PICKED, SHORT_PICKED
from gateway.domain.outcome import Outcome, attempt
from gateway.domain.packing import abandon, pack_weight, station_view
from gateway.domain.picking import key_press, picker_view
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.sessions import idle_logouts
from gateway.domain.tasks import dispatch_tick
from gateway.service import FloorService
from simulators.floor.world import Catalog, Unit, World


@dataclass
class SimConfig:
    orders: int = 200
    pickers: int = 6
    packers: int = 2
    error_rate: float = 0.03
    short_rate: float = 0.01  # lines where the shelf holds less than the order wants
    seed: int = 1
    skus: int = 40
    arrival_min: float = 60.0  # orders arrive over this many minutes
    pick_s: tuple[float, float] = (15.0, 45.0)
    pack_s: tuple[float, float] = (20.0, 60.0)
    has_scale: bool = True
    max_hours: float = 24.0


@dataclass
class Report:
    orders: int = 0
    packed: int = 0
    packed_short: int = 0
    held_at_packing: int = 0
    not_finished: int = 0
    errors_made: Counter[str] = field(default_factory=Counter)
    caught_at_pick: Counter[str] = field(default_factory=Counter)
    caught_at_pack: Counter[str] = field(default_factory=Counter)
    wrong_packed: list[str] = field(default_factory=list)
    sim_minutes: float = 0.0
    commands: int = 0

    def table(self) -> str:
        rows = [("orders", self.orders), ("packed", self.packed), ("  of which short-picked", self.packed_short),
                ("held at packing (a unit missing)", self.held_at_packing),
                ("not finished when the run ended", self.not_finished),
                ("picker errors made", sum(self.errors_made.values())),
                *((f"  {k}", v) for k, v in sorted(self.errors_made.items())),
                ("caught at the shelf", sum(self.caught_at_pick.values())),
                *((f"  {k}", v) for k, v in sorted(self.caught_at_pick.items())),
                ("caught at packing", sum(self.caught_at_pack.values())),
                *((f"  {k}", v) for k, v in sorted(self.caught_at_pack.items())),
                ("PACKED ORDERS WHOSE CONTENTS DIFFER", len(self.wrong_packed)),
                ("simulated minutes", round(self.sim_minutes, 1))]
        return "\n".join(f"{k:42} {v:>8}" for k, v in rows)

    def as_dict(self) -> dict[str, Any]:
        return {"orders": self.orders, "packed": self.packed, "packed_short": self.packed_short,
                "held_at_packing": self.held_at_packing, "not_finished": self.not_finished,
                "errors_made": sum(self.errors_made.values()), "caught_at_pick": sum(self.caught_at_pick.values()),
                "caught_at_pack": sum(self.caught_at_pack.values()), "wrong_packed": len(self.wrong_packed),
                "sim_minutes": round(self.sim_minutes, 1)}


class InProcessFloor:
    """The gateway as the simulation drives it: the real service and domain, in this process, on a moved
    clock (time passes only when the simulation says so)."""

    def __init__(self, service: FloorService, clock: ManualClock, has_scale: bool) -> None:
        self.service = service
        self.clock = clock
        self.has_scale = has_scale
        self.n = 0

    def now(self) -> float:
        return self.clock.monotonic()

    async def until(self, t: float) -> None:
        if t > self.clock.monotonic():
            self.clock.advance(t - self.clock.monotonic())

    async def place(self, station: str, grams: float) -> None:
        """The parcel on the scale weighs this much now (the in-process scale is `weigh`)."""

    @property
    def floor(self) -> Floor:
        return self.service.floor

    async def command(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"sim-{self.n}", **payload})
        at = self.service.at()
        return await self.service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def scan(self, device: str, station: str, unit_or_text: Unit | str) -> Outcome:
        if isinstance(unit_or_text, Unit):
            text, sym = unit_or_text.barcode()
        else:
            text, sym = unit_or_text, None
        scan = ScanInput(device, station, text, sym, raw=text.replace("\x1d", "\\x1d"))
        at = self.service.at()
        has_scale = self.has_scale and station != "pick"
        return await self.service.execute(lambda f, c: handle_scan(f, c, scan, at, has_scale))

    async def key(self, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool) -> Outcome:
        at = self.service.at()
        return await self.service.execute(
            lambda f, c: key_press(f, c, task_id, line_no, kind, qty, adjusted, "ptl_button", at))

    async def weigh(self, station: str, grams: float) -> Outcome:
        at = self.service.at()
        return await self.service.execute(lambda f, c: attempt(c, lambda e: pack_weight(f, e, station, grams, at)))

    async def abandon(self, station: str) -> Outcome:
        at = self.service.at()
        return await self.service.execute(lambda f, c: attempt(c, lambda e: abandon(f, e, station, "s1", at)))

    async def tick(self) -> None:
        at = self.service.at()

        def op(floor: Floor, change: Change) -> None:
            dispatch_tick(floor, change, at)
            idle_logouts(floor, change, at)
        await self.service.execute(op)


class FloorGateway(Protocol):
    """What the simulated floor needs from the gateway: in process on a moved clock (`InProcessFloor`) or
    through the simulated devices in real time (`simulators.floor.devices.DeviceFloor`)."""

    n: int

    @property
    def floor(self) -> Floor: ...
    def now(self) -> float: ...
    async def until(self, t: float) -> None: ...
    async def command(self, name: str, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def scan(self, device: str, station: str, unit_or_text: Unit | str) -> Outcome: ...
    async def key(self, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool) -> Outcome: ...
    async def place(self, station: str, grams: float) -> None: ...
    async def weigh(self, station: str, grams: float) -> Outcome: ...
    async def abandon(self, station: str) -> Outcome: ...
    async def tick(self) -> None: ...


class FloorSim:
    def __init__(self, gw: FloorGateway, cfg: SimConfig) -> None:
        self.gw = gw
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.catalog = Catalog.make(cfg.skus, cfg.pickers, cfg.packers)
        self.world = World(self.catalog, self.rng)
        self.report = Report(orders=cfg.orders)
        self._heap: list[tuple[float, int, Callable[[], Awaitable[float | None]]]] = []
        self._seq = itertools.count()
        self.t0 = gw.now()
        self._tote_no = itertools.count(1)
        self.packing: set[str] = set()
        self.order_lines: dict[str, list[tuple[str, int]]] = {}

    def at(self, delay: float, fn: Callable[[], Awaitable[float | None]]) -> None:
        heapq.heappush(self._heap, (self.gw.now() + delay, next(self._seq), fn))

    async def setup(self) -> None:
        c = self.catalog
        r = await self.gw.command("masterdata.sync", {"mode": "replace", "sync_id": "sim-md", "part": 1, "parts": 1,
                                                      "skus": c.skus, "locations": c.locations,
                                                      "operators": c.operators, "cartons": c.cartons})
        assert r["ok"] and not r["rejected"], r
        for k in range(1, self.cfg.pickers + 1):
            await self.gw.scan(f"pick-scan-{k}", "pick", f"BADGE-P{k}")
            self.at(self.rng.uniform(0, 5), self._picker(k))
        for k in range(1, self.cfg.packers + 1):
            await self.gw.scan(f"pack-scan-{k}", f"pack-{k}", f"BADGE-K{k}")
            self.at(self.rng.uniform(0, 5), self._packer(k))
        spacing = self.cfg.arrival_min * 60 / max(self.cfg.orders, 1)
        for i in range(self.cfg.orders):
            self.at(i * spacing, self._arrive(i))
        self.at(1.0, self._tick)

    def _arrive(self, i: int) -> Callable[[], Awaitable[float | None]]:
        async def fn() -> None:
            n = self.rng.choice((1, 1, 2, 2, 3, 4))
            skus = self.rng.sample([s["sku"] for s in self.catalog.skus], n)
            lines = [(k + 1, sku, 1 if self.world.skus[sku].get("serial_tracked") else self.rng.choice((1, 1, 2, 3)))
                     for k, sku in enumerate(skus)]
            oid = f"SIM{i:05d}"
            self.order_lines[oid] = [(sku, q) for _, sku, q in lines]
            r = await self.gw.command("order.upsert", {"order": {
                "order_id": oid, "channel": "sim", "priority": {"value_cents": self.rng.randint(500, 50000)},
                "lines": [{"line_no": n, "sku": s, "qty": q} for n, s, q in lines]}})
            assert r["ok"], r
            return None
        return fn

    async def _tick(self) -> float:
        await self.gw.tick()
        return 2.0

    # -- pickers ----------------------------------------------------------------------------------------

    def _picker(self, k: int) -> Callable[[], Awaitable[float | None]]:
        device, op = f"pick-scan-{k}", f"p{k}"

        async def step() -> float:
            view = picker_view(self.gw.floor, op)
            lines = [ln for ln in view["lines"] if not ln["on_hold"]]
            if not lines:
                return 5.0
            line = lines[0]
            await self._pick_line(device, line)
            return self.rng.uniform(*self.cfg.pick_s)
        return step

    async def _pick_line(self, device: str, line: dict[str, Any]) -> None:
        gw, rng, world = self.gw, self.rng, self.world
        order_id, sku, need = line["order_id"], line["sku"], line["remaining"]
        tote = self.world.totes.setdefault(order_id, [])
        if line["tote"] is None:
            await gw.scan(device, "pick", f"TOTE-{next(self._tote_no):06d}")
        if rng.random() < 0.5:
            await gw.scan(device, "pick", line["location"])
        serial = bool(world.skus[sku].get("serial_tracked"))
        have = need
        if rng.random() < self.cfg.short_rate:
            have = rng.randint(0, need - 1) if need > 1 else 0
        kinds = ("wrong_item", "wrong_lot", "wrong_qty") if world.skus[sku].get("lot_tracked") else (
            "wrong_item", "wrong_qty")
        error = rng.choice(kinds) if rng.random() < self.cfg.error_rate else None
        if error is not None:
            self.report.errors_made[error] += 1
        if have == 0:  # an empty shelf: the shortage key, nothing scanned picked
            await self._first_scan(device, sku, "good")
            task_id, line_no = line["task_id"], line["line_no"]
            if self._line_open(task_id, line_no):
                await gw.key(task_id, line_no, "shortage", 0, False)
            return
        if error == "wrong_item":
            wrong = world.unit(world.neighbour(sku))
            out = await gw.scan(device, "pick", wrong)  # the picker scans what they grabbed...
            if out.ok:  # the neighbour happens to be on this picker's list too: it counts, and is in the tote
                tote.append(wrong)
                return
            self.report.caught_at_pick[out.code or "?"] += 1  # ...and puts it back
        lot = "good"
        if error == "wrong_lot":
            if have < 2 or rng.random() < 0.5:
                bad = world.unit(sku, "expired")
                out = await gw.scan(device, "pick", bad)
                if not out.ok:
                    self.report.caught_at_pick[out.code or "?"] += 1
            else:
                lot = "mixed"  # the scanned unit is right, the ones behind it are of another lot
        units = [world.unit(sku, "good")]
        for _ in range(1, have):
            units.append(world.unit(sku, "other" if lot == "mixed" else "good"))
        if error == "wrong_qty":
            if rng.random() < 0.5 or len(units) == 1:
                units.append(world.unit(sku, "good"))  # one too many goes into the tote
            else:
                units.pop()  # one too few
        task_id, line_no = line["task_id"], line["line_no"]
        if serial or rng.random() < 0.3:
            for u in units[:have]:  # scan every unit: each counts
                out = await gw.scan(device, "pick", u)
                if not out.ok:
                    self.report.caught_at_pick[out.code or "?"] += 1
                    continue
            if self._line_open(task_id, line_no) and self._remaining(task_id, line_no):
                await gw.key(task_id, line_no, "shortage", 0, False)  # fewer units than the line wants
        else:
            out = await gw.scan(device, "pick", units[0])
            if not out.ok:
                self.report.caught_at_pick[out.code or "?"] += 1
                return
            if self._line_open(task_id, line_no):
                remaining = self._remaining(task_id, line_no)
                if have >= need:
                    await gw.key(task_id, line_no, "confirm", remaining, False)
                else:  # the shelf ran short: the picker adjusts the display down and presses shortage
                    await gw.key(task_id, line_no, "shortage", have - 1, True)
        tote.extend(units)

    async def _first_scan(self, device: str, sku: str, lot: str) -> None:
        await self.gw.scan(device, "pick", self.world.unit(sku, lot))

    def _line_open(self, task_id: str, line_no: int) -> bool:
        task = self.gw.floor.tasks.get(task_id)
        if task is None:
            return False
        line = self.gw.floor.orders[task.order_id].line(line_no)
        return line is not None and not line.done

    def _remaining(self, task_id: str, line_no: int) -> int:
        task = self.gw.floor.tasks[task_id]
        line = self.gw.floor.orders[task.order_id].line(line_no)
        return line.remaining if line is not None else 0

    # -- packers ----------------------------------------------------------------------------------------

    def _packer(self, k: int) -> Callable[[], Awaitable[float | None]]:
        device, station = f"pack-scan-{k}", f"pack-{k}"

        async def step() -> float:
            floor = self.gw.floor
            ready = [o for o in floor.orders.values() if o.state in (PICKED, SHORT_PICKED)
                     and o.order_id not in self.packing]
            if not ready:
                return 10.0
            order = min(ready, key=lambda o: o.updated_seq)
            self.packing.add(order.order_id)
            await self._pack(device, station, order.order_id, order.tote)
            return self.rng.uniform(*self.cfg.pack_s)
        return step

    async def _pack(self, device: str, station: str, order_id: str, tote: str | None) -> None:
        gw = self.gw
        out = await gw.scan(device, station, tote or order_id)
        if not out.ok:
            return
        await gw.scan(device, station, "BOX-M")
        parcel: list[Unit] = []
        for unit in list(self.world.totes.get(order_id, [])):
            await gw.place(station, sum(u.weight_g for u in parcel) + unit.weight_g + 150.0)
            out = await gw.scan(device, station, unit)
            if out.ok:
                parcel.append(unit)
            else:
                self.report.caught_at_pack[out.code or "?"] += 1
                self.world.returned.append(unit)  # taken out of the parcel, back to stock
        view = station_view(gw.floor, station)
        if view["order_id"] == order_id and not view["awaiting_weight"]:
            await gw.abandon(station)  # something is missing: the supervisor takes over
            self.report.held_at_packing += 1
            await gw.place(station, 0.0)  # set aside, off the scale
            return
        if view["awaiting_weight"]:
            grams = sum(u.weight_g for u in parcel) + 150.0
            out = await gw.weigh(station, round(grams * self.rng.uniform(0.98, 1.02), 1))
            if not out.ok:
                await gw.command("pack.review", {"order_id": order_id, "decision": "approve", "operator_id": "s1"})
        await gw.place(station, 0.0)  # the parcel leaves the scale
        if gw.floor.orders[order_id].state == "packed":
            self.world.parcels[order_id] = parcel

    # -- running ----------------------------------------------------------------------------------------

    async def run(self) -> Report:
        await self.setup()
        limit = self.t0 + self.cfg.max_hours * 3600
        while self._heap:
            t, _, fn = heapq.heappop(self._heap)
            if t > limit:
                break
            await self.gw.until(t)
            nxt = await fn()
            if nxt is not None:
                if fn.__qualname__.endswith("_tick") and self._finished():
                    break
                heapq.heappush(self._heap, (self.gw.now() + nxt, next(self._seq), fn))
        return self._finish()

    def _finished(self) -> bool:
        floor = self.gw.floor
        return len(self.order_lines) >= self.cfg.orders and all(
            floor.orders[o].state in ("packed", "cancelled", "on_hold") for o in self.order_lines)

    def _finish(self) -> Report:
        floor = self.gw.floor
        rep = self.report
        rep.sim_minutes = (self.gw.now() - self.t0) / 60
        rep.commands = self.gw.n
        for oid in self.order_lines:
            order = floor.orders[oid]
            if order.state == "packed":
                rep.packed += 1
                rep.packed_short += any(ln.short for ln in order.lines)
            elif order.state != "on_hold":
                rep.not_finished += 1
        for oid, parcel in self.world.parcels.items():
            order = floor.orders[oid]
            physical = Counter(u.key() for u in parcel)
            recorded: Counter[tuple[str, Any]] = Counter()
            for ln in order.lines:
                for p in ln.picks:
                    recorded[(ln.sku, p.lot)] += p.qty
            wanted = Counter({ln.sku: ln.qty - ln.short for ln in order.lines})
            by_sku: Counter[str] = Counter()
            for (sku, _), n in physical.items():
                by_sku[sku] += n
            if physical != recorded or +by_sku != +wanted:
                rep.wrong_packed.append(oid)
        return rep
