"""Work that does not move: reassigned, then a backup picker (level 1), then a supervisor (level 2)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from gateway.domain.dispatch import (
    Decision,
    DispatchSettings,
    Escalate,
    EscalationSchedule,
    LearnedThresholds,
    Reassign,
)
from tests.dispatch.conftest import Rig, given

# The breaker would rest a picker who sits on an unstarted task long before 30 minutes; these tests look
# at the escalation ladder alone, so the breaker never opens here.
NO_BREAKER = DispatchSettings(breaker_threshold=0)


def escalations(decisions: Iterable[Decision]) -> list[tuple[str, int]]:
    return [(d.task_id, d.level) for d in decisions if isinstance(d, Escalate)]


def test_ladder_reassign_then_level_1_then_level_2() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]

    assert rig.advance(30 * 60 - 10) == []
    out = rig.advance(10)
    assert given(out) == [("T1", "p2")] and escalations(out) == []
    move = out[0]
    assert isinstance(move, Reassign) and move.level == 0 and move.from_operator == "p1"
    assert move.reason.startswith("not started within 30 min (default)")
    assert move.to_event() == ("task.reassigned", {"task_id": "T1", "from_operator": "p1", "to_operator": "p2",
                                                   "reason": move.reason})
    rig.advance(60)
    stats = rig.engine.picker_stats("p1")  # the old picker has a timeout counted
    assert stats is not None and stats.timeouts == 1 and stats.failures == 1

    out = rig.advance(30 * 60)
    assert escalations(out) == [("T1", 1)]
    assert given(out) == [("T1", "p1")]
    assert isinstance(out[1], Reassign) and out[1].level == 1 and out[1].reason.startswith("level 1: backup")
    assert out[0].to_event() == ("task.escalated", {"task_id": "T1", "level": 1, "reason": out[0].reason})

    out = rig.advance(30 * 60)
    assert escalations(out) == [("T1", 2)] and given(out) == []
    assert "supervisor" in out[0].reason
    status = rig.engine.task_status("T1")
    assert status is not None and status.escalation == 2 and status.reassignments == 2

    assert rig.advance(3 * 3600, step=60) == []  # nothing after level 2: the supervisor has it


def test_started_task_is_not_escalated() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1")
    rig.tick()
    rig.advance(29 * 60)
    rig.engine.on_first_scan("T1", rig.t)
    assert rig.advance(2 * 3600, step=60) == []


def test_cold_chain_escalates_after_10_minutes() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1", cold_chain=True)
    rig.tick()
    assert rig.advance(10 * 60 - 10) == []
    assert given(rig.advance(10)) == [("T1", "p2")]


def test_level_1_goes_one_over_the_cap_when_nobody_is_under_it() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    rig.picker("p2")
    rig.engine.set_hold("operator", "p1", True)  # so that p2 takes the next three
    for i in range(3):
        rig.task(f"F{i}")
    rig.tick()
    rig.engine.set_hold("operator", "p1", False)
    assert [rig.holder(f"F{i}") for i in range(3)] == ["p2"] * 3
    for i in range(3):
        rig.engine.on_first_scan(f"F{i}", rig.t)
    out = rig.advance(30 * 60)
    # p2 is at its cap: no plain reassignment is possible, so straight to level 1 with cap + 1.
    assert escalations(out) == [("T1", 1)] and given(out) == [("T1", "p2")]


def test_no_backup_means_level_2_at_once() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    out = rig.advance(30 * 60)
    assert escalations(out) == [("T1", 2)]
    assert "no backup picker available" in out[0].reason


def test_time_of_day_schedule() -> None:
    schedule = EscalationSchedule.parse([{"from": "06:00", "after_min": 15, "cold_chain_after_min": 5},
                                         {"from": "22:00", "after_min": 45}])
    rig = Rig(NO_BREAKER, schedule=schedule)  # the clock starts at 08:00 UTC
    rig.picker("p1")
    rig.picker("p2")
    rig.task("T1")
    rig.tick()
    assert rig.advance(15 * 60 - 10) == []
    out = rig.advance(10)
    assert given(out) == [("T1", "p2")] and "(schedule from 06:00)" in out[0].reason


def test_schedule_picks_the_entry_in_force() -> None:
    from datetime import UTC, datetime

    s = EscalationSchedule.parse([{"from": "06:00", "after_min": 15}, {"from": "22:00", "after_min": 45}])
    assert s.base_s(datetime(2026, 1, 1, 7, 0, tzinfo=UTC), False)[0] == 15 * 60
    assert s.base_s(datetime(2026, 1, 1, 23, 0, tzinfo=UTC), False)[0] == 45 * 60
    assert s.base_s(datetime(2026, 1, 1, 3, 0, tzinfo=UTC), False)[0] == 45 * 60  # the night entry wraps
    assert s.base_s(datetime(2026, 1, 1, 3, 0, tzinfo=UTC), True)[0] == 10 * 60  # default cold chain


def test_learned_threshold_is_bounded() -> None:
    lt = LearnedThresholds(min_samples=20)
    assert lt.threshold_s("a:normal", 1800) is None
    for _ in range(20):
        lt.record("a:normal", 60)
    thr, src = lt.threshold_s("a:normal", 1800) or (0.0, "")
    assert thr == 600 and src.startswith("learned p90")  # 90 s is below the floor of base/3
    for _ in range(200):
        lt.record("a:normal", 3600)
    assert (lt.threshold_s("a:normal", 1800) or (0.0, ""))[0] == 1800  # never beyond the configured limit
    for _ in range(200):
        lt.record("a:normal", 800)
    assert (lt.threshold_s("a:normal", 1800) or (0.0, ""))[0] == pytest.approx(1200)


def test_engine_uses_learned_thresholds() -> None:
    rig = Rig(NO_BREAKER, learned=LearnedThresholds(min_samples=20))
    rig.picker("p1")
    rig.picker("p2")
    for i in range(20):
        rig.task(f"W{i}")
        rig.tick()
        rig.engine.on_first_scan(f"W{i}", rig.t + 30)
        rig.engine.on_task_completed(f"W{i}", rig.t + 60)
        rig.advance(60)
    rig.task("T1")
    rig.tick()
    holder = rig.holder("T1")
    assert rig.advance(10 * 60 - 10) == []
    out = rig.advance(10)
    assert [d.task_id for d in out if isinstance(d, Reassign)] == ["T1"]
    assert rig.holder("T1") != holder and "learned p90" in out[0].reason


@pytest.mark.parametrize("items, message", [
    ([{"from": "6:00"}], '"from" as "HH:MM"'),
    ([{"from": "06:00", "after_min": 0}], "after_min as a number of minutes > 0"),
    ([{"from": "06:00", "cold_chain_after_min": "5"}], "cold_chain_after_min"),
    ([{"from": "06:00", "after": 5}], "unknown key 'after'"),
])
def test_bad_schedule_is_a_clear_error(items: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match="escalation schedule entry 1") as e:
        EscalationSchedule.parse(items)
    assert message in str(e.value)


def test_a_task_handed_on_late_does_not_blame_its_new_picker() -> None:
    """The task keeps its clock when handed on (p1 went on break 29 minutes in); p2 had it one minute when the
    time ran out, and the timeout was counted against p2 (their index fell below p1's)."""
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]
    rig.advance(29 * 60, step=60)
    rig.picker("p2")
    rig.engine.on_break_start("p1", rig.t)
    assert given(rig.tick()) == [("T1", "p2")]
    out: list[Decision] = []
    timeouts = 0
    for _ in range(4):  # each minute's interval, as it closes
        out += rig.advance(60, step=60)
        stats = rig.engine.picker_stats("p2")
        assert stats is not None
        timeouts += stats.timeouts
    assert escalations(out) == [("T1", 2)]  # nobody else to move it to: the supervisor
    assert timeouts == 0


