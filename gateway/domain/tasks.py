"""Tasks: an order's lines in one zone, planned when the order arrives, handed to pickers by the dispatch
engine, completed line by line. The order follows its tasks: `assigned` with the first assignment,
`picking` at the first accepted scan, `picked` / `short_picked` when every task is done (an order with
lines in several zones has one task per zone; see the engine's zone handoff for how they are linked).

Every dispatch decision applied to a task is kept on it (`Task.decision`): the score and reason its event
carried, and every picker considered with why they were or were not chosen, so the supervisor page shows
what was decided and why, not a re-run of the ranking on today's figures."""

from __future__ import annotations

import contextlib
from typing import Any

from gateway.clock import parse_rfc3339
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.dispatch import (
    Assign,
    BreakerChange,
    Candidate,
    Decision,
    DispatchError,
    Escalate,
    Reassign,
    Requeue,
    task_view,
)
from gateway.domain.floor import Floor
from gateway.domain.lights import claim, colour_slot, release_task
from gateway.domain.model import (
    ASSIGNED,
    FINAL_STATES,
    ON_HOLD,
    PICKING,
    RECEIVED,
    SHORT_PICKED,
    TASK_ACTIVE,
    TASK_ASSIGNED,
    TASK_CANCELLED,
    TASK_COMPLETED,
    TASK_OPEN,
    TASK_STARTED,
    At,
    Line,
    Order,
    Task,
)
from gateway.domain.orders import transition


def held(floor: Floor, task: Task) -> bool:
    order = floor.orders.get(task.order_id)
    return order is not None and order.state == ON_HOLD


def _location(floor: Floor, line: Line) -> tuple[str | None, str]:
    """Where a line is picked from: a location of its SKU (one with a light first, then by code)."""
    codes = floor.md.locations_by_sku.get(line.sku, [])
    locs = sorted((floor.md.locations[c] for c in codes if c in floor.md.locations),
                  key=lambda loc: (loc.light is None, loc.code))
    if not locs:
        return None, floor.rules.gateway
    return locs[0].code, locs[0].zone


def plan_tasks(floor: Floor, change: Change, order: Order, at: At) -> list[Task]:
    """(Re)plan the order's tasks, one per zone; only while the order is `received`."""
    for task in floor.tasks_of(order.order_id):
        if task.state == TASK_OPEN:
            floor.dispatch.on_task_removed(task.task_id, at.mono)
            del floor.tasks[task.task_id]
            change.delete("task", task.task_id)
    floor.order_tasks.pop(order.order_id, None)
    by_zone: dict[str, list[int]] = {}
    cold = order.priority.cold_chain
    for line in order.lines:
        line.location, zone = _location(floor, line)
        by_zone.setdefault(zone, []).append(line.line_no)
        sku = floor.md.skus.get(line.sku)
        cold = cold or bool(sku and sku.cold_chain)
    change.save("order", order.order_id, order)
    tasks = []
    for zone, nos in sorted(by_zone.items()):
        task = Task(f"{order.order_id}~{zone}", order.order_id, zone, nos, at.ts, cold_chain=cold)
        floor.add_task(task)
        change.save("task", task.task_id, task)
        floor.dispatch.add_task(task_view(task, order.priority, held=order.state == ON_HOLD), at.mono)
        tasks.append(task)
    change.signal(("dispatch", "tasks"))
    return tasks


def handoff_zone(floor: Floor, task: Task) -> str:
    """A zone where the task's order's part is done ("" if none): the engine forgets completed tasks, so
    after a restart the order's waiting parts get their place in the queue (the zone handoff) from here."""
    for other in floor.tasks_of(task.order_id):
        if other.zone != task.zone and other.state == TASK_COMPLETED:
            return other.zone
    return ""


PARKED = "bulk_parked"  # the doc kind: one per applied chunk of an order batch, with its new tasks


class _Parked:
    def __init__(self, sync_id: str, tasks: list[str]) -> None:
        self.sync_id, self.tasks = sync_id, tasks

    def to_doc(self) -> dict[str, Any]:
        return {"sync_id": self.sync_id, "tasks": self.tasks}


