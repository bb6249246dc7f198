"""Who gets a task: the queue order, the cap, load and index, and the explanation that comes with it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.domain.dispatch import (
    Assign,
    DispatchError,
    DispatchSettings,
    Requeue,
    TaskView,
    task_view,
)
from gateway.domain.model import Priority, Task
from tests.dispatch.conftest import Rig, given


def at(hour: int) -> datetime:
    return datetime(2026, 11, 23, hour, 0, tzinfo=UTC)


def test_queue_order_cutoff_then_cold_chain_then_value_and_level() -> None:
    rig = Rig(DispatchSettings(task_cap=1))
    rig.task("no-cutoff", value_cents=10**6)
    rig.task("late", cutoff_at=at(14))
    rig.task("value", cutoff_at=at(14), value_cents=10_000)
    rig.task("level", cutoff_at=at(14), value_cents=10_000, customer_level=2)
    rig.task("cold", cutoff_at=at(14), cold_chain=True)
    rig.task("early", cutoff_at=at(10))
    rig.task("late-2", cutoff_at=at(14))
    rig.picker("p1")
    order = []
    for _ in range(7):
        ((tid, _),) = given(rig.tick())
        order.append(tid)
        rig.engine.on_first_scan(tid, rig.t)
        rig.engine.on_task_completed(tid, rig.t)
    assert order == ["early", "cold", "level", "value", "late", "late-2", "no-cutoff"]


def test_task_cap(rig: Rig) -> None:
    rig.picker("p1")
    for i in range(4):
        rig.task(f"T{i}")
    assert given(rig.tick()) == [("T0", "p1"), ("T1", "p1"), ("T2", "p1")]
    choice = rig.engine.choose("T3", rig.t)
    assert choice.operator_id is None and choice.candidates[0].note == "at cap (3/3 open tasks)"
    rig.engine.on_first_scan("T0", rig.t)
    rig.engine.on_task_completed("T0", rig.t)
    assert given(rig.tick()) == [("T3", "p1")]


def test_low_load_preferred_and_explained(rig: Rig) -> None:
    rig.picker("p1")
    rig.picker("p2")
    rig.picker("p3", on_break=True)
    rig.task("T1")
    rig.task("T2")
    out = rig.tick()
    assert given(out) == [("T1", "p1"), ("T2", "p2")]
    d = out[1]
    assert isinstance(d, Assign)
    assert d.reason == "health: score 100 = index 100 - 40 x 0 open tasks; best of 2 eligible"
    notes = {c.operator_id: (c.eligible, c.score, c.note) for c in d.candidates}
    assert notes == {"p2": (True, 100.0, "chosen"), "p1": (True, 60.0, "lower score"),
                     "p3": (False, None, "on break")}
    assert d.to_event() == ("task.assigned", {"task_id": "T2", "operator_id": "p2", "zone": "a", "lines": [1, 2],
                                              "score": 100.0, "reason": d.reason})


def test_higher_index_preferred_at_equal_load(rig: Rig) -> None:
    rig.picker("p1")
    rig.picker("p2")
    rig.task("W")
    rig.tick()
    holder = rig.holder("W")
    other = "p2" if holder == "p1" else "p1"
    for _ in range(3):  # the holder's scanner rejects a scan now and then: a lower index
        rig.advance(60)
        rig.engine.on_reject(str(holder), rig.t)
    rig.engine.on_first_scan("W", rig.t)
    rig.engine.on_task_completed("W", rig.t)
    rig.advance(60)
    rig.task("T")
    assert given(rig.tick()) == [("T", other)]


def test_multi_zone_order_tasks_are_independent(rig: Rig) -> None:
    rig.picker("pa", zones=("a",))
    rig.picker("pb", zones=("b",))
    rig.task("O1-a", zone="a", order_id="O1")
    rig.task("O1-b", zone="b", order_id="O1")
    rig.task("O1-c", zone="c", order_id="O1")  # nobody in zone c yet: the others do not wait for it
    assert sorted(given(rig.tick())) == [("O1-a", "pa"), ("O1-b", "pb")]
    rig.picker("pc", zones=("c",))
    assert given(rig.tick()) == [("O1-c", "pc")]


def test_break_and_logout_give_unstarted_tasks_back(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.task("T2")
    rig.tick()
    rig.engine.on_first_scan("T1", rig.t)
    rig.engine.on_break_start("p1", rig.t)
    rig.picker("p2")
    out = rig.tick()
    assert [(d.task_id, d.reason) for d in out if isinstance(d, Requeue)] == [("T2", "picker on break")]
    assert given(out) == [("T2", "p2")]
    assert rig.holder("T1") == "p1"  # started work stays with the picker
    rig.engine.on_logout("p2", rig.t)
    out = rig.tick()
    assert [(d.task_id, d.reason) for d in out if isinstance(d, Requeue)] == [("T2", "picker logged out")]


def test_choose_changes_nothing(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1", held=True)
    rig.tick()
    before = rig.engine.pickers()
    choice = rig.engine.choose("T1", rig.t)
    assert choice.operator_id is None and choice.candidates[0].operator_id == "p1"  # held: nobody, p1 after
    assert rig.engine.pickers() == before and rig.holder("T1") is None


def test_task_view_from_the_model() -> None:
    task = Task("T-1", "O-1", "zone-a", [1, 3], "2026-11-23T08:00:00.000Z")
    v = task_view(task, Priority(1500, 2, True, "2026-11-23T16:00:00.000Z"))
    assert (v.task_id, v.order_id, v.zone, v.line_nos, v.lines) == ("T-1", "O-1", "zone-a", (1, 3), 2)
    assert v.cutoff_at == at(16) and v.cold_chain and v.value_cents == 1500 and v.customer_level == 2


def test_bad_calls_are_clear_errors(rig: Rig) -> None:
    rig.task("T1")
    with pytest.raises(DispatchError, match="task T1 is already known"):
        rig.task("T1")
    with pytest.raises(DispatchError, match="task T9 is not known"):
        rig.engine.choose("T9", rig.t)
    assert rig.engine.on_first_scan("T9", rig.t) is False
    assert rig.engine.on_line_done("T9", rig.t) is False
    assert rig.engine.on_task_completed("T9", rig.t) is False
    assert rig.engine.on_task_removed("T1", rig.t) is True and rig.engine.task_status("T1") is None


@pytest.mark.parametrize("kw, message", [
    ({"task_cap": 0}, "dispatch.task_cap: expected an integer >= 1"),
    ({"breaker_threshold": 101}, "dispatch.breaker_threshold: expected a score 0-100"),
    ({"index_interval_s": 0}, "dispatch.index_interval_s"),
])
def test_bad_settings_are_clear_errors(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DispatchSettings(**kw)  # type: ignore[arg-type]


def test_settings_from_config() -> None:
    from gateway.config import parse_config

    cfg = parse_config({"dispatch": {"breaker_threshold": 55, "task_cap": 4, "escalate_after_min": 20}})
    s = DispatchSettings.from_config(cfg.dispatch)
    assert (s.breaker_threshold, s.task_cap, s.escalate_after_min, s.escalate_cold_chain_after_min) == (55, 4, 20, 10)


def test_restored_assignment_keeps_its_escalation_clock() -> None:
    rig = Rig(DispatchSettings(breaker_threshold=0))
    rig.picker("p1")
    rig.picker("p2")
    view = TaskView("T1", "O-1", "a", (1,))
    rig.engine.add_task(view, rig.t, operator_id="p1", assigned_at=rig.t - 29 * 60)
    rig.engine.add_task(TaskView("T2", "O-2", "a", (1,)), rig.t, operator_id="p2", started=True)
    assert rig.tick() == []
    assert [p.open_tasks for p in rig.engine.pickers()] == [1, 1]
    out = rig.advance(60)
    assert given(out) == [("T1", "p2")]
    with pytest.raises(DispatchError, match="strategy: expected one of health, round_robin"):
        rig.engine.add_task(TaskView("T3", "O-3", "a"), rig.t, operator_id="p1", strategy="static")


def test_next_due(rig: Rig) -> None:
    assert rig.engine.next_due() == rig.t + 60  # the next index boundary
    rig.picker("p1")
    rig.task("T1", cold_chain=True)
    assert rig.engine.next_due() == rig.t  # something to assign now
    rig.tick()
    rig.clock.advance(59)
    rig.tick()
    assert rig.engine.next_due() == rig.t + 1
    status = rig.engine.task_status("T1")
    assert status is not None and status.deadline == rig.t - 59 + 600 and status.threshold_s == 600


def test_bad_line_count_is_a_clear_error(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    with pytest.raises(DispatchError, match="lines done: expected a count >= 1; got 0"):
        rig.engine.on_line_done("T1", rig.t, 0)
