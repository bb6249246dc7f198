"""The floor's whole state in memory, with the indexes that scans and dispatch need on every call.

It is rebuilt from the journal at start-up; every change to it goes through a `Change` that the journal
commits, so memory and disk never disagree for longer than one commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.dispatch import DispatchEngine
from gateway.domain.model import (
    FINAL_STATES,
    TASK_ACTIVE,
    Alarm,
    Carton,
    DeviceState,
    Hold,
    Light,
    Location,
    Operator,
    Order,
    PickerState,
    Session,
    Sku,
    Station,
    Task,
)
from gateway.domain.rules import FloorRules

STORAGE_OK, STORAGE_WARNING, STORAGE_FULL = "ok", "warning", "full"


@dataclass(slots=True)
class MasterData:
    """One generation of master data. A `replace` builds a new one aside and swaps it in whole."""

    skus: dict[str, Sku] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    operators: dict[str, Operator] = field(default_factory=dict)
    cartons: dict[str, Carton] = field(default_factory=dict)
    gtins: dict[str, tuple[str, int]] = field(default_factory=dict)  # GTIN-14 -> (sku, units per scan)
    badges: dict[str, str] = field(default_factory=dict)  # badge -> operator_id
    locations_by_sku: dict[str, list[str]] = field(default_factory=dict)

    def index_sku(self, s: Sku) -> None:
        old = self.skus.get(s.sku)
        if old is not None:
            for g in old.gtins:
                self.gtins.pop(g, None)
            for g, _ in old.pack_gtins:
                self.gtins.pop(g, None)
        self.skus[s.sku] = s
        for g in s.gtins:
            self.gtins[g] = (s.sku, 1)
        for g, q in s.pack_gtins:
            self.gtins[g] = (s.sku, q)

    def index_location(self, loc: Location) -> None:
        old = self.locations.get(loc.code)
        if old is not None and old.sku is not None:
            codes = self.locations_by_sku.get(old.sku, [])
            if loc.code in codes:
                codes.remove(loc.code)
        self.locations[loc.code] = loc
        if loc.sku is not None:
            self.locations_by_sku.setdefault(loc.sku, []).append(loc.code)

    def index_operator(self, op: Operator) -> None:
        old = self.operators.get(op.operator_id)
        if old is not None and old.badge and self.badges.get(old.badge) == op.operator_id:
            del self.badges[old.badge]
        self.operators[op.operator_id] = op
        if op.badge:
            self.badges[op.badge] = op.operator_id

    def index_carton(self, c: Carton) -> None:
        self.cartons[c.code] = c

    def add(self, kind: str, doc: dict[str, Any]) -> None:
        if kind == "sku":
            self.index_sku(Sku.from_doc(doc))
        elif kind == "location":
            self.index_location(Location.from_doc(doc))
        elif kind == "operator":
            self.index_operator(Operator.from_doc(doc))
        elif kind == "carton":
            self.index_carton(Carton.from_doc(doc))
        else:
            raise ValueError(f"unknown master data kind {kind!r}")

    def count(self) -> dict[str, int]:
        return {"skus": len(self.skus), "locations": len(self.locations), "operators": len(self.operators),
                "cartons": len(self.cartons)}


@dataclass(slots=True)
class ModuleSlot:
    """One PTL module: the line it shows (one at a time) and the lines waiting for it, first come first."""

    owner: tuple[str, int] | None = None
    waiting: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Floor:
    site: str
    gateway: str
    rules: FloorRules = field(default_factory=FloorRules)
    dispatch: DispatchEngine = field(default_factory=DispatchEngine)
    md: MasterData = field(default_factory=MasterData)
    md_gen: int = 1
    orders: dict[str, Order] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)  # by device id
    pickers: dict[str, PickerState] = field(default_factory=dict)
    stations: dict[str, Station] = field(default_factory=dict)
    devices: dict[str, DeviceState] = field(default_factory=dict)
    extra: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # other kinds, by kind and id
    storage: str = STORAGE_OK
    # Derived indexes, rebuilt by `rebuild()` and kept current by the operations.
    order_tasks: dict[str, list[str]] = field(default_factory=dict)
    totes: dict[str, str] = field(default_factory=dict)  # bound tote -> order id
    serials: set[tuple[str, str]] = field(default_factory=set)  # (sku, serial) already picked
    modules: dict[Light, ModuleSlot] = field(default_factory=dict)
    sscc_last: int = 0  # the last SSCC serial issued (0: none yet)

    def set_storage(self, level: str) -> None:
        """At the storage cap new orders are refused (see `upsert_order`) and no new task is given out."""
        self.storage = level
        self.dispatch.set_new_work(level != STORAGE_FULL)

    def tasks_of(self, order_id: str) -> list[Task]:
        return [self.tasks[t] for t in self.order_tasks.get(order_id, []) if t in self.tasks]

    def add_task(self, task: Task) -> None:
        self.tasks[task.task_id] = task
        ids = self.order_tasks.setdefault(task.order_id, [])
        if task.task_id not in ids:
            ids.append(task.task_id)

    def free_totes(self, order: Order) -> None:
        """The order is packed, cancelled or forgotten: every tote bound to it (one per zone's task, maybe
        more) may be bound again. Only bindings still pointing at this order are dropped."""
        for tote in {*order.totes, *([order.tote] if order.tote else [])}:
            if self.totes.get(tote) == order.order_id:
                del self.totes[tote]

    def picker(self, operator_id: str) -> PickerState:
        p = self.pickers.get(operator_id)
        if p is None:
            p = self.pickers[operator_id] = PickerState(operator_id)
        return p

    def sessions_of(self, operator_id: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.operator_id == operator_id]

    def active_tasks_of(self, operator_id: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.operator_id == operator_id and t.state in TASK_ACTIVE]

    def load_docs(self, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        for kind, key, doc in rows:
            if kind == "order":
                self.orders[key] = Order.from_doc(doc)
            elif kind == "task":
                self.tasks[key] = Task.from_doc(doc)
            elif kind == "hold":
                self.holds[key] = Hold.from_doc(doc)
            elif kind == "alarm":
                self.alarms[key] = Alarm.from_doc(doc)
            elif kind == "session":
                self.sessions[key] = Session.from_doc(doc)
            elif kind == "picker":
                self.pickers[key] = PickerState.from_doc(doc)
            elif kind == "station":
                self.stations[key] = Station.from_doc(doc)
            else:
                self.extra.setdefault(kind, {})[key] = doc

    def load_masterdata(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for kind, doc in rows:
            self.md.add(kind, doc)

    def rebuild(self) -> None:
        """Recompute what is derived from the stored entities (after loading them)."""
        self.order_tasks = {}
        for t in self.tasks.values():
            self.order_tasks.setdefault(t.order_id, []).append(t.task_id)
        self.totes = {t: o.order_id for o in self.orders.values() if o.state not in FINAL_STATES
                      for t in {*o.totes, *([o.tote] if o.tote else [])}}
        self.serials = {(ln.sku, s) for o in self.orders.values() if o.state != "cancelled"
                        for ln in o.lines for p in ln.picks for s in p.serials}
        self.serials |= {(d["sku"], d["serial"]) for d in self.extra.get("serial", {}).values()}
