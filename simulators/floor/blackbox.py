"""A floor that works a gateway it can only see from the outside, for tests where the gateway runs in another
process and is killed, cut off or starved at random.

Nobody here reads the gateway's memory. Pickers act on what the PTL modules show (mode, quantity) and on
their scanner's beep; they know which SKU lies behind each module from the master data the hub sent.
Packers learn from the hub's events which orders are ready, which totes hold them and what was picked,
scan what is physically in the totes, and put the parcel on the scale as they go. What is physically in
every tote and parcel is kept here (`totes`, `parcels`, `aside`), apart from anything the gateway says, so
a test can compare the two at the end.

The floor must survive a gateway that dies in the middle of anything. A scan or a key press whose effect
was never acknowledged is resolved the way a careful person would, without guessing:
- a scan is typed, then the floor waits until the pty's input queue is empty (some gateway process has
  read it) and then for the beep; a scan that was read but never answered was taken by a process that
  died, so the next thing the module shows (the next write to it on the bus) tells whether it counted;
- a key press is acknowledged by the module leaving the job it showed; a job shown again with the same
  quantity after a restart means the press was lost, unless the tote in hand no longer belongs to an
  open task (a tote scan says so), and then the press had completed it;
- tote, location, order and carton scans change nothing when repeated, so they are simply repeated;
- an item scan at packing that was never answered leaves its unit pending: when the hub shows the order
  packed, exactly as many pending units of each kind go into the parcel as the gateway counted.
Only idempotent things are ever repeated blindly, so no unit is counted twice.

A unit whose item scan is refused goes back to the shelf, and a tote a packer has emptied holds nothing of any
line, whatever a picker remembers of it. When the gateway still wants units the bench does not have, the packer
does what the station says to do: scans the missing code, and the order waits for a review (`report.
missing_reported`; a fault test fails on it, since a careful floor never loses a unit).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import random
import termios
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from simulators.floor.world import Unit, make_gtin
from simulators.hub import HubSim
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner

log = logging.getLogger("floorgate.blackbox")

MODE_OFF, MODE_JOB, MODE_INFO, MODE_ERROR, MODE_DONE = 0, 1, 2, 3, 4
GOOD, BAD = b"\x06", b"\x15"
CARTON = "BOX-M"
CARTON_TARE_G = 150.0
MISSING_CODE = "MISSING"  # the packing station's missing code (`packing.missing_code`, its default)
# How long anything may take before the floor gives up on it (the gateway never came back); longer faults (a
# bench holding a partition for minutes) raise it through the environment.
SAFETY_S = float(os.environ.get("FLOORGATE_SAFETY_S", "120"))

Beep = Literal["good", "bad"] | None


async def until(pred: Callable[[], bool], limit_s: float = SAFETY_S, poll_s: float = 0.01) -> bool:
    """Wait for a condition that spans processes (nothing to await on); False if it never came."""
    try:
        async with asyncio.timeout(limit_s):
            while not pred():  # noqa: ASYNC110 - the state is in another process and a simulator
                await asyncio.sleep(poll_s)
        return True
    except TimeoutError:
        return False


# -- master data -----------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """The floor's master data (in the hub's `masterdata.sync` form) and where everything physically is: one
    picker per zone, one SKU per shelf, one PTL module per shelf."""

    skus: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    operators: list[dict[str, Any]]
    zone_units: dict[str, list[int]]  # zone -> its modules
    module_sku: dict[int, str]
    location_of: dict[str, str]  # sku -> shelf code
    zone_of: dict[str, str]  # sku -> zone
    pickers: dict[str, str]  # operator id -> zone
    packers: dict[str, str]  # operator id -> packing station
    bus: str = "bus-a"

    @classmethod
    def make(cls, zones: Sequence[str] = ("zone-a", "zone-b"), skus_per_zone: int = 6, packers: int = 2,
             bus: str = "bus-a") -> Plan:
        skus, locations, operators = [], [], []
        zone_units: dict[str, list[int]] = {}
        module_sku, location_of, zone_of = {}, {}, {}
        pickers, packer_ids = {}, {}
        n = 0
        for zi, zone in enumerate(zones):
            for j in range(skus_per_zone):
                sku = f"SKU-{n:04d}"
                d: dict[str, Any] = {"sku": sku, "gtins": [make_gtin(n + 1)], "description": f"Article {n}",
                                     "unit_weight_g": float(80 + (n * 53) % 400)}
                if n % 3 == 1:
                    d.update(lot_tracked=True, expiry_tracked=True, min_shelf_life_days=30)
                skus.append(d)
                unit = n + 1
                code = f"{chr(ord('A') + zi)}-01-{j + 1:02d}"
                locations.append({"code": code, "zone": zone, "sku": sku, "light": {"bus": bus, "unit": unit}})
                zone_units.setdefault(zone, []).append(unit)
                module_sku[unit] = sku
                location_of[sku] = code
                zone_of[sku] = zone
                n += 1
            op = f"p{zi + 1}"
            pickers[op] = zone
            operators.append({"operator_id": op, "name": f"Picker {zi + 1}", "badge": f"BADGE-P{zi + 1}",
                              "roles": ["picker"], "zones": [zone]})
        for k in range(1, packers + 1):
            packer_ids[f"k{k}"] = f"pack-{k}"
            operators.append({"operator_id": f"k{k}", "name": f"Packer {k}", "badge": f"BADGE-K{k}",
                              "roles": ["packer"], "zones": list(zones)})
        operators.append({"operator_id": "s1", "name": "Supervisor", "badge": "BADGE-S1", "roles": ["supervisor"],
                          "zones": list(zones)})
        return cls(skus, locations, operators, zone_units, module_sku, location_of, zone_of, pickers, packer_ids,
                   bus)

    @property
    def units(self) -> list[int]:
        return sorted(self.module_sku)

    def masterdata(self, sync_id: str = "md-1") -> dict[str, Any]:
        return {"mode": "replace", "sync_id": sync_id, "part": 1, "parts": 1, "skus": self.skus,
                "locations": self.locations, "operators": self.operators,
                "cartons": [{"code": CARTON, "tare_g": CARTON_TARE_G}]}

    def badge(self, operator_id: str) -> str:
        return str(next(o["badge"] for o in self.operators if o["operator_id"] == operator_id))

    def sku(self, sku: str) -> dict[str, Any]:
        return next(s for s in self.skus if s["sku"] == sku)

    def unit(self, sku: str, lot: str = "good") -> Unit:
        """A unit from the shelf: `good` (two years left) or `expired` (a month ago), dated from today."""
        s = self.sku(sku)
        lot_code = expiry = None
        if s.get("lot_tracked"):
            today = date.today()
            when = today + timedelta(days=730) if lot == "good" else today - timedelta(days=30)
            lot_code = "L100" if lot == "good" else "L001"
            expiry = when.strftime("%y%m%d")
        return Unit(sku, s["gtins"][0], lot_code, expiry, None, float(s.get("unit_weight_g") or 0.0))

    def order(self, order_id: str, rng: random.Random, *, cross_zone: bool = False) -> dict[str, Any]:
        """1-3 lines of distinct SKUs, 1-3 units each; from one zone unless `cross_zone` (then an order may
        need a task, and a tote, in each zone)."""
        n = rng.choice((1, 1, 2, 2, 3))
        pool = [s["sku"] for s in self.skus]
        if not cross_zone:
            zone = rng.choice(sorted(self.zone_units))
            pool = [sku for sku in pool if self.zone_of[sku] == zone]
        chosen = rng.sample(pool, min(n, len(pool)))
        return {"order_id": order_id, "channel": "web", "priority": {"value_cents": rng.randint(500, 50_000)},
                "lines": [{"line_no": i + 1, "sku": sku, "qty": rng.choice((1, 2, 3))} for i, sku in enumerate(chosen)]}


# -- what the hub knows ------------------------------------------------------------------------------------------

class HubFacts:
    """Facts from the hub's events, read in seq order over the contiguous prefix the hub holds, so a fact is
    never seen before the facts it follows."""

    def __init__(self, hub: HubSim) -> None:
        self.hub = hub
        self._reset(None)

    def _reset(self, journal: str | None) -> None:
        self.journal = journal
        self.upto = 0
        self.order_state: dict[str, str] = {}
        self.order_totes: dict[str, list[str]] = {}
        self.picked: dict[str, Counter[tuple[str, str | None]]] = {}
        self.short: dict[str, Counter[str]] = {}
        self.missing: dict[str, Counter[tuple[str, str | None]]] = {}  # reported missing at packing
        self.in_review: set[str] = set()
        self.types: Counter[str] = Counter()

    def update(self) -> None:
        jid = self.hub.current
        view = self.hub.journals.get(jid) if jid else None
        if view is None:
            return
        if jid != self.journal:
            self._reset(jid)  # a new journal (a restore): start over
        while self.upto < view.watermark:
            ev = view.events.get(self.upto + 1)
            if ev is None:
                break
            self._apply(ev)
            self.upto += 1

    def _apply(self, ev: dict[str, Any]) -> None:
        typ, data, oid = ev.get("type", ""), ev.get("data") or {}, ev.get("order_id")
        self.types[typ] += 1
        if oid is None:
            return
        if typ == "order.received":
            self.order_state[oid] = "received"
        elif typ == "order.state_changed":
            self.order_state[oid] = data["to"]
            if data["to"] != "on_hold":
                self.in_review.discard(oid)
        elif typ == "tote.bound":
            self.order_totes.setdefault(oid, []).append(data["tote"])
        elif typ == "pick.line_confirmed":
            self.picked.setdefault(oid, Counter())[(data["sku"], data.get("lot"))] += int(data["qty"])
        elif typ == "pick.line_short":
            self.short.setdefault(oid, Counter())[str(data["line_no"])] += int(data["qty_missing"])
        elif typ == "pack.review_required":
            self.in_review.add(oid)
            if data.get("reason") == "items_missing":
                self.missing[oid] = Counter()
                for m in data.get("missing") or []:
                    self.missing[oid][(m["sku"], m.get("lot"))] += int(m["qty"])
        elif typ == "pack.review_resolved" and data.get("decision") == "repack":
            self.missing.pop(oid, None)  # verified again from scratch

    def recorded(self, oid: str) -> Counter[tuple[str, str | None]]:
        """What the gateway holds the order's parcel to be: what it recorded as picked, less what a packer
        reported missing."""
        return +(self.picked.get(oid, Counter()) - self.missing.get(oid, Counter()))


# -- a person's tools --------------------------------------------------------------------------------------------

class Hand:
    """A person's serial scanner: type a barcode, wait until a gateway process has read it off the pty, then
    for the beep. None: read, never answered (the process that read it died)."""

    def __init__(self, sim: VirtualSerialScanner, *, good: bytes = GOOD, bad: bytes = BAD,
                 beep_timeout_s: float = 3.0) -> None:
        self.sim = sim
        self.good, self.bad = good, bad
        self.beep_timeout_s = beep_timeout_s
        self._probe: int | None = None
        self._probe_path = ""
        self.scans = 0
        self.unanswered = 0
        self.lock = asyncio.Lock()  # a fault takes it to unplug the scanner between two of this person's scans

    def _queued(self) -> int:
        """Bytes typed that no process has read yet (the slave's input queue, via a descriptor of our own)."""
        if self._probe is None or self._probe_path != self.sim.slave_path:
            self.close()
            self._probe = os.open(self.sim.slave_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            self._probe_path = self.sim.slave_path
        buf = array.array("i", [0])
        fcntl.ioctl(self._probe, termios.FIONREAD, buf)
        return int(buf[0])

    def close(self) -> None:
        if self._probe is not None:
            with contextlib.suppress(OSError):
                os.close(self._probe)
            self._probe = None

    async def scan(self, text: str, aim: str | None = None) -> Beep:
        async with self.lock:
            return await self._scan(text, aim)

    async def _scan(self, text: str, aim: str | None) -> Beep:
        self.sim.read_feedback()  # beeps of earlier scans are not this scan's answer
        await self.sim.scan(text, aim=aim or "")
        self.scans += 1
        if not await until(lambda: self._queued() == 0, SAFETY_S, 0.005):
            raise RuntimeError(f"no gateway read the scan {text!r} within {SAFETY_S:.0f} s")
        try:
            async with asyncio.timeout(self.beep_timeout_s):
                fb = await self.sim.wait_feedback(1)
        except TimeoutError:
            self.unanswered += 1
            return None
        return "good" if fb[:1] == self.good else "bad"

    async def scan_unit(self, unit: Unit) -> Beep:
        text, aim = unit.barcode()
        return await self.scan(text, aim)

    async def scan_until_answered(self, text: str) -> Literal["good", "bad"]:
        """For scans that change nothing when repeated (tote, location, order, carton)."""
        while True:
            beep = await self.scan(text)
            if beep is not None:
                return beep


class ModuleWrites:
    """Counts the gateway's FC16 writes to each module (every job, done, off and error signal is one FC16 of
    registers 0-4): after an unanswered action, the next write is the gateway's verdict on it."""

    def __init__(self, ptl: PtlSimulator, units: Sequence[int]) -> None:
        self.ptl = ptl
        self.count: Counter[int] = Counter()
        for u in units:
            self._arm(u)

    def _arm(self, unit: int) -> None:
        self.ptl.after_read(unit, lambda: self._fired(unit), function_code=16)

    def _fired(self, unit: int) -> None:
        self.count[unit] += 1
        self._arm(unit)


# -- the floor ----------------------------------------------------------------------------------------------------

@dataclass
class Report:
    lines_done: int = 0
    presses: int = 0
    presses_lost: int = 0
    scans_unanswered: int = 0
    mistakes: Counter[str] = field(default_factory=Counter)
    caught_at_pick: int = 0
    refused_at_pack: int = 0
    pending_resolved: int = 0
    reviews: int = 0
    missing_reported: int = 0  # orders a packer reported units missing for (the gateway wanted what was not there)
    packed: int = 0
    busy: int = 0  # order.upsert answered `busy` (storage full) and resent
    anomalies: list[str] = field(default_factory=list)


class BlackBoxFloor:
    def __init__(self, plan: Plan, hub: HubSim, ptl: PtlSimulator,
                 pick_scanners: dict[str, VirtualSerialScanner],
                 pack_scanners: dict[str, VirtualSerialScanner], scales: dict[str, ScaleSimulator], *,
                 seed: int = 1, error_rate: float = 0.05, short_rate: float = 0.05, extra_rate: float = 0.03,
                 beep_timeout_s: float = 3.0) -> None:
        self.plan = plan
        self.hub = hub
        self.ptl = ptl
        self.facts = HubFacts(hub)
        self.rng = random.Random(seed)
        self.error_rate, self.short_rate, self.extra_rate = error_rate, short_rate, extra_rate
        self.writes = ModuleWrites(ptl, plan.units)
        self.report = Report()
        self.totes: dict[str, list[Unit]] = {}  # tote id -> units physically in it
        self.parcels: dict[str, list[Unit]] = {}  # order id -> units physically in its packed parcel
        self.aside: list[Unit] = []  # units taken out at packing (back to stock)
        self.orders: dict[str, dict[str, Any]] = {}  # order id -> the order as the hub sent it
        self.claimed: set[str] = set()
        self._tote_no = itertools.count(1)
        self.pickers = [Picker(self, op, zone, Hand(pick_scanners[op], beep_timeout_s=beep_timeout_s))
                        for op, zone in plan.pickers.items()]
        self.packers = [Packer(self, op, station, Hand(pack_scanners[op], beep_timeout_s=beep_timeout_s),
                               scales[station]) for op, station in plan.packers.items()]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def actors(self) -> list[Picker | Packer]:
        return [*self.pickers, *self.packers]

    # -- running -----------------------------------------------------------------------------------------------

    async def login(self) -> None:
        """Every badge once, before any fault: a badge scanned again would log its operator out."""
        for actor in self.actors:
            beep = await actor.hand.scan(self.plan.badge(actor.op))
            if beep != "good":
                raise RuntimeError(f"{actor.op} could not log in (beep {beep})")

    def start(self) -> None:
        for p in self.pickers:
            self._tasks.append(asyncio.create_task(p.run(self._stop), name=f"blackbox-picker-{p.op}"))
        for k in self.packers:
            self._tasks.append(asyncio.create_task(k.run(self._stop), name=f"blackbox-packer-{k.op}"))

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task of the test's (e.g. the feed) that `stop` cancels with the actors, so a failed test leaks none."""
        t = asyncio.create_task(coro, name=name)
        self._tasks.append(t)
        return t

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for actor in self.actors:
            actor.hand.close()
        for r in results:
            if isinstance(r, Exception):
                raise r

    def failed(self) -> BaseException | None:
        """The first actor that crashed, if any (a test checks this while it waits)."""
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                return t.exception()
        return None

    async def feed(self, n: int, *, first: int = 0, every_s: float = 0.0, prefix: str = "BB",
                   cross_zone: bool = False) -> None:
        """Send `n` orders through the hub, one `order.upsert` at a time (resent with its cmd_id until answered,
        as a hub does), `first` at once and then one every `every_s` seconds."""
        for i in range(n):
            oid = f"{prefix}{i + 1:04d}"
            order = self.plan.order(oid, self.rng, cross_zone=cross_zone)
            self.orders[oid] = order
            while True:
                r = await self.hub.command("order.upsert", {"order": order}, cmd_id=f"up-{oid}", timeout=SAFETY_S,
                                           resend_after=3.0)
                if r.get("ok") or (r.get("error") or {}).get("code") != "busy":
                    break
                self.report.busy += 1  # storage full: `busy` is not stored, so the same cmd_id is tried afresh
                self.hub.results.pop(f"up-{oid}", None)  # and the answer awaited is the next one, not this busy
                await asyncio.sleep(1.0)
            if not r.get("ok"):
                raise RuntimeError(f"order {oid} refused: {r}")
            if i >= first and every_s:
                await asyncio.sleep(every_s)

    def finished(self) -> bool:
        """Every order sent is packed (or cancelled) as far as the hub knows."""
        self.facts.update()
        return bool(self.orders) and all(self.facts.order_state.get(o) in ("packed", "cancelled")
                                         for o in self.orders)

    def new_tote(self) -> str:
        tote = f"TOTE-{next(self._tote_no):05d}"
        self.totes[tote] = []
        return tote

    def empty_tote(self, tote: str) -> list[Unit]:
        """A packer takes everything out of a tote: it comes back to the floor empty, so no picker's line
        holds anything in it any more (the tote may be bound to another task next)."""
        units, self.totes[tote] = self.totes.get(tote, []), []
        for p in self.pickers:
            for key in [k for k in p.lines if k[0] == tote]:
                del p.lines[key]
        return units

    # -- the physical check --------------------------------------------------------------------------------------

    def wrong_parcels(self) -> list[str]:
        """Packed parcels whose contents differ from what the gateway recorded as picked (by SKU and lot), or
        from what the order asked for less what was recorded short."""
        self.facts.update()
        wrong = []
        for oid, parcel in self.parcels.items():
            physical = Counter(u.key() for u in parcel)
            recorded = self.facts.recorded(oid)
            by_sku: Counter[str] = Counter()
            for (sku, _lot), n in physical.items():
                by_sku[sku] += n
            order = self.orders.get(oid, {"lines": []})
            short = self.facts.short.get(oid, Counter())
            wanted = Counter({ln["sku"]: ln["qty"] - short[str(ln["line_no"])] for ln in order["lines"]})
            for (sku, _lot), n in self.facts.missing.get(oid, Counter()).items():
                wanted[sku] -= n
            if physical != recorded or +by_sku != +wanted:
                wrong.append(f"{oid}: parcel {dict(physical)}, recorded {dict(recorded)}, wanted {dict(+wanted)}")
        return wrong


# -- pickers ------------------------------------------------------------------------------------------------------

@dataclass
class LineState:
    """One line as this picker knows it: a module lit while a given tote was in hand."""

    sku: str
    counted: int = 0  # units the gateway acknowledged on this line
    in_tote: int = 0  # units physically put in the tote for it
    total: int | None = None  # units the shelf gives for it (fewer than asked: a short pick), decided once
    extra_done: bool = False


class Picker:
    def __init__(self, floor: BlackBoxFloor, op: str, zone: str, hand: Hand) -> None:
        self.floor = floor
        self.op = op
        self.zone = zone
        self.hand = hand
        self.units = floor.plan.zone_units[zone]
        self.tote: str | None = None
        self.tote_bound = False
        self.lines: dict[tuple[str, int], LineState] = {}
        self.rng = random.Random(f"{floor.rng.random()}-{op}")

    def node(self, unit: int) -> Any:
        return self.floor.ptl.module(unit)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            modes = {u: self.node(u).mode for u in self.units}
            if MODE_ERROR in modes.values():
                await asyncio.sleep(0.02)  # an error signal shows: the job comes back by itself
                continue
            lit = [u for u, m in modes.items() if m == MODE_JOB]
            if not lit:
                await asyncio.sleep(0.03)
                continue
            await self.work(self.rng.choice(lit))

    # -- the tote --------------------------------------------------------------------------------------------

    async def ensure_tote(self) -> bool:
        """Scan the tote in hand: it is bound to the task the lights show, or it holds another order's units
        and a fresh tote is taken. False: no open task for these lights (yet)."""
        for _ in range(3):
            if self.tote is None:
                self.tote = self.floor.new_tote()
                self.tote_bound = False
            if await self.hand.scan_until_answered(self.tote) == "good":
                self.tote_bound = True
                return True
            if not self.tote_bound:
                return False  # a fresh tote refused: no task right now
            self.tote = None  # it belongs to an order that is picked: it stays for the packer
        return False

    async def task_still_open(self) -> bool:
        """The tote in hand is still bound to an open task (a good beep), or its task is over (a bad one)."""
        assert self.tote is not None
        return await self.hand.scan_until_answered(self.tote) == "good"

    # -- one line ------------------------------------------------------------------------------------------------

    async def work(self, unit: int) -> None:
        node = self.node(unit)
        if not await self.ensure_tote() or node.mode != MODE_JOB:
            await asyncio.sleep(0.3)  # lights of a task the gateway no longer has: it rewrites them shortly
            return
        assert self.tote is not None
        sku = self.floor.plan.module_sku[unit]
        line = self.lines.setdefault((self.tote, unit), LineState(sku))
        if line.counted == 0:
            await self.maybe_mistake(unit, sku)
            if node.mode != MODE_JOB:
                return
            if self.rng.random() < 0.3:
                await self.hand.scan_until_answered(self.floor.plan.location_of[sku])
                if node.mode != MODE_JOB:
                    return
            if not await self.first_unit(unit, line) or node.mode != MODE_JOB:
                return
        await self.confirm_rest(unit, line)

    async def maybe_mistake(self, unit: int, sku: str) -> None:
        """A wrong grab, scanned and refused: an item from another zone's shelf (never on this picker's task),
        or an expired unit of a lot-tracked SKU. It goes back to the shelf; the error signal passes."""
        if self.rng.random() >= self.floor.error_rate:
            return
        plan = self.floor.plan
        if plan.sku(sku).get("lot_tracked") and self.rng.random() < 0.5:
            wrong, kind = plan.unit(sku, "expired"), "expired"
        else:
            others = [s for s, z in plan.zone_of.items() if z != self.zone]
            if not others:
                return
            wrong, kind = plan.unit(self.rng.choice(others)), "wrong_item"
        self.floor.report.mistakes[kind] += 1
        beep = await self.hand.scan_unit(wrong)
        if beep == "good":
            self.floor.report.anomalies.append(f"{self.op}: a {kind} scan of {wrong.sku} was accepted")
            self.floor.totes[self.tote or ""].append(wrong)  # the gateway counted it: it goes with the order
            return
        if beep == "bad":
            self.floor.report.caught_at_pick += 1
        await until(lambda: all(self.node(u).mode != MODE_ERROR for u in self.units), 30)

    async def first_unit(self, unit: int, line: LineState) -> bool:
        """The item scan a line needs before its key counts: one unit into the tote, scanned. True once the
        gateway has counted it and the display shows what is left."""
        node = self.node(unit)
        writes = self.floor.writes.count
        assert self.tote is not None
        tote = self.floor.totes[self.tote]
        qty, before = node.quantity, writes[unit]
        item = self.floor.plan.unit(line.sku)
        if line.in_tote <= line.counted:  # else a unit already in the tote was never counted: scan that one
            tote.append(item)
            line.in_tote += 1
        beep = await self.hand.scan_unit(item)
        if beep == "bad":
            # Not counted: the unit goes back to the shelf. (Left in the tote, it would be remembered as a unit
            # in hand for the line, and its tote packed and bound to another task meanwhile.)
            self.floor.report.anomalies.append(f"{self.op}: the item scan of {line.sku} was refused")
            if item in tote:
                tote.remove(item)
                line.in_tote = max(line.in_tote - 1, 0)
            await until(lambda: node.mode != MODE_ERROR, 30)
            return False
        if beep is None:
            # Read by a gateway that never answered: its next write to this module is the verdict.
            self.floor.report.scans_unanswered += 1
            if not await until(lambda: writes[unit] > before):
                raise RuntimeError(f"module {unit} was never written again after an unanswered scan")
            if node.mode == MODE_ERROR:
                return False
            if node.mode == MODE_JOB and node.quantity == qty:
                # Not counted; unless the line was the last unit and this is a new task's line of one.
                if qty != 1 or await self.task_still_open():
                    return False
            elif node.mode == MODE_JOB and node.quantity != qty - 1 and qty != 1:
                self.floor.report.anomalies.append(f"{self.op}: module {unit} shows {node.quantity} after a scan "
                                                   f"at {qty}")
                return False
        line.counted += 1
        if qty == 1:
            self.done(unit, line)
            return False
        # After a good beep the display counts down with the next write; read the rest only after it.
        await until(lambda: writes[unit] > before, 30)
        return True

    async def confirm_rest(self, unit: int, line: LineState) -> None:
        """Take what the display asks for (or what the shelf has) into the tote, then the key: confirm, or the
        shortage key with the display adjusted down to what was taken."""
        node = self.node(unit)
        if node.mode != MODE_JOB:
            return
        assert self.tote is not None
        tote = self.floor.totes[self.tote]
        shown = node.quantity
        if line.total is None:
            line.total = line.counted + shown
            if shown >= 2 and self.rng.random() < self.floor.short_rate:
                line.total = line.counted + self.rng.randint(1, shown - 1)
                self.floor.report.mistakes["short_shelf"] += 1
        want = max(min(line.total - line.counted, shown), 0)
        while line.in_tote < line.counted + want:
            tote.append(self.floor.plan.unit(line.sku))
            line.in_tote += 1
        if not line.extra_done and self.rng.random() < self.floor.extra_rate:
            line.extra_done = True
            tote.append(self.floor.plan.unit(line.sku))  # one too many: packing must catch it
            self.floor.report.mistakes["extra_unit"] += 1
        key = "confirm" if want == shown else "shortage"
        token, before = node.token, self.floor.writes.count[unit]
        delta = want - node.shown_quantity
        if delta:
            self.floor.ptl.adjust(unit, delta)
        if not self.floor.ptl.press(unit, key):
            return  # the module left the job meanwhile: look again
        self.floor.report.presses += 1
        # Answered by the module leaving the job (done), or by the next write (a restarted gateway's).
        if not await until(lambda: self.floor.writes.count[unit] > before or (node.mode, node.token) != (MODE_JOB,
                                                                                                    token)):
            raise RuntimeError(f"module {unit} never answered the {key} key")
        if node.mode == MODE_ERROR:
            self.floor.report.anomalies.append(f"{self.op}: the {key} key on module {unit} was refused")
            line.counted = 0  # the gateway has no item scan for the line: it needs one again
            await until(lambda: node.mode != MODE_ERROR, 30)
            return
        if node.mode == MODE_JOB and node.quantity == shown and await self.task_still_open():
            self.floor.report.presses_lost += 1
            return  # the job is shown again after a restart: press again (nothing more goes in the tote)
        line.counted += want
        self.done(unit, line)

    def done(self, unit: int, line: LineState) -> None:
        """The line is over: forget it, since the same tote may come back to this module for a later task (the
        gateway rebinds an emptied tote), and that line starts from nothing in the tote."""
        self.floor.report.lines_done += 1
        if self.tote is not None and self.lines.get((self.tote, unit)) is line:
            del self.lines[(self.tote, unit)]


# -- packers ------------------------------------------------------------------------------------------------------

class Packer:
    NUDGE_S = 3.0

    def __init__(self, floor: BlackBoxFloor, op: str, station: str, hand: Hand, scale: ScaleSimulator) -> None:
        self.floor = floor
        self.op = op
        self.station = station
        self.hand = hand
        self.scale = scale
        self.rng = random.Random(f"{floor.rng.random()}-{op}")

    def state_of(self, oid: str) -> str | None:
        self.floor.facts.update()
        return self.floor.facts.order_state.get(oid)

    def next_order(self) -> str | None:
        facts = self.floor.facts
        facts.update()
        for oid in self.floor.orders:
            if oid not in self.floor.claimed and facts.order_state.get(oid) in ("picked", "short_picked"):
                self.floor.claimed.add(oid)
                return oid
        return None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            oid = self.next_order()
            if oid is None:
                await asyncio.sleep(0.05)
                continue
            await self.pack(oid)

    def weigh(self, units: Sequence[Unit]) -> None:
        self.scale.put(round(sum(u.weight_g for u in units) + CARTON_TARE_G, 1))

    async def pack(self, oid: str) -> None:
        floor = self.floor
        totes = list(dict.fromkeys(floor.facts.order_totes.get(oid, [])))
        bench: list[Unit] = []
        for t in totes:  # everything in them comes to the bench; the picker may reuse an emptied tote
            bench.extend(floor.empty_tote(t))
        ident = self.rng.choice(totes) if totes and self.rng.random() < 0.5 else oid
        if await self.hand.scan_until_answered(ident) != "good":
            floor.report.anomalies.append(f"{self.op}: {oid} refused at {self.station} (scanned {ident})")
            floor.aside.extend(bench)
            return
        await self.hand.scan_until_answered(CARTON)
        parcel: list[Unit] = []
        pending: list[Unit] = []
        wanted = Counter({ln["sku"]: ln["qty"] for ln in floor.orders.get(oid, {"lines": []})["lines"]})
        for u in bench:
            have = Counter(x.key()[0] for x in parcel)
            if wanted and not pending and all(have[sku] >= q for sku, q in wanted.items()):
                # Complete, as the station's screen says: the rest of the bench is surplus and goes aside
                # unscanned. (Scanned now, its answer could be taken from the beep the gateway gives the
                # station for the parcel's weight, which comes just then.)
                floor.aside.append(u)
                continue
            self.weigh([*parcel, *pending, u])
            beep = await self.hand.scan_unit(u)
            if beep == "good":
                parcel.append(u)
            elif beep == "bad":
                floor.report.refused_at_pack += 1
                floor.aside.append(u)
            else:
                pending.append(u)
        await self.settle(oid, ident, parcel, pending)
        # The parcel leaves the scale, which shows zero before the next carton goes on: the gateway weighs a
        # parcel only on a scale seen empty since the last one.
        await self.scale.take_off(SAFETY_S / 6)

    async def settle(self, oid: str, ident: str, parcel: list[Unit], pending: list[Unit]) -> None:
        """Until the hub shows the order packed: rescan units whose scan was never answered (a repeat counts only
        if the gateway still wants such a unit), then the order itself (it weighs a complete parcel again)."""
        floor, facts = self.floor, self.floor.facts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SAFETY_S
        nudge_at = loop.time() + self.NUDGE_S
        retry = list(pending)
        held: list[Unit] = []  # pending units a rescan did not take: the final count decides
        reported = False
        while True:
            facts.update()
            state = facts.order_state.get(oid)
            if state == "packed":
                self.finish(oid, parcel, [*retry, *held])
                return
            if state == "on_hold" and oid in facts.in_review:
                self.finish(oid, parcel, [*retry, *held])
                floor.report.reviews += 1
                await floor.hub.command("pack.review", {"order_id": oid, "decision": "approve", "operator_id": "s1"},
                                        timeout=SAFETY_S)
                await until(lambda: self.state_of(oid) == "packed")
                return
            if loop.time() >= deadline:
                floor.report.anomalies.append(f"{self.op}: {oid} never got packed (state {state})")
                floor.aside.extend([*parcel, *retry, *held])
                return
            if loop.time() >= nudge_at:
                if retry:
                    u = retry.pop(0)
                    self.weigh([*parcel, *retry, *held, u])
                    beep = await self.hand.scan_unit(u)
                    if beep == "good":
                        parcel.append(u)
                    elif beep == "bad":
                        held.append(u)
                    else:
                        retry.append(u)
                elif not reported and state == "packing" and self.missing(oid, [*parcel, *held]):
                    # The station still wants units the bench does not have: say so, as its screen asks.
                    reported = True
                    if await self.hand.scan_until_answered(MISSING_CODE) == "good":
                        floor.report.missing_reported += 1
                        floor.report.anomalies.append(
                            f"{self.op}: {oid} reported at {self.station} with units missing: "
                            f"{dict(self.missing(oid, [*parcel, *held]))}")
                else:
                    # The station may be asking for the parcel to come off the scale (the gateway restarted with
                    # it on, so the scale was never seen empty): lift it and put it back, then weigh again.
                    await self.scale.take_off(1.0)
                    self.weigh([*parcel, *retry, *held])
                    await self.hand.scan_until_answered(ident)
                nudge_at = loop.time() + self.NUDGE_S
            await asyncio.sleep(0.05)

    def missing(self, oid: str, present: Sequence[Unit]) -> Counter[tuple[str, str | None]]:
        """Units the gateway recorded for the order that are not on the bench (nothing left to rescan)."""
        return +(self.floor.facts.recorded(oid) - Counter(u.key() for u in present))

    def finish(self, oid: str, parcel: list[Unit], pending: list[Unit]) -> None:
        """The gateway counted exactly what it recorded as picked: as many pending units of each kind as are
        still missing from the parcel go in; the rest are surplus."""
        floor = self.floor
        recorded = floor.facts.recorded(oid)
        have = Counter(u.key() for u in parcel)
        for u in pending:
            if have[u.key()] < recorded[u.key()]:
                parcel.append(u)
                have[u.key()] += 1
                floor.report.pending_resolved += 1
            else:
                floor.aside.append(u)
        floor.parcels[oid] = parcel
        floor.report.packed += 1
