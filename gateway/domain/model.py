"""Entities of the floor as slotted dataclasses: small in memory (a site may hold 100,000 SKUs on a
1 GB box) and trivially turned into the JSON documents the journal stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Order states of SPEC §1.
RECEIVED = "received"
ASSIGNED = "assigned"
PICKING = "picking"
PICKED = "picked"
SHORT_PICKED = "short_picked"
PACKING = "packing"
PACKED = "packed"
ON_HOLD = "on_hold"
CANCELLED = "cancelled"
ORDER_STATES = (RECEIVED, ASSIGNED, PICKING, PICKED, SHORT_PICKED, PACKING, PACKED, ON_HOLD, CANCELLED)
FINAL_STATES = (PACKED, CANCELLED)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(slots=True)
class Sku:
    sku: str
    gtins: list[str]
    pack_gtins: list[tuple[str, int]] = field(default_factory=list)
    description: str = ""
    unit_weight_g: float | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    min_shelf_life_days: int = 0
    serial_tracked: bool = False
    cold_chain: bool = False

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({
            "sku": self.sku, "gtins": self.gtins,
            "pack_gtins": [{"gtin": g, "qty": q} for g, q in self.pack_gtins],
            "description": self.description, "unit_weight_g": self.unit_weight_g,
            "lot_tracked": self.lot_tracked, "expiry_tracked": self.expiry_tracked,
            "min_shelf_life_days": self.min_shelf_life_days, "serial_tracked": self.serial_tracked,
            "cold_chain": self.cold_chain,
        })

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Sku:
        return cls(
            d["sku"], list(d.get("gtins", [])), [(p["gtin"], p["qty"]) for p in d.get("pack_gtins", [])],
            d.get("description", ""), d.get("unit_weight_g"), d.get("lot_tracked", False),
            d.get("expiry_tracked", False), d.get("min_shelf_life_days", 0), d.get("serial_tracked", False),
            d.get("cold_chain", False),
        )


@dataclass(slots=True, frozen=True)
class Light:
    bus: str
    unit: int


@dataclass(slots=True)
class Location:
    code: str
    zone: str
    sku: str | None = None
    light: Light | None = None

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "zone": self.zone}
        if self.sku is not None:
            d["sku"] = self.sku
        if self.light is not None:
            d["light"] = {"bus": self.light.bus, "unit": self.light.unit}
        return d

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Location:
        light = d.get("light")
        return cls(d["code"], d["zone"], d.get("sku"), Light(light["bus"], light["unit"]) if light else None)


@dataclass(slots=True)
class Operator:
    operator_id: str
    name: str = ""
    badge: str = ""
    roles: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    password_hash: str | None = None
    language: str = "en"

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({
            "operator_id": self.operator_id, "name": self.name, "badge": self.badge, "roles": self.roles,
            "zones": self.zones, "password_hash": self.password_hash, "language": self.language,
        })

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Operator:
        return cls(d["operator_id"], d.get("name", ""), d.get("badge", ""), list(d.get("roles", [])),
                   list(d.get("zones", [])), d.get("password_hash"), d.get("language", "en"))


@dataclass(slots=True)
class Carton:
    code: str
    tare_g: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {"code": self.code, "tare_g": self.tare_g}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Carton:
        return cls(d["code"], d.get("tare_g", 0.0))


@dataclass(slots=True)
class Priority:
    value_cents: int = 0
    customer_level: int = 0
    cold_chain: bool = False
    cutoff_at: str | None = None  # RFC 3339 UTC

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"value_cents": self.value_cents, "customer_level": self.customer_level,
                           "cold_chain": self.cold_chain, "cutoff_at": self.cutoff_at})


@dataclass(slots=True)
class Pick:
    """One confirmed quantity of one lot on a line (a line picked from two lots has two picks)."""

    qty: int
    operator_id: str
    via: str
    at: str
    gtin: str | None = None
    lot: str | None = None
    expiry: str | None = None
    serials: list[str] = field(default_factory=list)
    location: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"qty": self.qty, "operator_id": self.operator_id, "via": self.via, "at": self.at,
                           "gtin": self.gtin, "lot": self.lot, "expiry": self.expiry,
                           "serials": self.serials or None, "location": self.location})

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Pick:
        return cls(d["qty"], d["operator_id"], d["via"], d["at"], d.get("gtin"), d.get("lot"), d.get("expiry"),
                   list(d.get("serials", [])), d.get("location"))


@dataclass(slots=True)
class Line:
    line_no: int
    sku: str
    qty: int
    picks: list[Pick] = field(default_factory=list)
    short: int = 0
    done: bool = False
    location: str | None = None  # where it is picked from (set when its task is planned)
    item: dict[str, Any] | None = None  # the item in hand: last accepted scan (gtin, lot, expiry, serial)
    located: bool = False  # its location was scanned
    done_at: str | None = None
    done_mono: float | None = None  # for the undo window (not persisted: after a restart, the wall clock)

    @property
    def picked(self) -> int:
        return sum(p.qty for p in self.picks)

    @property
    def remaining(self) -> int:
        return max(self.qty - self.picked - self.short, 0) if not self.done else 0

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"line_no": self.line_no, "sku": self.sku, "qty": self.qty,
                           "picks": [p.to_doc() for p in self.picks], "short": self.short, "done": self.done,
                           "location": self.location, "item": self.item, "located": self.located or None,
                           "done_at": self.done_at})

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Line:
        return cls(d["line_no"], d["sku"], d["qty"], [Pick.from_doc(p) for p in d.get("picks", [])],
                   d.get("short", 0), d.get("done", False), d.get("location"), d.get("item"),
                   bool(d.get("located", False)), d.get("done_at"))


@dataclass(slots=True)
class Order:
    order_id: str
    channel: str
    priority: Priority
    lines: list[Line]
    received_at: str
    state: str = RECEIVED
    resume_state: str | None = None  # the state an `on_hold` order returns to on release
    holds: list[str] = field(default_factory=list)  # "dispatch" and/or "review"
    updated_seq: int = 0
    tote: str | None = None  # the tote bound last (what the packing station and `pack.verified` show)
    cancel_reason: str | None = None
    review: dict[str, Any] | None = None  # the pending weight review, if any
    packing: dict[str, Any] | None = None  # station progress while `packing`
    # Every tote bound to the order, in binding order: one per zone's task (or more, when one filled up).
    # All of them stay the order's until it is packed or cancelled, then all are free again.
    totes: list[str] = field(default_factory=list)

    def line(self, line_no: int) -> Line | None:
        for ln in self.lines:
            if ln.line_no == line_no:
                return ln
        return None

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({
            "order_id": self.order_id, "channel": self.channel, "priority": self.priority.to_doc(),
            "lines": [ln.to_doc() for ln in self.lines], "received_at": self.received_at, "state": self.state,
            "resume_state": self.resume_state, "holds": self.holds or None, "updated_seq": self.updated_seq,
            "tote": self.tote, "cancel_reason": self.cancel_reason, "review": self.review,
            "packing": self.packing, "totes": self.totes or None,
        })

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Order:
        p = d.get("priority", {})
        return cls(
            d["order_id"], d.get("channel", ""),
            Priority(p.get("value_cents", 0), p.get("customer_level", 0), p.get("cold_chain", False),
                     p.get("cutoff_at")),
            [Line.from_doc(x) for x in d["lines"]], d["received_at"], d["state"], d.get("resume_state"),
            list(d.get("holds", [])), d.get("updated_seq", 0), d.get("tote"), d.get("cancel_reason"),
            d.get("review"), d.get("packing"),
            # Documents written before `totes` existed carry only the last tote.
            list(d.get("totes") or ([d["tote"]] if d.get("tote") else [])),
        )


@dataclass(slots=True)
class Hold:
    scope: str  # "order" | "zone" | "operator" | "all"
    id: str
    by: str
    at: str

    @property
    def key(self) -> str:
        """Where the floor keeps it; one key for every `all` hold (see `holds.hold_key`)."""
        return "all:*" if self.scope == "all" else f"{self.scope}:{self.id}"

    def to_doc(self) -> dict[str, Any]:
        return {"scope": self.scope, "id": self.id, "by": self.by, "at": self.at}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Hold:
        return cls(d["scope"], d["id"], d["by"], d["at"])


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    code: str
    severity: str  # "info" | "warning" | "critical"
    message: str
    raised_at: str

    def to_doc(self) -> dict[str, Any]:
        return {"alarm_id": self.alarm_id, "code": self.code, "severity": self.severity,
                "message": self.message, "raised_at": self.raised_at}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Alarm:
        return cls(d["alarm_id"], d["code"], d["severity"], d["message"], d["raised_at"])


# Task states.
TASK_OPEN = "open"  # waiting for a picker
TASK_ASSIGNED = "assigned"
TASK_STARTED = "started"  # first accepted scan
TASK_COMPLETED = "completed"
TASK_CANCELLED = "cancelled"
TASK_ACTIVE = (TASK_OPEN, TASK_ASSIGNED, TASK_STARTED)


@dataclass(slots=True)
class Task:
    """An order's lines in one zone: the unit of work one picker gets."""

    task_id: str
    order_id: str
    zone: str
    line_nos: list[int]
    created_at: str
    state: str = TASK_OPEN
    operator_id: str | None = None
    assigned_at: str | None = None
    assigned_mono: float | None = None  # monotonic time of assignment: escalation timers never use the wall clock
    started_at: str | None = None
    completed_at: str | None = None
    escalation: int = 0
    reassignments: int = 0
    strategy: str | None = None
    tote: str | None = None
    cold_chain: bool = False
    # The dispatch decision that put the task where it is (assigned, moved, taken back, moved by hand): its
    # score, reason and the pickers it passed over with theirs. Kept with the task so the supervisor page
    # explains what was decided then, not what the engine would decide now (see `tasks.decision_doc`).
    decision: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.state in TASK_ACTIVE

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({
            "task_id": self.task_id, "order_id": self.order_id, "zone": self.zone, "line_nos": self.line_nos,
            "created_at": self.created_at, "state": self.state, "operator_id": self.operator_id,
            "assigned_at": self.assigned_at, "started_at": self.started_at, "completed_at": self.completed_at,
            "escalation": self.escalation, "reassignments": self.reassignments, "strategy": self.strategy,
            "tote": self.tote, "cold_chain": self.cold_chain, "decision": self.decision,
        })

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Task:
        return cls(
            d["task_id"], d["order_id"], d["zone"], list(d["line_nos"]), d["created_at"], d.get("state", TASK_OPEN),
            d.get("operator_id"), d.get("assigned_at"), None, d.get("started_at"), d.get("completed_at"),
            d.get("escalation", 0), d.get("reassignments", 0), d.get("strategy"), d.get("tote"),
            d.get("cold_chain", False), d.get("decision"),
        )


