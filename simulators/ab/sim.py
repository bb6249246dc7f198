"""A discrete-event floor that runs the production dispatch engine on a simulated clock.

The simulation is only the floor: pickers walking, scanning, taking breaks, one slowing down, one whose
scanner fails. Every routing choice is the engine's (`DispatchEngine`, the same object the gateway
uses), configured either with the "health" strategy or with "round_robin" (static routing: next picker
of the zone in turn, regardless of load or health, never moved). The floor acts on the decisions exactly
as the gateway would: an Assign/Reassign puts the task in the picker's hands (their lights), a Requeue
takes it back, a level-2 escalation brings a supervisor after `supervisor_delay_s`, who takes the task
out of dispatch and picks it.

A picker works the tasks in their hands one at a time, in the order they got them: a walk and first scan,
then one pick per line. A picker due for a break finishes the task they started first.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from gateway.domain.dispatch import (
    HEALTH,
    OPENED,
    ABSplit,
    Assign,
    BreakerChange,
    Decision,
    DispatchEngine,
    DispatchSettings,
    Escalate,
    PickerView,
    Reassign,
    Requeue,
    StrategyTable,
    TaskView,
)
from simulators.ab.scenario import Scenario, SimOrder

RETRY_S = 30.0  # a picker whose scan was rejected tries again after this long
REJECT_PENALTY_S = 10.0
LATE_WAIT_S = 1800.0


@dataclass(slots=True)
class _Task:
    task_id: str
    order: SimOrder
    zone: str
    lines: int
    created: float
    started: float | None = None
    completed: float | None = None
    holder: str | None = None  # the picker whose hands it is in (None: queued or with the supervisor)


@dataclass(slots=True)
class _Picker:
    operator_id: str
    zone: str
    speed: float
    rng: random.Random
    hands: list[str] = field(default_factory=list)
    current: str | None = None  # the task being walked to or picked
    started: bool = False  # `current` has had its first scan
    lines_left: int = 0
    token: int = 0  # bumped to cancel the pending step
    busy: bool = False  # a step is scheduled
    on_break: bool = False
    break_due: bool = False


@dataclass(slots=True)
class RunResult:
    seed: int
    strategy: str
    orders: int
    done: int
    mean_lead_min: float
    p95_lead_min: float
    late: int
    waited_30: int
    tasks: int
    breaker_opened: int = 0
    moved: int = 0
    level2: int = 0
    end_h: float = 0.0
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        return {"seed": self.seed, "strategy": self.strategy, "orders": self.orders, "done": self.done,
                "mean_lead_min": round(self.mean_lead_min, 1), "p95_lead_min": round(self.p95_lead_min, 1),
                "late": self.late, "waited_30": self.waited_30, "tasks": self.tasks,
                "breaker_opened": self.breaker_opened, "moved": self.moved, "level2": self.level2,
                "end_h": round(self.end_h, 2)}


class Floor:
    def __init__(self, sc: Scenario, strategy: str = HEALTH, *, ab_share: float = 0.0,
                 settings: DispatchSettings | None = None, supervisor_delay_s: float = 300.0,
                 horizon_s: float = 72 * 3600.0) -> None:
        self.sc = sc
        table = StrategyTable(strategy if ab_share == 0 else HEALTH,
                              ab=ABSplit("round_robin", ab_share, salt="sim") if ab_share > 0 else None)
        self.label = strategy if ab_share == 0 else f"ab:{ab_share:g}"
        self.engine = DispatchEngine(settings, strategies=table, start=0.0)
        self.supervisor_delay_s = supervisor_delay_s
        self.horizon_s = horizon_s
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._n = 0
        self._tick_at = float("inf")
        self.tasks: dict[str, _Task] = {}
        self.order_tasks: dict[str, list[_Task]] = {}
        self.pickers = {p.operator_id: _Picker(p.operator_id, p.zone, p.speed,
                                               random.Random(f"{sc.seed}/{p.operator_id}"))
                        for p in sc.pickers}
        self.supervisor_free_at = 0.0
        self.breaker_opened = self.moved = self.level2 = 0

    # -- the event loop -----------------------------------------------------------------------------
    def at(self, t: float, fn: Callable[[], None]) -> None:
        self._n += 1
        heapq.heappush(self._events, (t, self._n, fn))

    def run(self) -> RunResult:
        sc = self.sc
        for p in sc.pickers:
            self.engine.set_picker(PickerView(p.operator_id, frozenset({p.zone})), 0.0)
            self.at(p.break_at_s, partial(self._break_due, p.operator_id))
        for o in sc.orders:
            self.at(o.arrival_s, partial(self._arrive, o))
        while self._events:
            t, _, fn = heapq.heappop(self._events)
            if t > self.horizon_s:
                break
            self.now = t
            fn()
            self._tick()
        return self._result()

    def _tick(self) -> None:
        for d in self.engine.tick(self.now, self.sc.wall(self.now)):
            self._apply(d)
        due = max(self.engine.next_due(), self.now + 1e-3)
        if due < self._tick_at or self._tick_at <= self.now:
            self._tick_at = due
            self.at(due, lambda: None)  # wakes the loop; the tick after every event does the work

    # -- decisions, as the gateway applies them -----------------------------------------------------
    def _apply(self, d: Decision) -> None:
        if isinstance(d, Assign):
            self._give(d.task_id, d.operator_id)
        elif isinstance(d, Reassign):
            self.moved += 1
            self._take_back(d.task_id, d.from_operator)
            self._give(d.task_id, d.to_operator)
        elif isinstance(d, Requeue):
            self.moved += 1
            self._take_back(d.task_id, d.from_operator)
        elif isinstance(d, Escalate):
            if d.level == 2:
                self.level2 += 1
                self.at(self.now + self.supervisor_delay_s, partial(self._supervisor, d.task_id))
        elif isinstance(d, BreakerChange) and d.state == OPENED:
            self.breaker_opened += 1

    def _give(self, task_id: str, op: str) -> None:
        task = self.tasks[task_id]
        task.holder = op
        p = self.pickers[op]
        p.hands.append(task_id)
        self._work(p)

    def _take_back(self, task_id: str, op: str) -> None:
        p = self.pickers[op]
        if task_id in p.hands:
            p.hands.remove(task_id)
        self.tasks[task_id].holder = None
        if p.current == task_id:  # walking to it, not yet scanned: the walk is wasted
            p.current, p.busy = None, False
            p.token += 1
            self._work(p)

    def _supervisor(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.started is not None:
            return
        self.engine.on_task_removed(task_id, self.now)
        if task.holder is not None:
            self._take_back(task_id, task.holder)
        begin = max(self.now, self.supervisor_free_at)
        done = begin + self.sc.start_s + task.lines * self.sc.line_s
        self.supervisor_free_at = done
        task.started = begin

        def finish() -> None:
            self._complete(task)

        self.at(done, finish)

    # -- the floor ------------------------------------------------------------------------------------
    def _arrive(self, o: SimOrder) -> None:
        cutoff = self.sc.wall(o.cutoff_s)
        group = []
        for zone, n in o.lines_by_zone:
            tid = f"{o.order_id}-{zone}"
            task = _Task(tid, o, zone, n, self.now)
            self.tasks[tid] = task
            group.append(task)
            self.engine.add_task(TaskView(tid, o.order_id, zone, tuple(range(1, n + 1)), cutoff, o.cold_chain,
                                          o.value_cents, o.customer_level), self.now)
        self.order_tasks[o.order_id] = group

    def _speed(self, p: _Picker) -> float:
        sc = self.sc
        slow = p.operator_id == sc.slow_picker and sc.slow_from_s <= self.now < sc.slow_until_s
        return p.speed * (sc.slow_factor if slow else 1.0)

    def _faulty(self, p: _Picker) -> bool:
        sc = self.sc
        return p.operator_id == sc.fault_picker and sc.fault_from_s <= self.now < sc.fault_until_s

    def _duration(self, p: _Picker, mean: float) -> float:
        return p.rng.gammavariate(4.0, mean / 4.0) / self._speed(p)

    def _work(self, p: _Picker) -> None:
        """Start the next step if the picker is free to."""
        if p.busy or p.on_break:
            return
        if p.current is None:
            if p.break_due:
                self._start_break(p)
                return
            if not p.hands:
                return
            p.current, p.started = p.hands[0], False
            p.lines_left = self.tasks[p.current].lines
            self._step(p, self._duration(p, self.sc.start_s))
        else:
            self._step(p, self._duration(p, self.sc.line_s))

    def _step(self, p: _Picker, after: float) -> None:
        p.busy = True
        p.token += 1
        token = p.token
        self.at(self.now + after, lambda: self._scan(p, token))

    def _scan(self, p: _Picker, token: int) -> None:
        if token != p.token or p.current is None:
            return
        p.busy = False
        task = self.tasks[p.current]
        if self._faulty(p) or p.rng.random() < self.sc.reject_p:
            self.engine.on_reject(p.operator_id, self.now)
            self._step(p, RETRY_S if self._faulty(p) else REJECT_PENALTY_S)
            return
        if not p.started:
            p.started = True
            task.started = self.now
            self.engine.on_first_scan(task.task_id, self.now)
            self._step(p, self._duration(p, self.sc.line_s))
            return
        if p.rng.random() < self.sc.short_p:
            self.engine.on_short(p.operator_id, self.now)
        self.engine.on_line_done(task.task_id, self.now)
        p.lines_left -= 1
        if p.lines_left > 0:
            self._step(p, self._duration(p, self.sc.line_s))
            return
        p.hands.remove(task.task_id)
        p.current = None
        self.engine.on_task_completed(task.task_id, self.now)
        self._complete(task)
        self._work(p)

    def _complete(self, task: _Task) -> None:
        task.completed = self.now
        task.holder = None

    def _break_due(self, op: str) -> None:
        p = self.pickers[op]
        p.break_due = True
        if p.current is not None and not p.started:  # not yet scanned: drop the walk and go
            p.current, p.busy = None, False
            p.token += 1
        if p.current is None:
            self._start_break(p)

    def _start_break(self, p: _Picker) -> None:
        p.break_due, p.on_break = False, True
        self.engine.on_break_start(p.operator_id, self.now)
        self.at(self.now + self.sc.break_s, lambda: self._end_break(p))

    def _end_break(self, p: _Picker) -> None:
        p.on_break = False
        self.engine.on_break_end(p.operator_id, self.now)
        self._work(p)

    # -- figures --------------------------------------------------------------------------------------
    def _result(self) -> RunResult:
        leads: list[float] = []
        late = done = 0
        for o in self.sc.orders:
            group = self.order_tasks.get(o.order_id, [])
            ends = [t.completed for t in group]
            if group and all(e is not None for e in ends):
                end = max(e for e in ends if e is not None)
                done += 1
            else:
                end = self.now  # unfinished at the horizon: counted with the time so far, and late
            leads.append((end - o.arrival_s) / 60.0)
            late += end > o.cutoff_s or not group
        waited = sum(1 for t in self.tasks.values()
                     if (t.started if t.started is not None else self.now) - t.created > LATE_WAIT_S)
        leads.sort()
        end_h = max((t.completed or 0.0) for t in self.tasks.values()) / 3600.0 if self.tasks else 0.0
        figs = {k: {"tasks": f.tasks, "mean_time_to_start_s": round(f.mean_time_to_start_s, 1),
                    "lines_per_min": round(f.lines_per_min, 2)}
                for k, f in self.engine.strategy_figures().items() if f.tasks}
        return RunResult(self.sc.seed, self.label, len(self.sc.orders), done,
                         sum(leads) / len(leads) if leads else 0.0, _pct(leads, 0.95), late, waited,
                         len(self.tasks), self.breaker_opened, self.moved, self.level2, end_h, figs)


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