def park(floor: Floor, change: Change, sync_id: str, key: str, order_id: str) -> None:
    """Keep an order batch's new tasks from dispatch until the whole batch is in, so that dispatch gives out
    its most urgent orders first (gateway/bulk.py). Stored with the chunk that made them: kept in memory only,
    they were given out at once, least urgent first, after a restart or a rebuild of the floor mid-set."""
    ids = [t.task_id for t in floor.tasks_of(order_id) if t.active and t.operator_id is None]
    if not ids:
        return
    for tid in ids:
        floor.dispatch.set_hold("task", tid, True)
    docs = floor.extra.setdefault(PARKED, {})
    doc = docs.setdefault(key, {"sync_id": sync_id, "tasks": []})
    doc["tasks"].extend(ids)
    change.save(PARKED, key, _Parked(sync_id, doc["tasks"]))


def unpark(floor: Floor, change: Change, sync_id: str) -> int:
    """Give the batch's parked tasks to dispatch (the batch is applied, or has failed); returns how many."""
    docs = floor.extra.get(PARKED, {})
    n = 0
    for key in [k for k, d in docs.items() if d.get("sync_id") == sync_id]:
        for tid in docs.pop(key).get("tasks", []):
            floor.dispatch.set_hold("task", str(tid), False)
            n += 1
        change.delete(PARKED, key)
    return n


def restore_dispatch(floor: Floor, at: At) -> None:
    """After a restart: give the engine every active task and every logged-in picker again."""
    from gateway.domain.sessions import sync_picker

    for op in {s.operator_id for s in floor.sessions.values()}:
        sync_picker(floor, op, at)
    for key in floor.holds:
        scope, _, target = key.partition(":")
        floor.dispatch.set_hold(scope, target, True)
    for alarm_id, alarm in floor.alarms.items():
        if alarm_id.startswith("breaker:") and alarm.code == "breaker_opened":
            opened = _mono_of(alarm.raised_at, at)
            floor.dispatch.restore_breaker(alarm_id.partition(":")[2], at.mono if opened is None else opened, at.mono)
    for doc in floor.extra.get(PARKED, {}).values():
        for tid in doc.get("tasks", []):
            floor.dispatch.set_hold("task", str(tid), True)
    for task in floor.tasks.values():
        if task.state not in TASK_ACTIVE:
            continue
        order = floor.orders.get(task.order_id)
        if order is None or order.state in FINAL_STATES:
            continue
        # The timers go on from when the task was given out (or began to wait), read from the wall clock: the
        # monotonic clock of the run before is gone. A wall clock stepped back counts as no time passed.
        # A waiting task that had been given out before waits since then at the latest (assigned_at is kept through
        # a requeue): from created_at, one moved at minute 31 and requeued at 33 escalated at once after a restart.
        since = _mono_of(task.assigned_at or task.created_at, at)
        try:
            floor.dispatch.add_task(task_view(task, order.priority, held=order.state == ON_HOLD,
                                              handoff_zone=handoff_zone(floor, task)), at.mono,
                                    operator_id=task.operator_id, started=task.state == TASK_STARTED,
                                    strategy=task.strategy, escalation=task.escalation,
                                    assigned_at=since if task.operator_id is not None else None,
                                    waiting_since=since if task.operator_id is None else None)
        except DispatchError:
            continue
        if task.state == TASK_STARTED:
            floor.dispatch.time_left_behind(task.task_id)  # its picker left before the restart: timed again


def _mono_of(stamp: str | None, at: At) -> float | None:
    """The monotonic time of a stored wall-clock stamp, as seen from `at`; never later than now."""
    if stamp is None:
        return None
    try:
        elapsed: float = (at.wall - parse_rfc3339(stamp)).total_seconds()
    except ValueError:
        return None
    return at.mono - max(elapsed, 0.0)


# -- explanations -----------------------------------------------------------------------------------------------

# Pickers kept per stored decision, in the engine's order (the chosen one, the other eligible ones, those ruled
# out). A zone rarely has more; the rest are counted, so the task's stored document stays small on a big floor.
MAX_CANDIDATES = 30


