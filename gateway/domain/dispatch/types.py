"""What goes into the dispatch engine (plain views) and what comes out (decisions).

The engine never touches the journal, MQTT or the floor's own classes: the gateway turns its state into
these views, applies the decisions the engine returns and emits the SPEC events they map to
(`to_event()`), so the rules can be tested and simulated on plain values with a moved clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from gateway.clock import parse_rfc3339
from gateway.domain.model import Priority, Task

HEALTH = "health"
ROUND_ROBIN = "round_robin"
STRATEGIES = (HEALTH, ROUND_ROBIN)

OPENED, HALF_OPEN, CLOSED = "opened", "half_open", "closed"
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class PickerView:
    """A picker as the floor sees them. `logged_in` means on a device of station `pick` or the PDA page."""

    operator_id: str
    zones: frozenset[str]
    logged_in: bool = True
    on_break: bool = False
    held: bool = False  # an operator hold: no new tasks


@dataclass(frozen=True, slots=True)
class TaskView:
    """An order's lines in one zone. Tasks of one order in several zones are assigned on their own, each to a
    picker of its zone; they are linked only by the zone handoff (see `engine`): once one of them is done, the
    others move up their zones' queues. `handoff_zone` restores that after a restart (the engine forgets
    completed tasks, the gateway does not)."""

    task_id: str
    order_id: str
    zone: str
    line_nos: tuple[int, ...] = (1,)
    cutoff_at: datetime | None = None  # timezone-aware UTC
    cold_chain: bool = False
    value_cents: int = 0
    customer_level: int = 0
    held: bool = False  # its order is held (on hold when the task was made or restored): released with the order
    category: str = ""  # groups tasks for learned escalation thresholds; default: zone and cold chain
    handoff_zone: str = ""  # a zone where this task's order's part is already done ("": none)

    @property
    def lines(self) -> int:
        return len(self.line_nos)

    @property
    def group(self) -> str:
        return self.category or f"{self.zone}:{'cold' if self.cold_chain else 'normal'}"


def task_view(task: Task, priority: Priority, *, held: bool = False, handoff_zone: str = "") -> TaskView:
    """The view of one of the lead's `Task`s, with its order's priority (and, after a restart, a zone where
    its order's part is already done)."""
    cutoff = parse_rfc3339(priority.cutoff_at) if priority.cutoff_at else None
    return TaskView(task.task_id, task.order_id, task.zone, tuple(task.line_nos), cutoff,
                    task.cold_chain or priority.cold_chain, priority.value_cents, priority.customer_level, held,
                    handoff_zone=handoff_zone)


class Candidate(NamedTuple):
    """One picker considered for a task and why they were or were not chosen. (A named tuple: one is made
    per picker per decision, and a frozen dataclass costs several times more to build.)"""

    operator_id: str
    eligible: bool
    score: float | None  # None when not eligible
    picker_index: float  # the availability index (`index` would shadow tuple.index)
    load: int
    note: str


@dataclass(frozen=True, slots=True)
class Choice:
    """The outcome of ranking the pickers for one task, applied or not."""

    task_id: str
    strategy: str
    operator_id: str | None
    score: float
    reason: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Assign:
    task_id: str
    order_id: str
    operator_id: str
    zone: str
    line_nos: tuple[int, ...]
    score: float
    reason: str
    strategy: str
    candidates: tuple[Candidate, ...]

    def to_event(self) -> tuple[str, dict[str, Any]] | None:
        return "task.assigned", {"task_id": self.task_id, "operator_id": self.operator_id, "zone": self.zone,
                                 "lines": list(self.line_nos), "score": round(self.score, 1),
                                 "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Reassign:
    """A task moved from one picker to another. `level` is 1 when it went to a backup picker."""

    task_id: str
    order_id: str
    from_operator: str
    to_operator: str
    zone: str
    line_nos: tuple[int, ...]
    score: float
    reason: str
    strategy: str
    level: int
    candidates: tuple[Candidate, ...]

    def to_event(self) -> tuple[str, dict[str, Any]] | None:
        return "task.reassigned", {"task_id": self.task_id, "from_operator": self.from_operator,
                                   "to_operator": self.to_operator, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Requeue:
    """A task taken back from a picker who cannot start it (break, logout, breaker open) to wait for the
    next eligible picker. No SPEC event of its own: its next assignment comes as a `Reassign` from this
    picker. The gateway turns the task's lights off for the old picker."""

    task_id: str
    order_id: str
    from_operator: str
    zone: str
    reason: str

    def to_event(self) -> tuple[str, dict[str, Any]] | None:
        return None


@dataclass(frozen=True, slots=True)
class Escalate:
    """Level 1: a backup picker gets the task (a `Reassign` with level 1 follows). Level 2: a supervisor
    must act; the gateway raises an alarm."""

    task_id: str
    order_id: str
    zone: str
    level: int
    operator_id: str | None
    reason: str

    def to_event(self) -> tuple[str, dict[str, Any]] | None:
        return "task.escalated", {"task_id": self.task_id, "level": self.level, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """`opened`: no new tasks for the picker (the gateway also raises an alarm). `half_open`: one trial task
    allowed (no SPEC event). `closed`: back to normal."""

    operator_id: str
    state: str  # OPENED | HALF_OPEN | CLOSED
    scores: tuple[float, ...]
    reason: str

    def to_event(self) -> tuple[str, dict[str, Any]] | None:
        if self.state == HALF_OPEN:
            return None
        kind = "dispatch.breaker_opened" if self.state == OPENED else "dispatch.breaker_closed"
        return kind, {"operator_id": self.operator_id, "scores": [round(s, 1) for s in self.scores]}


Decision = Assign | Reassign | Requeue | Escalate | BreakerChange


@dataclass(frozen=True, slots=True)
class PickerStatus:
    """For telemetry (`pickers` of SPEC §1) and the supervisor page."""

    operator_id: str
    score: float
    breaker: str
    open_tasks: int
    available: bool


@dataclass(frozen=True, slots=True)
class StrategyFigures:
    """Per-strategy figures of the live A/B: tasks assigned, mean time from task creation to first scan,
    lines done, and lines per minute of picking time (first scan to completion) of its completed tasks,
    i.e. how fast the pickers it chose worked (a raw lines/min would only mirror the share)."""

    strategy: str
    tasks: int
    started: int
    mean_time_to_start_s: float
    lines: int
    lines_per_min: float
