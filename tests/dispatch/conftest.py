"""A small floor around the real engine on a moved clock: no simulation, just the calls the gateway makes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest

from gateway.clock import ManualClock
from gateway.domain.dispatch import (
    Assign,
    Decision,
    DispatchEngine,
    DispatchSettings,
    EscalationSchedule,
    LearnedThresholds,
    PickerView,
    Reassign,
    StrategyTable,
    TaskView,
)


class Rig:
    def __init__(self, settings: DispatchSettings | None = None, *, strategies: StrategyTable | None = None,
                 schedule: EscalationSchedule | None = None, learned: LearnedThresholds | None = None) -> None:
        self.clock = ManualClock()
        self.engine = DispatchEngine(settings, strategies=strategies, schedule=schedule, learned=learned,
                                     start=self.clock.monotonic())
        self.log: list[Decision] = []

    @property
    def t(self) -> float:
        return self.clock.monotonic()

    def picker(self, op: str, zones: Iterable[str] = ("a",), *, on_break: bool = False, held: bool = False) -> None:
        self.engine.set_picker(PickerView(op, frozenset(zones), on_break=on_break, held=held), self.t)

    def task(self, task_id: str, zone: str = "a", lines: int = 2, *, order_id: str | None = None,
             cutoff_at: datetime | None = None, cold_chain: bool = False, value_cents: int = 0,
             customer_level: int = 0, held: bool = False) -> None:
        self.engine.add_task(TaskView(task_id, order_id or f"O-{task_id}", zone, tuple(range(1, lines + 1)),
                                      cutoff_at, cold_chain, value_cents, customer_level, held), self.t)

    def tick(self) -> list[Decision]:
        out = self.engine.tick(self.t, self.clock.now())
        self.log.extend(out)
        return out

    def advance(self, seconds: float, step: float = 10.0) -> list[Decision]:
        """Move the clock, ticking every `step` seconds as the gateway's timer would."""
        out: list[Decision] = []
        left = seconds
        while left > 1e-9:
            d = min(step, left)
            self.clock.advance(d)
            left -= d
            out.extend(self.tick())
        return out

    def holder(self, task_id: str) -> str | None:
        st = self.engine.task_status(task_id)
        return None if st is None else st.operator_id

    def breaker(self, op: str) -> str:
        return next(p.breaker for p in self.engine.pickers() if p.operator_id == op)

    def index(self, op: str) -> float:
        return next(p.score for p in self.engine.pickers() if p.operator_id == op)


def given(decisions: Iterable[Decision]) -> list[tuple[str, str]]:
    """(task, picker) for every assignment and move, in order."""
    out = []
    for d in decisions:
        if isinstance(d, Assign):
            out.append((d.task_id, d.operator_id))
        elif isinstance(d, Reassign):
            out.append((d.task_id, d.to_operator))
    return out


@pytest.fixture
def rig() -> Rig:
    return Rig()