def _candidates(cands: tuple[Candidate, ...]) -> tuple[list[dict[str, Any]], int]:
    out = [{"operator_id": c.operator_id, "eligible": c.eligible,
            "score": None if c.score is None else round(c.score, 1), "index": round(c.picker_index, 1),
            "load": c.load, "note": c.note} for c in cands[:MAX_CANDIDATES]]
    return out, max(0, len(cands) - MAX_CANDIDATES)


def decision_doc(kind: str, at: At, *, reason: str, operator_id: str | None = None, score: float | None = None,
                 strategy: str | None = None, from_operator: str | None = None, level: int = 0,
                 candidates: tuple[Candidate, ...] = ()) -> dict[str, Any]:
    """The stored form of one decision. `score` and `reason` are exactly what the event said (the score
    rounded as in `task.assigned`), so the page and the hub never disagree about a decision."""
    doc: dict[str, Any] = {"kind": kind, "at": at.ts, "reason": reason}
    if operator_id is not None:
        doc["operator_id"] = operator_id
    if score is not None:
        doc["score"] = round(score, 1)
    if strategy is not None:
        doc["strategy"] = strategy
    if from_operator is not None:
        doc["from_operator"] = from_operator
    if level:
        doc["level"] = level
    if candidates:
        doc["candidates"], omitted = _candidates(candidates)
        if omitted:
            doc["omitted"] = omitted
    return doc


# -- applying the engine's decisions --------------------------------------------------------------------

def _lights(change: Change, lights: set[Any]) -> None:
    if lights:
        change.signal(("lights", frozenset(lights)))


def _give(floor: Floor, change: Change, task: Task, operator_id: str, at: At) -> None:
    task.operator_id = operator_id
    task.state = TASK_ASSIGNED if task.started_at is None else TASK_STARTED
    task.assigned_at = at.ts
    task.assigned_mono = at.mono
    colour_slot(floor, change, operator_id, task.zone, at.wall)
    change.save("task", task.task_id, task)


def apply_decision(floor: Floor, change: Change, d: Decision, at: At) -> None:
    if isinstance(d, BreakerChange):
        ev = d.to_event()
        if ev is not None:
            change.emit(*ev)
        name = floor.md.operators.get(d.operator_id)
        who = name.name if name is not None and name.name else d.operator_id
        if d.state == "opened":
            raise_alarm(floor, change, f"breaker:{d.operator_id}", "breaker_opened", "warning",
                        f"{who} gets no new work for now: availability {d.reason}", at.wall)
        elif d.state == "closed":
            clear_alarm(floor, change, f"breaker:{d.operator_id}", f"{who} is back to normal")
        return
    task = floor.tasks.get(d.task_id)
    order = floor.orders.get(d.order_id)
    if task is None or order is None or not task.active or order.state in FINAL_STATES:
        floor.dispatch.on_task_removed(d.task_id, at.mono)
        return
    if isinstance(d, Assign):
        task.decision = decision_doc("assigned", at, reason=d.reason, operator_id=d.operator_id, score=d.score,
                                     strategy=d.strategy, candidates=d.candidates)
        _give(floor, change, task, d.operator_id, at)
        task.strategy = d.strategy
        ev = d.to_event()
        assert ev is not None
        change.emit(*ev, order_id=task.order_id)
        if order.state == RECEIVED:
            transition(change, order, ASSIGNED)
        _lights(change, claim(floor, task))
    elif isinstance(d, Reassign):
        task.decision = decision_doc("reassigned", at, reason=d.reason, operator_id=d.to_operator, score=d.score,
                                     strategy=d.strategy, from_operator=d.from_operator, level=d.level,
                                     candidates=d.candidates)
        _lights(change, release_task(floor, task))
        _give(floor, change, task, d.to_operator, at)
        task.reassignments += 1
        if d.level:
            task.escalation = max(task.escalation, d.level)
        ev = d.to_event()
        assert ev is not None
        change.emit(*ev, order_id=task.order_id)
        if order.state == RECEIVED:
            transition(change, order, ASSIGNED)
        _lights(change, claim(floor, task))
    elif isinstance(d, Requeue):
        _lights(change, release_task(floor, task))
        task.decision = decision_doc("requeued", at, reason=d.reason, from_operator=d.from_operator)
        if task.started_at is None:
            task.state = TASK_OPEN
            task.operator_id = None  # back in the queue: nobody's until dispatch gives it out again
        change.save("task", task.task_id, task)
    elif isinstance(d, Escalate):
        task.escalation = max(task.escalation, d.level)
        step = {"level": d.level, "at": at.ts, "reason": d.reason}
        task.decision = {**task.decision, "escalation": step} if task.decision is not None else \
            decision_doc("escalated", at, reason=d.reason, level=d.level)
        change.save("task", task.task_id, task)
        ev = d.to_event()
        assert ev is not None
        change.emit(*ev, order_id=task.order_id)
        if d.level >= 2:
            stalled = "has stopped" if task.state == TASK_STARTED else "has not started"
            raise_alarm(floor, change, f"escalation:{task.task_id}", "task_escalated", "warning",
                        f"task {task.task_id} (order {task.order_id}, zone {task.zone}) {stalled}: "
                        f"{d.reason}; assign it by hand or hold the order", at.wall)