def test_a_task_past_level_2_handed_on_is_not_escalated_again() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    out = rig.advance(31 * 60, step=60)
    assert escalations(out) == [("T1", 2)]  # no one to move it to
    rig.picker("p2")
    rig.engine.on_break_start("p1", rig.t)
    out = rig.advance(3 * 3600, step=60)
    assert given(out) == [("T1", "p2")] and escalations(out) == []


def started_and_left() -> Rig:
    """p1 started T1 and logged out."""
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    rig.engine.on_first_scan("T1", rig.t)
    rig.engine.on_logout("p1", rig.t)
    return rig


def test_a_picker_logging_out_with_a_started_task_tells_the_supervisor_unless_back_in_time() -> None:
    """Started work stays with its picker (units are in their tote); once they logged out, nothing watched it
    and the order waited silently. Now it is timed like unstarted work: back within the period, nothing."""
    rig = started_and_left()
    rig.advance(20 * 60, step=60)
    rig.engine.on_login("p1", ["a"], rig.t)  # a battery swapped: back in time
    assert escalations(rig.advance(3600, step=60)) == []
    rig.engine.on_logout("p1", rig.t)  # gone for good
    assert escalations(rig.advance(29 * 60, step=60)) == []
    out = rig.advance(2 * 60, step=60)
    assert escalations(out) == [("T1", 2)]
    d = next(d for d in out if isinstance(d, Escalate))
    assert d.operator_id == "p1" and "logged out with the task started" in d.reason
    assert rig.holder("T1") == "p1"
    assert escalations(rig.advance(3 * 3600, step=60)) == []  # told once
    rig.engine.on_login("p1", ["a"], rig.t)  # back, and gone again for good: told again (its level was 2
    rig.engine.on_logout("p1", rig.t)  # already, which had kept this absence from being timed at all)
    assert escalations(rig.advance(31 * 60, step=60)) == [("T1", 2)]


