"""Holds stop assignment within their scope; a held task is never escalated."""

from __future__ import annotations

import pytest

from gateway.domain.dispatch import Assign, DispatchError, DispatchSettings, Escalate, Reassign
from tests.dispatch.conftest import Rig, given

NO_BREAKER = DispatchSettings(breaker_threshold=0)


def test_held_order_is_not_assigned_until_released(rig: Rig) -> None:
    rig.picker("p1")
    rig.engine.set_hold("order", "O-1", True)
    rig.task("T1", order_id="O-1")
    rig.task("T2", order_id="O-2")
    assert given(rig.tick()) == [("T2", "p1")]
    rig.engine.on_first_scan("T2", rig.t)
    rig.engine.on_task_completed("T2", rig.t)
    assert given(rig.advance(600)) == []
    rig.engine.set_hold("order", "O-1", False)
    assert given(rig.tick()) == [("T1", "p1")]


def test_task_held_by_its_view_is_released_with_its_order(rig: Rig) -> None:
    """A view made `held` (its order on hold, e.g. restored after a restart) is held through its order: releasing
    the order gives it out. Held as a task of its own, an order held across a restart was never given out."""
    rig.picker("p1")
    rig.task("T1", order_id="O-1", held=True)
    assert given(rig.tick()) == []
    rig.engine.set_hold("order", "O-1", False)
    assert given(rig.tick()) == [("T1", "p1")]


def test_held_task_is_never_escalated_and_gets_a_fresh_period_after() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1", order_id="O-1")
    assert given(rig.tick()) == [("T1", "p1")]
    rig.engine.set_hold("order", "O-1", True)
    out = rig.advance(4 * 3600, step=60)
    assert not [d for d in out if isinstance(d, Reassign | Escalate)]
    rig.engine.set_hold("order", "O-1", False)
    assert rig.advance(29 * 60, step=60) == []
    out = rig.advance(3 * 60, step=60)
    assert given(out) == [("T1", "p2")]


def test_zone_and_all_holds(rig: Rig) -> None:
    rig.picker("p1", zones=("a", "b"))
    rig.engine.set_hold("zone", "a", True)
    rig.task("A1", zone="a")
    rig.task("B1", zone="b")
    assert given(rig.tick()) == [("B1", "p1")]
    rig.engine.set_hold("all", "", True)
    rig.engine.set_hold("zone", "a", False)
    rig.task("B2", zone="b")
    assert given(rig.tick()) == []
    rig.engine.set_hold("all", "", False)
    assert sorted(given(rig.tick())) == [("A1", "p1"), ("B2", "p1")]


def test_held_zone_is_not_escalated() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1")
    rig.tick()
    rig.engine.set_hold("zone", "a", True)
    assert rig.advance(2 * 3600, step=60) == []


def test_operator_hold_stops_new_work_for_that_picker(rig: Rig) -> None:
    rig.picker("p1")
    rig.picker("p2", held=True)
    for i in range(2):
        rig.task(f"T{i}")
    assert given(rig.tick()) == [("T0", "p1"), ("T1", "p1")]
    choice = rig.engine.choose("T1", rig.t)
    assert {c.operator_id: c.note for c in choice.candidates}["p2"] == "held"
    rig.engine.set_hold("operator", "p2", False)
    rig.task("T2")
    assert given(rig.tick()) == [("T2", "p2")]


def test_held_task_requeued_from_a_break_waits_aside(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1", order_id="O-1")
    rig.tick()
    rig.engine.set_hold("order", "O-1", True)
    rig.engine.on_break_start("p1", rig.t)
    rig.engine.on_break_end("p1", rig.t + 1)
    assert given(rig.advance(60)) == []
    rig.engine.set_hold("order", "O-1", False)
    out = rig.tick()
    assert given(out) == [("T1", "p1")] and isinstance(out[0], Assign)  # back to the same picker: assigned again


def test_unknown_scope_is_a_clear_error(rig: Rig) -> None:
    with pytest.raises(DispatchError, match="hold scope: expected one of task, order, zone, operator, all"):
        rig.engine.set_hold("site", "dc1", True)


def test_storage_full_gives_out_no_new_task_and_keeps_a_supervisor_hold(rig: Rig) -> None:
    """At the storage cap no queued task goes to a picker; space returning releases only that, never the
    supervisor's `all` hold."""
    rig.picker("p1")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]
    rig.engine.set_new_work(False)
    rig.task("T2")
    assert given(rig.tick()) == []
    rig.engine.on_first_scan("T1", rig.t)  # work already with a picker goes on
    rig.engine.on_task_completed("T1", rig.t)
    assert given(rig.tick()) == []
    rig.engine.set_hold("all", "", True)
    rig.engine.set_new_work(True)
    assert given(rig.tick()) == []
    rig.engine.set_hold("all", "", False)
    assert given(rig.tick()) == [("T2", "p1")]


@pytest.mark.parametrize("scope", ["zone", "all"])
def test_a_queued_task_whose_time_ran_out_in_a_zone_or_all_hold_escalates_after_it(scope: str) -> None:
    """Found on a running floor: nobody logged in, the zone (or everything) held, orders waiting. The timer of a
    waiting task that fell due during the hold was dropped: after the release it was never escalated, while a
    task that came after the hold was."""
    rig = Rig(NO_BREAKER)
    rig.task("T1")
    rig.engine.set_hold(scope, "a", True)
    assert rig.advance(2 * 3600, step=60) == []  # held: no escalation
    rig.engine.set_hold(scope, "a", False)
    assert rig.advance(29 * 60, step=60) == []  # a fresh period from the release
    out = rig.advance(2 * 60, step=60)
    assert [(d.task_id, d.level) for d in out if isinstance(d, Escalate)] == [("T1", 2)]
    assert rig.advance(3600, step=60) == []  # once


@pytest.mark.parametrize(("scope", "target", "why"), [
    ("all", "", "everything is on hold"), ("zone", "a", "zone a is on hold"),
    ("order", "O-T1", "held (the task or its order)")])
def test_who_would_get_a_held_task_says_nobody_and_why(rig: Rig, scope: str, target: str, why: str) -> None:
    """Found on a running floor: during an "all" hold the supervisor page said p2 would get the task."""
    rig.picker("p1")
    rig.engine.set_hold(scope, target, True)
    rig.task("T1")
    assert given(rig.tick()) == []
    choice = rig.engine.choose("T1", rig.t)
    assert choice.operator_id is None and choice.reason.startswith(why), choice.reason
    assert [c.operator_id for c in choice.candidates] == ["p1"]  # the ranking, for after the hold
    rig.engine.set_hold(scope, target, False)
    assert rig.engine.choose("T1", rig.t).operator_id == "p1"


@pytest.mark.parametrize(("scope", "target"), [("order", "O-T1"), ("zone", "a"), ("all", "")])
def test_held_work_in_a_pickers_hands_does_not_count_against_their_index(scope: str, target: str) -> None:
    """Found on a running floor: a picker holding a held order's task slid from 96 to 71, its waiting counted as
    theirs, until their breaker could open."""
    rig = Rig(DispatchSettings(breaker_threshold=0))
    rig.picker("p1")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]
    rig.engine.set_hold(scope, target, True)
    rig.advance(5 * 60, step=60)
    stats = rig.engine.picker_stats("p1")
    assert stats is not None and stats.busy_s == 0 and stats.pending_wait_s == 0, stats
    rig.engine.set_hold(scope, target, False)
    rig.advance(2 * 60, step=60)
    stats = rig.engine.picker_stats("p1")
    assert stats is not None and stats.busy_s > 0 and stats.pending_wait_s > 0, stats  # theirs again