def dispatch_tick(floor: Floor, change: Change, at: At) -> int:
    """Let the engine decide what is due and apply it; returns how many decisions there were."""
    decisions = floor.dispatch.tick(at.mono, at.wall)
    for d in decisions:
        apply_decision(floor, change, d, at)
    return len(decisions)


# -- progress -------------------------------------------------------------------------------------------

def start(floor: Floor, change: Change, task: Task, at: At) -> None:
    """The task's first accepted scan; on a started task, an accepted scan clears the escalation of a picker who
    had logged out with it (the work moves again)."""
    if task.state != TASK_ASSIGNED:
        if task.escalation >= 2:
            clear_alarm(floor, change, f"escalation:{task.task_id}", f"task {task.task_id} is being picked again")
        return
    task.state = TASK_STARTED
    task.started_at = at.ts
    change.save("task", task.task_id, task)
    floor.dispatch.on_first_scan(task.task_id, at.mono)
    clear_alarm(floor, change, f"escalation:{task.task_id}", f"task {task.task_id} has started")
    order = floor.orders[task.order_id]
    if order.state == ASSIGNED:
        transition(change, order, PICKING)


def complete_if_done(floor: Floor, change: Change, task: Task, at: At) -> bool:
    order = floor.orders[task.order_id]
    lines = [order.line(n) for n in task.line_nos]
    if not all(ln is not None and ln.done for ln in lines):
        return False
    task.state = TASK_COMPLETED
    task.completed_at = at.ts
    change.save("task", task.task_id, task)
    clear_alarm(floor, change, f"escalation:{task.task_id}", f"task {task.task_id} is complete")
    data: dict[str, Any] = {"task_id": task.task_id}
    if task.operator_id:
        data["operator_id"] = task.operator_id
    change.emit("task.completed", data, task.order_id)
    floor.dispatch.on_task_completed(task.task_id, at.mono)
    others = [t for t in floor.tasks_of(order.order_id) if t.state != TASK_CANCELLED]
    if all(t.state == TASK_COMPLETED for t in others) and order.state == PICKING:
        short = any(ln.short > 0 for ln in order.lines)
        transition(change, order, SHORT_PICKED if short else "picked")
    change.signal(("dispatch", "completed"))
    return True


def reopen(floor: Floor, change: Change, task: Task, at: At) -> None:
    """An undo on a completed task: it is the picker's again, the order back to `picking`."""
    if task.state != TASK_COMPLETED:
        return
    task.state = TASK_STARTED
    task.completed_at = None
    change.save("task", task.task_id, task)
    data: dict[str, Any] = {"task_id": task.task_id}
    if task.operator_id:
        data["operator_id"] = task.operator_id
    change.emit("task.reopened", data, task.order_id)
    order = floor.orders[task.order_id]
    if order.state in ("picked", SHORT_PICKED):
        transition(change, order, PICKING)
    elif order.state == ON_HOLD and order.resume_state in ("picked", SHORT_PICKED):
        # Held: its release must go back to `picking`, not to `picked` with this line open (it went to packing
        # and shipped without the line, neither picked nor short).
        order.resume_state = PICKING
        change.save("order", order.order_id, order)
    with contextlib.suppress(DispatchError):
        floor.dispatch.add_task(task_view(task, order.priority, handoff_zone=handoff_zone(floor, task)), at.mono,
                                operator_id=task.operator_id, started=True, strategy=task.strategy)


