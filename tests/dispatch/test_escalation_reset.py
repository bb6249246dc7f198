"""`reset_escalation` (a supervisor held the order): a waiting task that still had a live timer (level 1,
requeued) got a second one beside the fresh one; a started task whose picker is away was never told again.
Found by a review."""
from __future__ import annotations

from gateway.domain.dispatch import DispatchSettings, Escalate, TaskView
from tests.dispatch.conftest import Rig


def _restored_level1(rig: Rig) -> None:
    # A waiting task restored at level 1 (moved to a backup picker, then requeued): its ladder is at 2, armed.
    rig.engine.add_task(TaskView("T1", "O-1", "a", (1, 2)), rig.t, waiting_since=rig.t, escalation=1)
    assert rig.tick() == []  # timer A armed at t0 + 30 min; nobody to give it to, so it waits (not parked)


def test_long_hold_then_release_escalates_at_once() -> None:
    rig = Rig(DispatchSettings(breaker_threshold=0))
    _restored_level1(rig)
    rig.advance(60, step=60)
    # api.set_hold(order, on) -> engine.set_hold, then escalation_handled -> reset_escalation
    rig.engine.set_hold("order", "O-1", True)
    rig.engine.reset_escalation("T1", rig.t)
    assert [d for d in rig.advance(3 * 3600, step=60) if isinstance(d, Escalate)] == []
    rig.engine.set_hold("order", "O-1", False)
    out = rig.advance(5 * 60, step=60)
    # A fresh period from the release is promised: no escalation within 5 minutes of it.
    assert [d for d in out if isinstance(d, Escalate)] == []


def test_short_hold_does_not_give_a_fresh_period() -> None:
    rig = Rig(DispatchSettings(breaker_threshold=0))
    _restored_level1(rig)
    rig.advance(25 * 60, step=60)
    rig.engine.set_hold("order", "O-1", True)
    rig.engine.reset_escalation("T1", rig.t)
    rig.advance(60, step=60)
    rig.engine.set_hold("order", "O-1", False)
    out = rig.advance(10 * 60, step=60)  # up to minute 36: the old deadline (minute 30) must not fire
    assert [d for d in out if isinstance(d, Escalate)] == []


def test_started_task_left_behind_is_told_again_after_hold_and_release() -> None:
    from gateway.domain.dispatch import PickerView
    rig = Rig(DispatchSettings(breaker_threshold=0))
    rig.picker("p1")
    rig.task("T1", order_id="O-1")
    rig.tick()
    rig.engine.on_first_scan("T1", rig.t)
    rig.engine.set_picker(PickerView("p1", frozenset({"a"}), logged_in=False), rig.t)  # leaves with it started
    out = rig.advance(35 * 60, step=60)
    assert [d.level for d in out if isinstance(d, Escalate)] == [2]
    rig.engine.set_hold("order", "O-1", True)   # what the alarm asks for; the alarm is cleared
    rig.engine.reset_escalation("T1", rig.t)
    rig.advance(5 * 60, step=60)
    rig.engine.set_hold("order", "O-1", False)
    out = rig.advance(3 * 3600, step=60)        # p1 is still away three hours later
    assert [d for d in out if isinstance(d, Escalate)], "never told again (a restart would tell it again)"
