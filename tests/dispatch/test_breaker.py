"""The circuit breaker per picker: open after consecutive bad intervals, half-open after the cool-down with
one trial task, closed by a good interval (or open again by a bad one)."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.domain.dispatch import (
    CLOSED,
    HALF_OPEN,
    OPENED,
    Breaker,
    BreakerChange,
    Decision,
    Reassign,
    Requeue,
)
from tests.dispatch.conftest import Rig, given


def changes(decisions: Iterable[Decision]) -> list[tuple[str, str]]:
    return [(d.operator_id, d.state) for d in decisions if isinstance(d, BreakerChange)]


def rejecting(rig: Rig, op: str, seconds: float) -> list[Decision]:
    """The picker's scanner rejects a scan every 15 s."""
    out: list[Decision] = []
    for _ in range(int(seconds // 15)):
        out.extend(rig.advance(15))
        rig.engine.on_reject(op, rig.t)
    return out


def test_breaker_unit_path() -> None:
    b = Breaker(threshold=60, consecutive=3, cooldown_s=300)
    assert b.observe(50, 60) is None and b.observe(40, 120) is None
    assert b.observe(70, 180) is None  # a good interval breaks the run
    assert [b.observe(s, 240 + i) for i, s in enumerate((50, 40, 30))] == [None, None, OPENED]
    assert b.last_scores == (50, 40, 30)
    assert b.poll(242 + 299) is None
    assert b.poll(242 + 300) == HALF_OPEN
    assert b.observe(59, 600) == OPENED  # half-open and bad: open again
    assert b.poll(900) == HALF_OPEN
    assert b.observe(60, 960) == CLOSED and b.state == "closed"


def test_open_half_open_closed(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    assert given(rig.tick()) == [("T1", "p1")]

    out = rejecting(rig, "p1", 180)
    assert changes(out) == [("p1", OPENED)]
    opened = next(d for d in out if isinstance(d, BreakerChange))
    assert len(opened.scores) == 3 and all(s < 60 for s in opened.scores)
    assert opened.to_event() == ("dispatch.breaker_opened",
                                 {"operator_id": "p1", "scores": [round(s, 1) for s in opened.scores]})
    # Its unstarted task went back to the queue, and no new task reaches p1 while open.
    assert [(d.task_id, d.from_operator) for d in out if isinstance(d, Requeue)] == [("T1", "p1")]
    rig.task("T2")
    assert given(rig.tick()) == []
    assert rig.holder("T1") is None and rig.holder("T2") is None

    # Another picker takes both; the first comes back from the queue as a move away from p1.
    rig.picker("p2")
    out = rig.tick()
    assert given(out) == [("T1", "p2"), ("T2", "p2")]
    assert isinstance(out[0], Reassign) and out[0].from_operator == "p1"
    for tid in ("T1", "T2"):
        rig.engine.on_first_scan(tid, rig.t)
        rig.engine.on_line_done(tid, rig.t, 2)
        rig.engine.on_task_completed(tid, rig.t)

    # After the cool-down: half-open, one trial task only.
    out = rig.advance(300)
    assert changes(out) == [("p1", HALF_OPEN)]
    assert [d.to_event() for d in out if isinstance(d, BreakerChange)] == [None]
    for tid in ("T3", "T4", "T5", "T6", "T7"):
        rig.task(tid)
    out = rig.tick()
    assert given(out) == [("T3", "p1"), ("T4", "p2"), ("T5", "p2"), ("T6", "p2")]
    assert rig.holder("T7") is None  # p1 has had its trial; p2 is at its cap of 3
    choice = rig.engine.choose("T7", rig.t)
    notes = {c.operator_id: c.note for c in choice.candidates}
    assert notes["p1"] == "breaker half-open: trial task already given"
    assert notes["p2"].startswith("at cap")

    # p1 works the trial task well: the next interval closes the breaker.
    rig.advance(5)
    rig.engine.on_first_scan("T3", rig.t)
    rig.advance(20)
    rig.engine.on_line_done("T3", rig.t)
    rig.advance(20)
    rig.engine.on_line_done("T3", rig.t)
    rig.engine.on_task_completed("T3", rig.t)
    out = rig.advance(120)
    closed = [d for d in out if isinstance(d, BreakerChange) and d.operator_id == "p1"]
    assert [d.state for d in closed] == [CLOSED]
    assert closed[0].to_event() == ("dispatch.breaker_closed",
                                    {"operator_id": "p1", "scores": [round(closed[0].scores[0], 1)]})
    assert ("T7", "p1") in given(out)


def test_half_open_and_still_failing_opens_again(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    assert ("p1", OPENED) in changes(rejecting(rig, "p1", 180))
    out = rig.advance(300)
    assert changes(out) == [("p1", HALF_OPEN)]
    assert ("T1", "p1") in given(out)  # the trial task
    assert changes(rejecting(rig, "p1", 120)) == [("p1", OPENED)]
    assert rig.breaker("p1") == "open"


def test_idle_intervals_do_not_open_or_close(rig: Rig) -> None:
    rig.picker("p1")
    out = rig.advance(3600)
    assert changes(out) == [] and rig.breaker("p1") == "closed" and rig.index("p1") == 100


def test_a_trial_task_that_leaves_the_picker_gives_them_another(rig: Rig) -> None:
    """Found on a running floor: the half-open picker's trial task went back to the queue (a break; or its order
    was cancelled) before an interval judged it. With no work there was no evidence, the breaker stayed
    half-open with its trial "used", and the picker got nothing again while the backlog grew."""
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    assert ("p1", OPENED) in changes(rejecting(rig, "p1", 180))
    out = rig.advance(300)
    assert changes(out) == [("p1", HALF_OPEN)] and ("T1", "p1") in given(out)  # the trial task
    rig.engine.on_break_start("p1", rig.t)  # it goes back to the queue
    assert rig.holder("T1") is None
    rig.engine.on_break_end("p1", rig.t + 1)
    out = rig.advance(1)
    assert given(out) == [("T1", "p1")]  # a trial again
    rig.task("T2")
    rig.tick()
    assert rig.holder("T2") is None  # one trial at a time
    rig.engine.on_task_removed("T1", rig.t)  # its order cancelled
    out = rig.tick()
    assert given(out) == [("T2", "p1")]
    assert rig.breaker("p1") == "half_open"