def stop_task(floor: Floor, change: Change, task: Task, at: At) -> None:
    """A task stopped with its order (cancellation): lights off, dispatch forgets it."""
    _lights(change, release_task(floor, task))
    floor.dispatch.on_task_removed(task.task_id, at.mono)
    clear_alarm(floor, change, f"escalation:{task.task_id}", f"task {task.task_id} was cancelled")


def escalation_handled(floor: Floor, change: Change, task: Task, at: At, why: str) -> None:
    """A supervisor did what the escalation alarm asks (held the order): the alarm ends, and the task's ladder
    starts over, also as stored (a restart restores the level: left at 2, it was never escalated again)."""
    cleared = clear_alarm(floor, change, f"escalation:{task.task_id}", why)
    if cleared or task.escalation:
        task.escalation = 0
        change.save("task", task.task_id, task)
        floor.dispatch.reset_escalation(task.task_id, at.mono)


def manual_reassign(floor: Floor, change: Change, task_id: str, operator_id: str, by: str, at: At) -> None:
    """A supervisor moves a task to another picker by hand."""
    from gateway.domain.errors import Conflict, NotFound
    from gateway.domain.sessions import is_picking

    task = floor.tasks.get(task_id)
    if task is None:
        raise NotFound(f"no task {task_id}", task_id=task_id)
    if not task.active:
        raise Conflict(f"task {task_id} is {task.state}", task_id=task_id)
    op = floor.md.operators.get(operator_id)
    if op is None or "picker" not in op.roles:
        raise NotFound(f"no picker {operator_id}", operator_id=operator_id)
    order = floor.orders[task.order_id]
    previous = task.operator_id
    if previous == operator_id:
        return
    # What dispatch would never do, refused by hand too, each with what to do instead (SPEC §6: work only in
    # the picker's zones, while logged in on a pick device): the task went to someone who would never see it,
    # or into a zone whose shelves they do not know, with nothing to say so.
    who = op.name or operator_id
    if task.zone not in op.zones:
        raise Conflict(f"{who} does not work in zone {task.zone} (their zones: {', '.join(op.zones) or 'none'})",
                       task_id=task_id, operator_id=operator_id)
    if not is_picking(floor, operator_id):
        raise Conflict(f"{who} is not logged in on a pick device or PDA: they would not see the task",
                       task_id=task_id, operator_id=operator_id)
    if f"operator:{operator_id}" in floor.holds:
        raise Conflict(f"{who} is on hold: release them first", task_id=task_id, operator_id=operator_id)
    _lights(change, release_task(floor, task))
    floor.dispatch.on_task_removed(task_id, at.mono)
    if previous:
        reason = f"moved by hand by {by}"
        task.decision = decision_doc("manual", at, reason=reason, operator_id=operator_id, from_operator=previous)
    else:
        reason = f"assigned by hand by {by}"
        task.decision = decision_doc("manual", at, reason=reason, operator_id=operator_id, score=0.0)
    task.escalation = 0  # timed afresh with its new picker, also after a restart (restore reads it)
    clear_alarm(floor, change, f"escalation:{task_id}", f"task {task_id} {reason}")
    _give(floor, change, task, operator_id, at)
    task.reassignments += 1
    if previous:
        change.emit("task.reassigned", {"task_id": task_id, "from_operator": previous, "to_operator": operator_id,
                                        "reason": reason}, task.order_id)
    else:
        change.emit("task.assigned", {"task_id": task_id, "operator_id": operator_id, "zone": task.zone,
                                      "lines": list(task.line_nos), "score": 0.0, "reason": reason}, task.order_id)
    if order.state == RECEIVED:
        transition(change, order, ASSIGNED)
    floor.dispatch.add_task(task_view(task, order.priority, held=order.state == ON_HOLD,
                                      handoff_zone=handoff_zone(floor, task)), at.mono,
                            operator_id=operator_id, started=task.state == TASK_STARTED, strategy=task.strategy)
    _lights(change, claim(floor, task))