def test_a_started_task_whose_picker_left_during_a_hold_is_timed_after_it() -> None:
    """A review: the absence's timer fell due during a zone hold and was dropped, so a picker who never came back
    was never reported after the release."""
    rig = started_and_left()
    rig.engine.set_hold("zone", "a", True)
    assert escalations(rig.advance(40 * 60, step=60)) == []
    rig.engine.set_hold("zone", "a", False)
    assert escalations(rig.advance(29 * 60, step=60)) == []  # a fresh period from the release
    assert escalations(rig.advance(2 * 60, step=60)) == [("T1", 2)]


def test_a_task_escalated_before_it_started_is_still_timed_when_its_picker_leaves() -> None:
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    assert escalations(rig.advance(31 * 60, step=60)) == [("T1", 2)]  # not started in time, nobody else
    rig.engine.on_first_scan("T1", rig.t)
    rig.engine.on_logout("p1", rig.t)
    assert escalations(rig.advance(31 * 60, step=60)) == [("T1", 2)]


def test_a_requeued_task_given_out_after_a_zone_hold_gets_a_fresh_period() -> None:
    """A review: the fresh period after a hold went to the queue's timer only; the task kept its clock from before
    the hold, and the picker who got it after the release lost it a minute later, "not started within 30 min"."""
    rig = Rig(NO_BREAKER)
    rig.picker("p1")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]
    rig.engine.on_logout("p1", rig.t)  # back to the queue, its clock from minute 0
    rig.tick()
    rig.engine.set_hold("zone", "a", True)
    assert escalations(rig.advance(2 * 3600, step=60)) == []
    rig.engine.set_hold("zone", "a", False)
    assert escalations(rig.advance(3 * 60, step=60)) == []
    rig.picker("p1")
    rig.picker("p2")
    out = rig.advance(25 * 60, step=60)
    assert len(given(out)) == 1 and escalations(out) == []  # given out once (back from the queue), and kept


def test_a_task_pushed_twice_between_ticks_is_timed_once() -> None:
    """A review: two pushes between ticks (an order hold released, then the zone handoff) gave the task two timers
    of one gen; during a zone hold both re-checked, and after the release the second escalated at once."""
    rig = Rig(NO_BREAKER)
    rig.picker("pb", ["b"])
    rig.task("Tb", zone="b", order_id="O")
    rig.tick()
    rig.engine.on_first_scan("Tb", rig.t)
    rig.task("Ta", zone="a", order_id="O")
    rig.engine.set_hold("order", "O", True)
    rig.tick()
    rig.engine.set_hold("order", "O", False)
    rig.engine.on_task_completed("Tb", rig.t)  # the zone handoff pushes Ta again
    rig.engine.set_hold("zone", "a", True)
    assert escalations(rig.advance(2 * 3600, step=60)) == []
    rig.engine.set_hold("zone", "a", False)
    assert escalations(rig.advance(10 * 60, step=60)) == []  # a fresh period from the release