@dataclass(slots=True, frozen=True)
class At:
    """One reading of both clocks: `wall` (UTC) stamps what happened, `mono` drives timers."""

    wall: Any  # datetime; Any keeps this module free of the datetime import cycle in type checkers
    mono: float

    @property
    def ts(self) -> str:
        from gateway.clock import rfc3339

        return rfc3339(self.wall)


@dataclass(slots=True)
class Session:
    """An operator logged in on one device (a scanner, or the PDA / packing page)."""

    device_id: str
    operator_id: str
    station: str  # "pick" or a packing station id
    since: str
    kind: str = "scanner"  # "scanner" | "page"
    last_mono: float = 0.0  # last activity, for the idle logout (not persisted: restarts count as activity)

    def to_doc(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "operator_id": self.operator_id, "station": self.station,
                "since": self.since, "kind": self.kind}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Session:
        return cls(d["device_id"], d["operator_id"], d["station"], d["since"], d.get("kind", "scanner"))


@dataclass(slots=True)
class PickerState:
    """What the floor remembers of a picker between scans."""

    operator_id: str
    on_break: bool = False
    slots: dict[str, int] = field(default_factory=dict)  # zone -> light slot (colour and pattern)
    in_hand: tuple[str, int] | None = None  # (task_id, line_no) whose location was scanned last
    # What others did to this picker's work, shown on their PDA until their next accepted scan or closed line:
    # orders cancelled while their units were in the picker's tote (what to put back; the supervisor's "return
    # to stock" keeps the full list), and lines a supervisor undid (`undone_line`, `by`: take out, pick again).
    put_back: list[dict[str, Any]] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"operator_id": self.operator_id, "on_break": self.on_break, "slots": self.slots,
                           "in_hand": list(self.in_hand) if self.in_hand else None,
                           "put_back": self.put_back or None})

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> PickerState:
        ih = d.get("in_hand")
        return cls(d["operator_id"], d.get("on_break", False), dict(d.get("slots", {})),
                   (ih[0], int(ih[1])) if ih else None, list(d.get("put_back") or []))


@dataclass(slots=True)
class Station:
    """A packing station's work in progress: the order being verified and what has been scanned."""

    station: str
    order_id: str | None = None
    operator_id: str | None = None
    tote: str | None = None
    carton: str | None = None
    scanned: dict[str, int] = field(default_factory=dict)  # item key -> units scanned
    items: list[dict[str, Any]] = field(default_factory=list)  # what was scanned, for pack.verified
    awaiting_weight: bool = False

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"station": self.station, "order_id": self.order_id, "operator_id": self.operator_id,
                           "tote": self.tote, "carton": self.carton, "scanned": self.scanned, "items": self.items,
                           "awaiting_weight": self.awaiting_weight})

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Station:
        return cls(d["station"], d.get("order_id"), d.get("operator_id"), d.get("tote"), d.get("carton"),
                   dict(d.get("scanned", {})), list(d.get("items", [])), d.get("awaiting_weight", False))


@dataclass(slots=True)
class DeviceState:
    device_id: str
    kind: str
    online: bool
    detail: str = ""
    since_mono: float = 0.0
    errors: int = 0
    alarmed: bool = False
