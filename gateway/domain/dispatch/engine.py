"""The dispatch engine: who gets which task, when a task is moved, when a picker is rested.

The gateway tells the engine what happens on the floor (pickers logging in, taking breaks, first scans,
lines done, rejected scans) and calls `tick(t, now)`; `tick` returns the decisions to apply, in order.
Every decision is final inside the engine the moment it is returned: the gateway applies it and emits
its SPEC event (`decision.to_event()`), or, if it cannot, tells the engine (`on_task_removed`).

Waiting tasks queue per zone, ordered by cutoff (earliest first; none last), then cold chain first, then
the zone handoff, then order value and customer level (highest first), then arrival.

Zone handoff: an order with lines in several zones has one task per zone (one tote each), all released at
once and each queued, assigned, moved and escalated in its own zone; the order is `picked` only when the
gateway has all of them done. What links them is the queue: once one zone's part of an order is done (its
tote is on its way to packing), the order's parts still waiting in other zones go ahead of the orders of
the same cutoff and cold chain class, so the parts of an order meet at packing instead of one tote waiting
there for the rest. Parts already with a picker stay where they are. SPEC has no event for it: it shows in
the order of the `task.assigned` events and in their `reason`. (Not a sequential release: with one tote per
zone, holding a part back until another is done would only make the order later. Nor a push at the first
scan: on the A/B floor that delayed other orders more than it sped up the split ones.)

Holds (`set_hold`) stop assignment within their scope: a held task or order is not assigned and never
escalated (its escalation timer restarts when the hold ends); a held zone or "all" stops assignment
and escalation in that scope (timers restart when it ends, too); a held operator gets no new tasks (their
unstarted tasks still escalate, since the work must get done).

Speed: choosing a picker looks only at the task's zone's logged-in pickers (load is a counter per
picker), queues are heaps, timers are a heap; nothing scans the open tasks.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from gateway.domain.dispatch.breaker import STATE_HALF_OPEN, STATE_OPEN, Breaker
from gateway.domain.dispatch.escalation import EscalationSchedule, LearnedThresholds
from gateway.domain.dispatch.index import IndexBook, IntervalStats
from gateway.domain.dispatch.settings import DispatchSettings
from gateway.domain.dispatch.strategy import Figures, StrategyTable
from gateway.domain.dispatch.types import (
    CLOSED,
    HALF_OPEN,
    HEALTH,
    OPENED,
    ROUND_ROBIN,
    STRATEGIES,
    Assign,
    BreakerChange,
    Candidate,
    Choice,
    Decision,
    Escalate,
    PickerStatus,
    PickerView,
    Reassign,
    Requeue,
    StrategyFigures,
    TaskView,
)

QUEUED, ASSIGNED, STARTED = "queued", "assigned", "started"
HOLD_SCOPES = ("task", "order", "zone", "operator", "all")
_INF = float("inf")
_UNKNOWN = (_INF,)  # the urgency of a task dispatch does not know


class DispatchError(ValueError):
    """A call the engine cannot honour (unknown scope, a task added twice); nothing was changed."""


@dataclass(frozen=True, slots=True)
class TaskStatus:
    task_id: str
    state: str  # queued | assigned | started
    operator_id: str | None
    strategy: str
    escalation: int
    reassignments: int
    deadline: float | None  # monotonic time of the next escalation step, if armed
    threshold_s: float | None


@dataclass(slots=True)
class _Task:
    view: TaskView
    strategy: str
    key: tuple[float, int, int, int, int, int]  # cutoff, cold chain, 0 if handed off, -value, -level, arrival
    created: float
    state: str = QUEUED
    operator_id: str | None = None
    prev_operator: str | None = None
    assigned_at: float = 0.0
    started_at: float = 0.0
    gen: int = 0  # bumped on every state change: stale heap entries are recognised by it
    ladder: int = 0  # the next escalation step: 0 reassign, 1 backup (level 1), 2 supervisor (level 2), 3 done
    escalation: int = 0
    reassignments: int = 0
    threshold_s: float = 0.0
    threshold_src: str = ""
    deadline: float | None = None
    held_seen: bool = False
    absence_told: bool = False  # the supervisor was told its (started) picker logged out and did not come back
    parked: bool = False
    # When the current wait for a first scan began. A task handed back and forth (a picker's breaker opened,
    # they went on break) keeps its clock: work that does not move escalates however often it moved.
    unstarted_since: float | None = None


@dataclass(slots=True)
class _Picker:
    view: PickerView
    breaker: Breaker
    index: float = 100.0
    load: int = 0
    last_assigned: float = -_INF
    tasks: dict[str, None] = field(default_factory=dict)  # in hand, in order of assignment

    @property
    def available(self) -> bool:
        return self.view.logged_in and not self.view.on_break


class DispatchEngine:
    def __init__(self, settings: DispatchSettings | None = None, *, strategies: StrategyTable | None = None,
                 schedule: EscalationSchedule | None = None, learned: LearnedThresholds | None = None,
                 start: float = 0.0) -> None:
        s = self.settings = settings or DispatchSettings()
        self.book = IndexBook(s.index_interval_s, s.index_window, s.ref_line_s, s.ref_first_scan_s, start)
        self.strategies = strategies or StrategyTable()
        self.schedule = schedule or EscalationSchedule(s.escalate_after_min, s.escalate_cold_chain_after_min)
        self.learned = learned
        self.figures = Figures()
        self._now = start
        self._pickers: dict[str, _Picker] = {}
        self._zone_pickers: dict[str, list[str]] = {}  # logged-in pickers per zone, sorted
        self._tasks: dict[str, _Task] = {}
        self._order_tasks: dict[str, set[str]] = {}
        self._queues: dict[tuple[str, str], list[tuple[float, int, int, int, int, int, int, str]]] = {}
        self._handoff: dict[str, str] = {}  # order -> the zone where a part of it was done first
        self._parked: dict[str, _Task] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._to_arm: list[_Task] = []
        self._arm_queued: list[_Task] = []  # waiting tasks whose wait for a picker is timed too
        self._left_behind: list[_Task] = []  # started tasks whose picker logged out: timed at the next tick
        self._dirty: set[str] = set()
        self._pending: list[Decision] = []
        self._open: set[str] = set()
        self._rr: dict[str, int] = {}
        self._seq = itertools.count()
        self._held_tasks: set[str] = set()
        self._held_orders: set[str] = set()
        self._held_zones: set[str] = set()
        self._held_ops: set[str] = set()
        self._hold_all = False
        self._no_new_work = False
        self._cap_notes: dict[tuple[int, int], str] = {}

    # -- pickers ------------------------------------------------------------------------------------
    def set_picker(self, view: PickerView, t: float) -> None:
        """The picker's current state (login, zones, break, operator hold). Taking a picker off the floor
        (break, logout) gives their unstarted tasks back to the queue (see the settings)."""
        t = self._time(t)
        op = view.operator_id
        p = self._pickers.get(op)
        old = p.view if p is not None else PickerView(op, frozenset(), logged_in=False)
        if p is None:
            s = self.settings
            p = self._pickers[op] = _Picker(view, Breaker(s.breaker_threshold, s.breaker_consecutive,
                                                          s.breaker_cooldown_s))
        p.view = view
        for z in old.zones if old.logged_in else ():
            if not view.logged_in or z not in view.zones:
                lst = self._zone_pickers.get(z, [])
                if op in lst:
                    lst.remove(op)
                self._dirty.add(z)
        for z in view.zones if view.logged_in else ():
            lst = self._zone_pickers.setdefault(z, [])
            if op not in lst:
                lst.append(op)
                lst.sort()
            self._dirty.add(z)
        if view.logged_in != old.logged_in:
            (self.book.on_login if view.logged_in else self.book.on_logout)(op, t)
        if view.on_break != old.on_break:
            (self.book.on_break_start if view.on_break else self.book.on_break_end)(op, t)
        if view.held:
            self._held_ops.add(op)
        else:
            self._held_ops.discard(op)
        s = self.settings
        was = old.logged_in and not old.on_break
        if was and not view.logged_in and s.requeue_on_logout:
            self._requeue_picker(p, t, "picker logged out")
        elif was and view.logged_in and view.on_break and s.requeue_on_break:
            self._requeue_picker(p, t, "picker on break")
        if old.logged_in and not view.logged_in:
            self._started_left_behind(p)
        elif view.logged_in and not old.logged_in:
            for tid in p.tasks:  # back: a later absence is told again
                self._tasks[tid].absence_told = False

    def _started_left_behind(self, p: _Picker) -> None:
        """A picker logged out with started work: it stays theirs (units are in their tote), but nobody works
        on it now and no timer watched a started task, so it waited silently for good (a PDA gone flat on a
        peak day). It is timed now (armed at the next tick, which knows the time of day): if they are not back
        within an escalation period, the supervisor is told (level 2). A picker who logs in again in time (a
        battery swapped, a page after a restart) raises nothing."""
        for tid in p.tasks:
            ts = self._tasks[tid]
            if ts.state == STARTED and not ts.absence_told:
                self._left_behind.append(ts)

    def time_left_behind(self, task_id: str) -> None:
        """After a restart: a started task whose picker is not logged in is timed as if they just left."""
        ts = self._tasks.get(task_id)
        if ts is not None and ts.state == STARTED and ts.operator_id is not None:
            p = self._pickers.get(ts.operator_id)
            if p is None or not p.view.logged_in:
                self._left_behind.append(ts)

    def _escalate_left_behind(self, ts: _Task, t: float, out: list[Decision]) -> None:
        """Its timer, on a started task, runs only while its picker is away: the escalation ladder of unstarted
        work does not apply (the level a task reached before it started says nothing about this absence)."""
        op = ts.operator_id
        p = self._pickers.get(op) if op is not None else None
        if p is None or p.view.logged_in or ts.absence_told:
            return  # back in time (or already told)
        if self._put_off_by_hold(ts, t):
            return
        ts.absence_told, ts.escalation, ts.deadline = True, 2, None
        v = ts.view
        out.append(Escalate(v.task_id, v.order_id, v.zone, 2, op,
                            f"picker {op} logged out with the task started and is not back within "
                            f"{ts.threshold_s / 60:g} min ({ts.threshold_src}); supervisor needed"))

    def on_login(self, operator_id: str, zones: frozenset[str] | set[str] | list[str], t: float) -> None:
        p = self._pickers.get(operator_id)
        base = p.view if p is not None else PickerView(operator_id, frozenset())
        self.set_picker(replace(base, zones=frozenset(zones), logged_in=True), t)

    def on_logout(self, operator_id: str, t: float) -> None:
        p = self._pickers.get(operator_id)
        if p is not None:
            self.set_picker(replace(p.view, logged_in=False, on_break=False), t)

    def on_break_start(self, operator_id: str, t: float) -> None:
        p = self._pickers.get(operator_id)
        if p is not None:
            self.set_picker(replace(p.view, on_break=True), t)

    def on_break_end(self, operator_id: str, t: float) -> None:
        p = self._pickers.get(operator_id)
        if p is not None:
            self.set_picker(replace(p.view, on_break=False), t)

    # -- tasks --------------------------------------------------------------------------------------
    def add_task(self, view: TaskView, t: float, *, operator_id: str | None = None,
                 assigned_at: float | None = None, started: bool = False, strategy: str | None = None,
                 waiting_since: float | None = None, escalation: int = 0) -> None:
        """A new task waits for a picker. With `operator_id` it is an existing assignment restored after a
        restart (its escalation timer runs from `assigned_at`, default now); `strategy` restores the
        arm it was dispatched through (default: the zone's strategy or the A/B split). After a restart,
        `waiting_since` is when a waiting task began to wait and `escalation` the level it reached: a restart
        (a crash, a deploy) gave every task a fresh escalation period and sent escalated ones up the whole
        ladder again."""
        t = self._time(t)
        if view.task_id in self._tasks:
            raise DispatchError(f"task {view.task_id} is already known to dispatch; remove it first")
        if strategy is not None and strategy not in STRATEGIES:
            raise DispatchError(f"strategy: expected one of {', '.join(STRATEGIES)}; got {strategy!r}")
        strategy = strategy or self.strategies.for_task(view.task_id, view.zone)
        cutoff = view.cutoff_at.timestamp() if view.cutoff_at is not None else _INF
        if view.handoff_zone:  # restored: a part of the order in another zone is done
            self._handoff.setdefault(view.order_id, view.handoff_zone)
        handed = self.settings.zone_handoff and view.order_id in self._handoff
        key = (cutoff, 0 if view.cold_chain else 1, 0 if handed else 1, -view.value_cents, -view.customer_level,
               next(self._seq))
        ts = _Task(view, strategy, key, t)
        if escalation:
            ts.escalation, ts.ladder = min(escalation, 2), 2 if escalation == 1 else 3
        if waiting_since is not None:
            ts.unstarted_since = min(waiting_since, t)
        self._tasks[view.task_id] = ts
        self._order_tasks.setdefault(view.order_id, set()).add(view.task_id)
        if view.held:
            # Held through its order (on hold when the task was made, or restored after a restart): releasing
            # the order ends it. As a task-scope hold, an order held across a restart was never given out again.
            self._held_orders.add(view.order_id)
        if operator_id is None:
            self._push(ts)
            return
        p = self._picker(operator_id, t)
        ts.state, ts.operator_id = (STARTED if started else ASSIGNED), operator_id
        ts.assigned_at = min(assigned_at, t) if assigned_at is not None else t
        if not started:
            ts.unstarted_since = ts.assigned_at
        ts.started_at = t
        p.load += 1
        p.tasks[view.task_id] = None
        self.book.on_assigned(operator_id, t)
        if self._task_held(ts):
            self._count_held((operator_id,))
        if started:
            self.book.on_first_scan(operator_id, t)
        elif strategy == HEALTH:
            self._to_arm.append(ts)
        self.figures.assigned(strategy)

    def on_first_scan(self, task_id: str, t: float) -> bool:
        """The task's first accepted scan: it has started and will not be escalated. False if unknown."""
        t = self._time(t)
        ts = self._tasks.get(task_id)
        if ts is None or ts.operator_id is None:
            return False
        if ts.state == ASSIGNED:
            ts.state, ts.deadline, ts.started_at = STARTED, None, t
            ts.unstarted_since = None
            ts.gen += 1
            self.book.on_first_scan(ts.operator_id, t)
            if self.learned is not None:
                self.learned.record(ts.view.group, t - ts.assigned_at)
            self.figures.started(ts.strategy, t - ts.created)
        return True

    def on_line_done(self, task_id: str, t: float, lines: int = 1) -> bool:
        if lines < 1:
            raise DispatchError(f"lines done: expected a count >= 1; got {lines!r}")
        t = self._time(t)
        ts = self._tasks.get(task_id)
        if ts is None or ts.operator_id is None:
            return False
        if ts.state == ASSIGNED:
            self.on_first_scan(task_id, t)
        self.book.on_line_done(ts.operator_id, t, lines)
        self.figures.lines(ts.strategy, lines)
        return True

    def on_task_completed(self, task_id: str, t: float) -> bool:
        t = self._time(t)
        ts = self._tasks.get(task_id)
        if ts is not None and ts.state == STARTED:
            self.figures.completed(ts.strategy, ts.view.lines, t - ts.started_at)
        if ts is not None:
            self._hand_off(ts)
        return self._drop(task_id, t)

    def on_task_removed(self, task_id: str, t: float) -> bool:
        """Cancelled, or taken out of dispatch (a supervisor took it over): forget it."""
        return self._drop(task_id, self._time(t))

    def on_reject(self, operator_id: str, t: float) -> None:
        self.book.on_reject(operator_id, self._time(t))

    def on_short(self, operator_id: str, t: float) -> None:
        self.book.on_short(operator_id, self._time(t))

    # -- holds --------------------------------------------------------------------------------------
    def set_new_work(self, allowed: bool) -> None:
        """Storage full (SPEC §1): no queued task is given out, while tasks already with a picker go on. Kept apart
        from the supervisor's `all` hold, so that space returning never releases a hold a person set."""
        if self._no_new_work == (not allowed):
            return
        self._no_new_work = not allowed
        self._dirty.update(self._zone_pickers)

    @property
    def new_work_allowed(self) -> bool:
        return not self._no_new_work

    def set_hold(self, scope: str, target: str, held: bool) -> None:
        """scope: task | order | zone | operator | all (target ignored for all)."""
        if scope not in HOLD_SCOPES:
            raise DispatchError(f"hold scope: expected one of {', '.join(HOLD_SCOPES)}; got {scope!r}")
        if scope == "all":
            self._hold_all = held
            self._dirty.update(self._zone_pickers)
            self._count_held()
            return
        sets = {"task": self._held_tasks, "order": self._held_orders, "zone": self._held_zones,
                "operator": self._held_ops}
        chosen = sets[scope]
        if scope == "operator":
            p = self._pickers.get(target)
            if p is not None:  # the view and the hold set say the same thing
                p.view = replace(p.view, held=held)
                self._dirty.update(p.view.zones)
        if held:
            chosen.add(target)
            if scope != "operator":
                self._count_held()
            return
        chosen.discard(target)
        if scope != "operator":
            self._count_held()
        if scope == "zone":
            self._dirty.add(target)
        elif scope in ("task", "order"):
            ids = [target] if scope == "task" else list(self._order_tasks.get(target, ()))
            for tid in ids:
                ts = self._parked.get(tid)
                if ts is not None and not self._own_hold(ts):
                    del self._parked[tid]
                    ts.parked = False
                    ts.unstarted_since = self._now  # timed afresh from the release, as the docstring says
                    self._push(ts)

    # -- decisions ----------------------------------------------------------------------------------
    def tick(self, t: float, now: datetime) -> list[Decision]:
        """Everything due by monotonic time `t` (`now` is the UTC wall time, for time-of-day thresholds):
        closed index intervals and breaker changes, moves, escalations, then assignments of waiting tasks."""
        t = self._time(t)
        # Overdue work first: the breaker changes below may hand a task back, and a task handed back and forth
        # must still reach the end of its escalation ladder.
        early: list[Decision] = []
        self._escalate_due(t, now, early)
        self._close_intervals()
        out, self._pending = early + self._pending, []
        for op in sorted(self._open):
            p = self._pickers[op]
            if p.breaker.poll(t) == HALF_OPEN:
                self._open.discard(op)
                self.book.reset(op)
                p.index = 100.0
                out.append(BreakerChange(op, HALF_OPEN, p.breaker.last_scores,
                                         f"cool-down of {self.settings.breaker_cooldown_s:g} s over: one trial task"))
                self._dirty.update(p.view.zones)
        arm, self._to_arm = self._to_arm, []
        for ts in arm:
            if ts.state == ASSIGNED:
                self._arm(ts, now, ts.assigned_at)
        left, self._left_behind = self._left_behind, []
        for ts in left:
            if ts.state == STARTED and not ts.absence_told and self._tasks.get(ts.view.task_id) is ts:
                self._arm(ts, now, t)
        self._escalate_due(t, now, out)
        self._assign_waiting(t, now, out)
        queued, self._arm_queued = self._arm_queued, []
        armed: set[str] = set()
        for ts in queued:
            # Once per task: two pushes between ticks (a release and a zone handoff) gave it two timers of one
            # gen, and the second escalated at once after the fresh period of a hold had been used up by the first.
            if ts.state == QUEUED and self._tasks.get(ts.view.task_id) is ts and ts.view.task_id not in armed:
                armed.add(ts.view.task_id)
                base, src = self.schedule.base_s(now, ts.view.cold_chain)
                ts.threshold_s, ts.threshold_src = base, src
                since = ts.unstarted_since if ts.unstarted_since is not None else ts.created
                heapq.heappush(self._timers, (since + base, ts.gen, ts.view.task_id))
        return out

    def choose(self, task_id: str, t: float) -> Choice:
        """Who would get this task now, and why; changes nothing (for the supervisor page and benchmarks)."""
        ts = self._tasks.get(task_id)
        if ts is None:
            raise DispatchError(f"task {task_id} is not known to dispatch")
        choice = self._rr_choice(ts)[0] if ts.strategy == ROUND_ROBIN else self._rank(ts, exclude=ts.operator_id)
        stopped = self._stopped_by(ts)
        if stopped is not None and ts.state == QUEUED:
            # Nobody gets it while it is held, whatever the ranking says: the page said "p2 would get it" during
            # an "all" hold. The ranking stays, for after the hold.
            return replace(choice, operator_id=None, score=0.0, reason=f"{stopped}; {choice.reason}")
        return choice

    def _stopped_by(self, ts: _Task) -> str | None:
        """Why no picker gets this waiting task now, if it is held or new work is stopped."""
        if self._own_hold(ts):
            return "held (the task or its order)"
        if self._hold_all:
            return "everything is on hold"
        if ts.view.zone in self._held_zones:
            return f"zone {ts.view.zone} is on hold"
        if self._no_new_work:
            return "storage full: no new task is given out"
        return None

    def next_due(self) -> float:
        """The monotonic time by which `tick` should be called again even if nothing happens."""
        due = self.book.next_boundary
        if self._timers:
            due = min(due, self._timers[0][0])
        for op in self._open:
            d = self._pickers[op].breaker.due
            if d is not None:
                due = min(due, d)
        if self._dirty or self._pending or self._to_arm or self._left_behind:
            due = min(due, self._now)
        return due

    # -- reading ------------------------------------------------------------------------------------
    def pickers(self) -> list[PickerStatus]:
        return [PickerStatus(op, round(p.index, 1), p.breaker.state, p.load, p.available)
                for op, p in sorted(self._pickers.items())]

    def picker_stats(self, operator_id: str) -> IntervalStats | None:
        """The picker's figures of the last closed interval."""
        return self.book.last_stats(operator_id)

    def task_status(self, task_id: str) -> TaskStatus | None:
        ts = self._tasks.get(task_id)
        if ts is None:
            return None
        return TaskStatus(task_id, ts.state, ts.operator_id, ts.strategy, ts.escalation, ts.reassignments,
                          ts.deadline, ts.threshold_s or None)

    def urgency(self, task_id: str) -> tuple[float, ...]:
        """The task's place in dispatch's order (cutoff, cold chain, zone handoff, value, customer level,
        arrival): lower is more urgent; a task dispatch does not know comes after every one it knows."""
        ts = self._tasks.get(task_id)
        return ts.key if ts is not None else _UNKNOWN

    def queued(self, zone: str | None = None) -> int:
        return sum(1 for ts in self._tasks.values() if ts.state == QUEUED and (zone is None or ts.view.zone == zone))

    def strategy_figures(self) -> dict[str, StrategyFigures]:
        return self.figures.report()

    # -- internals: time and index ------------------------------------------------------------------
    def _time(self, t: float) -> float:
        if t > self._now:
            self._now = t
        return self._now

    def _close_intervals(self) -> None:
        for sample in self.book.advance(self._now):
            p = self._pickers.get(sample.operator_id)
            if p is None:
                continue
            p.index = sample.index
            if not sample.evidence:
                continue
            change = p.breaker.observe(sample.index, sample.t)
            scores = p.breaker.last_scores
            shown = ", ".join(f"{s:.0f}" for s in scores)
            thr = self.settings.breaker_threshold
            if change == OPENED:
                self._open.add(sample.operator_id)
                self._pending.append(BreakerChange(sample.operator_id, OPENED, scores,
                                                   f"index {shown} below {thr:g}"))
                if self.settings.requeue_on_breaker_open:
                    self._requeue_picker(p, self._now, "breaker open")
            elif change == CLOSED:
                self._pending.append(BreakerChange(sample.operator_id, CLOSED, scores,
                                                   f"trial interval index {shown} at or above {thr:g}"))
                self._dirty.update(p.view.zones)

    def reset_escalation(self, task_id: str, t: float) -> None:
        """A supervisor acted on an escalated task (held its order, gave it by hand): its ladder starts over, so
        if it then waits a whole period again (after the release, with its new picker) it is escalated again.
        Left at its end, a task held a minute and released could sit unstarted for hours without an alarm."""
        ts = self._tasks.get(task_id)
        if ts is None:
            return
        t = self._time(t)
        ts.ladder, ts.escalation = 0, 0
        if ts.strategy != HEALTH:
            return
        if ts.state == ASSIGNED:  # a fresh period from the supervisor's action (put off while a hold lasts)
            ts.assigned_at = ts.unstarted_since = t
            self._to_arm.append(ts)
        elif ts.state == QUEUED and not ts.parked:  # a parked one is armed when released (_push)
            # Pushed again under a new gen: its old timer, still live, would otherwise run beside the fresh one
            # (escalating a minute after a long hold's release, or at the old deadline after a short one).
            ts.unstarted_since = t
            self._push(ts)
        elif ts.state == STARTED and ts.absence_told:
            # Its picker is still away: told again if they are not back within a period from now (a restart
            # would have done it: the behaviour in memory and as stored must agree).
            ts.absence_told = False
            self._left_behind.append(ts)

    def restore_breaker(self, operator_id: str, opened_at: float, t: float) -> None:
        """After a restart: a breaker that was open (its alarm is still up) is open again from when it opened,
        so its cool-down runs on and its trial, once passed, clears the alarm. The engine's memory of it went
        with the process: the picker was handed work at once, and the alarm stayed up for good."""
        p = self._picker(operator_id, t)
        p.breaker.reopen(min(opened_at, self._time(t)))
        self._open.add(operator_id)
        self._dirty.update(p.view.zones)

    # -- internals: tasks ---------------------------------------------------------------------------
    def _picker(self, op: str, t: float) -> _Picker:
        p = self._pickers.get(op)
        if p is None:  # a restored task of someone not (yet) on the floor
            self.set_picker(PickerView(op, frozenset(), logged_in=False), t)
            p = self._pickers[op]
        return p

    def _push(self, ts: _Task) -> None:
        ts.state, ts.operator_id, ts.deadline = QUEUED, None, None
        ts.gen += 1
        if ts.strategy == HEALTH and ts.ladder < 3:
            self._arm_queued.append(ts)
        q = self._queues.setdefault((ts.view.zone, ts.strategy), [])
        heapq.heappush(q, (*ts.key, ts.gen, ts.view.task_id))
        self._dirty.add(ts.view.zone)

    def _drop(self, task_id: str, t: float) -> bool:
        ts = self._tasks.pop(task_id, None)
        if ts is None:
            return False
        ts.gen += 1
        self._parked.pop(task_id, None)
        self._held_tasks.discard(task_id)
        tids = self._order_tasks.get(ts.view.order_id)
        if tids is not None:
            tids.discard(task_id)
            if not tids:
                del self._order_tasks[ts.view.order_id]
                self._handoff.pop(ts.view.order_id, None)
        if ts.operator_id is not None:
            self._release(ts, t)
        return True

    def _release(self, ts: _Task, t: float) -> None:
        """Take the task out of its picker's hands (bookkeeping only)."""
        op = ts.operator_id
        assert op is not None
        p = self._pickers[op]
        p.load -= 1
        p.tasks.pop(ts.view.task_id, None)
        if p.breaker.state == STATE_HALF_OPEN and not p.tasks:
            # The trial task left them before an interval judged it (a break, a cancelled order, a move): with
            # no work there is no evidence, so the breaker stayed half-open with its trial "used" and the picker
            # got no work ever again. They get another trial.
            p.breaker.trial_used = False
        if ts.state == STARTED:
            self.book.on_task_done(op, t)
        else:
            self.book.on_unassigned(op, t)
        if self._task_held(ts):
            self._count_held((op,))
        self._dirty.update(p.view.zones)

    def _take(self, ts: _Task, op: str, t: float, now: datetime, fresh_period: bool = False) -> None:
        """Give the task to `op`. Its escalation clock runs on from when it first waited, unless this is a
        step of the escalation ladder itself (`fresh_period`: the next picker gets a full period)."""
        p = self._pickers[op]
        ts.state, ts.operator_id, ts.assigned_at = ASSIGNED, op, t
        if ts.unstarted_since is None or fresh_period:
            ts.unstarted_since = t
        p.load += 1
        p.last_assigned = t
        p.tasks[ts.view.task_id] = None
        if p.breaker.state == STATE_HALF_OPEN:
            p.breaker.trial_used = True
        self.book.on_assigned(op, t)
        if self._task_held(ts):
            self._count_held((op,))
        if ts.strategy == HEALTH:
            self._arm(ts, now, ts.unstarted_since)
        else:
            ts.gen += 1

    def _hand_off(self, ts: _Task) -> None:
        """`ts` is done: its order's parts in other zones that still wait go ahead in their queues. Parts
        already with a picker keep them; a held part takes its new place when it is released."""
        if not self.settings.zone_handoff:
            return
        oid = ts.view.order_id
        tids = self._order_tasks.get(oid, ())
        if len(tids) < 2 or oid in self._handoff:
            return
        self._handoff[oid] = ts.view.zone
        for tid in sorted(tids):
            other = self._tasks[tid]
            if other is ts or other.key[2] == 0:
                continue
            other.key = (other.key[0], other.key[1], 0, *other.key[3:])
            if other.state == QUEUED and not other.parked:
                self._push(other)  # a new heap entry at the new place; the old one is stale by its gen

    def _handoff_note(self, ts: _Task) -> str:
        """The part of an assignment's reason that says the task went ahead by the zone handoff."""
        if ts.key[2] != 0:
            return ""
        zone = self._handoff.get(ts.view.order_id, "")
        return (f"; zone handoff: order {ts.view.order_id}'s part in zone {zone or '(another)'} is done, so this "
                "part went ahead in the queue")

    def _requeue_picker(self, p: _Picker, t: float, why: str) -> None:
        for tid in list(p.tasks):
            ts = self._tasks[tid]
            if ts.state != ASSIGNED or ts.strategy != HEALTH:
                continue  # started work stays with the picker; static routing never moves a task
            self._release(ts, t)
            ts.prev_operator = p.view.operator_id
            if self._own_hold(ts):
                ts.state, ts.operator_id, ts.parked = QUEUED, None, True
                ts.gen += 1
                self._parked[tid] = ts
            else:
                self._push(ts)
            self._pending.append(Requeue(tid, ts.view.order_id, p.view.operator_id, ts.view.zone, why))

    def _count_held(self, ops: Iterable[str] | None = None) -> None:
        """Tell the index how many of each picker's tasks are held (of `ops`, or of everyone with tasks)."""
        pickers = self._pickers
        for op in (ops if ops is not None else [o for o, p in pickers.items() if p.tasks]):
            p = pickers.get(op)
            if p is not None:
                self.book.set_held(op, self._now, sum(1 for tid in p.tasks if self._task_held(self._tasks[tid])))

    def _task_held(self, ts: _Task) -> bool:
        """Held in any scope that covers the task (not the operator scope: that only stops new work)."""
        return self._hold_all or ts.view.zone in self._held_zones or self._own_hold(ts)

    def _own_hold(self, ts: _Task) -> bool:
        """Held as a task or through its order: such tasks wait aside ("parked") until released."""
        return ts.view.task_id in self._held_tasks or ts.view.order_id in self._held_orders

    # -- internals: escalation ----------------------------------------------------------------------
    def _arm(self, ts: _Task, now: datetime, since: float) -> None:
        base, src = self.schedule.base_s(now, ts.view.cold_chain)
        if self.learned is not None:
            learned = self.learned.threshold_s(ts.view.group, base)
            if learned is not None:
                base, src = learned
        ts.threshold_s, ts.threshold_src = base, src
        self._set_timer(ts, since + base)

    def _set_timer(self, ts: _Task, deadline: float) -> None:
        ts.gen += 1
        ts.deadline = deadline
        heapq.heappush(self._timers, (deadline, ts.gen, ts.view.task_id))

    def _escalate_due(self, t: float, now: datetime, out: list[Decision]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= t:
            _, gen, tid = heapq.heappop(timers)
            ts = self._tasks.get(tid)
            if ts is None or ts.gen != gen:
                continue
            if ts.state == QUEUED:
                if ts.parked or ts.ladder >= 3:  # a held task or order is timed afresh when released (_push)
                    continue
                if self._put_off_by_hold(ts, t):  # a held zone or "all"
                    continue
                # Nobody could take it in time (everyone busy, away, or their breakers open): a supervisor.
                ts.ladder, ts.escalation = 3, 2
                v = ts.view
                out.append(Escalate(v.task_id, v.order_id, v.zone, 2, None,
                                    f"no picker could take it within {ts.threshold_s / 60:g} min "
                                    f"({ts.threshold_src}); supervisor needed"))
                continue
            if ts.state == STARTED:
                self._escalate_left_behind(ts, t, out)
                continue
            if ts.state != ASSIGNED or ts.ladder >= 3:
                # Past the end of the ladder, the supervisor has been told: a task handed on after it (a breaker
                # opened) was escalated to level 2 again at once, its old clock long run out.
                continue
            if self._put_off_by_hold(ts, t):
                continue
            self._escalate(ts, t, now, out)

    def _put_off_by_hold(self, ts: _Task, t: float) -> bool:
        """A timer that fell due while a hold covers its task: looked at again an interval later, and once the
        hold has ended, a fresh period from the release, for the wait and for whoever gets the task next (with
        the clock of before the hold, a task was moved away from its picker a minute after it came; dropped
        here, a task whose time ran out during the hold was never escalated). True if put off. A waiting task's
        timer is pushed without a new gen: the queue's entry for the task carries the same gen."""
        if self._task_held(ts):
            ts.held_seen, due = True, t + self.settings.index_interval_s
        elif ts.held_seen:
            ts.held_seen, ts.unstarted_since, due = False, t, t + ts.threshold_s
        else:
            return False
        if ts.state == QUEUED:
            heapq.heappush(self._timers, (due, ts.gen, ts.view.task_id))
        else:
            self._set_timer(ts, due)
        return True

    def _escalate(self, ts: _Task, t: float, now: datetime, out: list[Decision]) -> None:
        op = ts.operator_id
        assert op is not None
        v = ts.view
        why = f"not started within {ts.threshold_s / 60:g} min ({ts.threshold_src})"
        if t - ts.assigned_at >= ts.threshold_s:
            # Counted against the picker only if they had it a whole period: a task handed on keeps its clock,
            # and the picker who got it a minute before its time ran out was blamed for the one who sat on it.
            self.book.on_timeout(op, t)
        ts.deadline = None
        if ts.ladder == 0:
            ts.ladder = 1
            choice = self._rank(ts, exclude=op)
            if choice.operator_id is not None:
                self._move(ts, choice, t, now, f"{why}; {choice.reason}", 0, out)
                return
        if ts.ladder == 1:
            ts.ladder = 2
            choice = self._rank(ts, exclude=op, backup=True)
            if choice.operator_id is not None:
                ts.escalation = 1
                out.append(Escalate(v.task_id, v.order_id, v.zone, 1, op, f"{why}; backup picker"))
                self._move(ts, choice, t, now, f"level 1: {choice.reason}", 1, out)
                return
            why += "; no backup picker available"
        ts.ladder = 3
        ts.escalation = 2
        out.append(Escalate(v.task_id, v.order_id, v.zone, 2, op, f"{why}; supervisor needed"))

    def _move(self, ts: _Task, choice: Choice, t: float, now: datetime, reason: str, level: int,
              out: list[Decision]) -> None:
        old = ts.operator_id
        assert old is not None and choice.operator_id is not None
        self._release(ts, t)
        self._take(ts, choice.operator_id, t, now, fresh_period=True)
        ts.reassignments += 1
        v = ts.view
        out.append(Reassign(v.task_id, v.order_id, old, choice.operator_id, v.zone, v.line_nos, choice.score,
                            reason, ts.strategy, level, choice.candidates))

    # -- internals: assignment ----------------------------------------------------------------------
    def _assign_waiting(self, t: float, now: datetime, out: list[Decision]) -> None:
        if not self._dirty:
            return
        zones, self._dirty = sorted(self._dirty), set()
        if self._hold_all or self._no_new_work:
            return
        for zone in zones:
            if zone in self._held_zones:
                continue
            for strategy in STRATEGIES:
                q = self._queues.get((zone, strategy))
                while q:
                    entry = q[0]
                    ts = self._tasks.get(entry[-1])
                    if ts is None or ts.gen != entry[-2] or ts.state != QUEUED or ts.parked:
                        heapq.heappop(q)
                        continue
                    if self._own_hold(ts):
                        heapq.heappop(q)
                        ts.parked = True
                        self._parked[ts.view.task_id] = ts
                        continue
                    if strategy == ROUND_ROBIN:
                        choice, pos = self._rr_choice(ts)
                    else:
                        choice, pos = self._rank(ts), -1
                    if choice.operator_id is None:
                        break
                    heapq.heappop(q)
                    if pos >= 0:
                        self._rr[zone] = pos
                    self._assign(ts, choice, t, now, out)

    def _assign(self, ts: _Task, choice: Choice, t: float, now: datetime, out: list[Decision]) -> None:
        assert choice.operator_id is not None
        self._take(ts, choice.operator_id, t, now)
        v = ts.view
        prev, ts.prev_operator = ts.prev_operator, None
        if prev is None or prev == choice.operator_id:  # back to the same picker: assigned again
            if prev is None:
                self.figures.assigned(ts.strategy)
            out.append(Assign(v.task_id, v.order_id, choice.operator_id, v.zone, v.line_nos, choice.score,
                              choice.reason + self._handoff_note(ts), ts.strategy, choice.candidates))
        else:
            ts.reassignments += 1
            out.append(Reassign(v.task_id, v.order_id, prev, choice.operator_id, v.zone, v.line_nos,
                                choice.score, f"back from the queue; {choice.reason}{self._handoff_note(ts)}",
                                ts.strategy, 0, choice.candidates))

    def _why_not(self, op: str, p: _Picker, cap: int) -> str | None:
        if p.view.on_break:
            return "on break"
        if op in self._held_ops:
            return "held"
        b = p.breaker
        if b.state == STATE_OPEN:
            return "breaker open"
        if b.state == STATE_HALF_OPEN and b.trial_used:
            return "breaker half-open: trial task already given"
        if p.load >= cap:
            note = self._cap_notes.get((p.load, cap))
            if note is None:
                note = self._cap_notes[(p.load, cap)] = f"at cap ({p.load}/{cap} open tasks)"
            return note
        return None

    def _rank(self, ts: _Task, *, exclude: str | None = None, backup: bool = False) -> Choice:
        """Health strategy: among eligible pickers of the zone, highest index minus `load_weight` per open
        task (a backup ignores load and may go one over the cap); ties go to the higher index, then the
        lower load, then the one who got a task least recently."""
        s = self.settings
        cap = s.task_cap + (1 if backup else 0)
        weight = 0.0 if backup else s.load_weight
        pickers = self._pickers
        rejected: list[Candidate] = []
        eligible: list[tuple[float, float, int, float, int, str]] = []
        for pos, op in enumerate(self._zone_pickers.get(ts.view.zone, ())):
            p = pickers[op]
            why = "holds the task now" if op == exclude else self._why_not(op, p, cap)
            if why is not None:
                rejected.append(Candidate(op, False, None, p.index, p.load, why))
                continue
            eligible.append((p.index - weight * p.load, p.index, -p.load, -p.last_assigned, -pos, op))
        if not eligible:
            reason = "no eligible picker in zone " + ts.view.zone
            return Choice(ts.view.task_id, HEALTH, None, 0.0, reason, tuple(rejected))
        best = max(eligible)
        score, index, neg_load, _, _, chosen = best
        if backup:
            reason = (f"backup: highest index {index:.0f} ignoring load ({-neg_load} open tasks, "
                      f"cap {s.task_cap}+1)")
        else:
            reason = (f"health: score {score:.0f} = index {index:.0f} - {weight:g} x {-neg_load} open tasks; "
                      f"best of {len(eligible)} eligible")
        notes = [Candidate(chosen, True, score, index, -neg_load, "chosen")]
        for e in eligible:  # fixed notes: the numbers are in the candidate, and this runs per decision
            if e[5] == chosen:
                continue
            note = ("lower score" if e[0] < score
                    else "same score, lower index or more load" if e[:3] != best[:3]
                    else "same score, had a task more recently" if e[3] != best[3]
                    else "same score, later in the zone's list")
            notes.append(Candidate(e[5], True, e[0], e[1], -e[2], note))
        # The ranking uses the raw score; the decision carries it clamped to the 0-100 of SPEC's `score`.
        return Choice(ts.view.task_id, HEALTH, chosen, min(100.0, max(0.0, score)), reason, (*notes, *rejected))

    def _rr_choice(self, ts: _Task) -> tuple[Choice, int]:
        """Static routing: the next picker of the zone in turn who is logged in, not on break and not held,
        whatever their load or health. Returns the choice and the rotation position after it."""
        lst = self._zone_pickers.get(ts.view.zone, [])
        n = len(lst)
        start = self._rr.get(ts.view.zone, 0) % n if n else 0
        notes: list[Candidate] = []
        chosen: str | None = None
        pos = -1
        for i in range(n):
            op = lst[(start + i) % n]
            p = self._pickers[op]
            if chosen is not None:
                notes.append(Candidate(op, True, None, p.index, p.load, "not next in rotation"))
                continue
            why = "on break" if p.view.on_break else "held" if op in self._held_ops else None
            if why is not None:
                notes.append(Candidate(op, False, None, p.index, p.load, why))
                continue
            chosen, pos = op, (start + i + 1) % n
            notes.insert(0, Candidate(op, True, p.index, p.index, p.load, "chosen: next in rotation"))
        if chosen is None:
            return Choice(ts.view.task_id, ROUND_ROBIN, None, 0.0,
                          "no available picker in zone " + ts.view.zone, tuple(notes)), -1
        p = self._pickers[chosen]
        return Choice(ts.view.task_id, ROUND_ROBIN, chosen, p.index,
                      f"round robin: next in rotation of zone {ts.view.zone}", tuple(notes)), pos
