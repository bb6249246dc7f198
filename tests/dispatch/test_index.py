"""The availability index: its figures per interval, its formula, and breaks not counting against it."""

from __future__ import annotations

import pytest

from gateway.domain.dispatch import OPENED, BreakerChange, IndexBook, IntervalStats, compute_index
from tests.dispatch.conftest import Rig


def test_idle_picker_scores_100() -> None:
    assert compute_index([IntervalStats(0, 60, counted_s=60)], 45, 30) == pytest.approx(100)


def test_formula_on_known_figures() -> None:
    # 2 lines in 120 busy seconds, one first scan after 60 s, 2 failures, references 45 s / 30 s.
    s = IntervalStats(0, 60, counted_s=120, busy_s=120, lines=2, first_scans=1, first_scan_wait_s=60, rejects=2)
    t = min(1, 3 * 45 / (120 + 45))
    r = min(1, 2 * 30 / (60 + 30))
    q = 3 / (3 + 2)
    assert compute_index([s], 45, 30) == pytest.approx(100 * (0.5 * t + 0.2 * r + 0.3 * q))


def test_interval_figures_from_intake() -> None:
    book = IndexBook(interval_s=60, start=0)
    book.on_login("p1", 0)
    book.on_assigned("p1", 0)
    book.on_first_scan("p1", 20)
    book.on_line_done("p1", 35)
    book.on_line_done("p1", 50)
    book.on_reject("p1", 40)
    book.on_short("p1", 50)
    book.on_task_done("p1", 50)
    (sample,) = book.advance(60)
    s = sample.stats
    assert (s.lines, s.first_scans, s.first_scan_wait_s, s.rejects, s.shorts) == (2, 1, 20, 1, 1)
    assert s.busy_s == 50 and s.counted_s == 60
    assert s.mean_line_s == 25 and s.mean_first_scan_s == 20
    assert s.failure_rate == pytest.approx(2 / 4)
    assert sample.evidence and sample.t == 60


def test_reference_pace_is_the_median_picker() -> None:
    book = IndexBook(interval_s=60, start=0)
    for op in ("p1", "p2", "p3"):
        book.on_login(op, 0)
        book.on_assigned(op, 0)
        book.on_first_scan(op, 0)
    for op, lines in (("p1", 4), ("p2", 3), ("p3", 6)):
        book.on_line_done(op, 30, lines)
    book.advance(60)
    assert book.ref_line == pytest.approx(60 / 4)  # 15, 20 and 10 s per line


def test_a_picker_stuck_with_work_falls_below_60(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    rig.engine.on_first_scan("T1", rig.t + 5)
    scores = []
    for _ in range(5):
        rig.advance(60)
        scores.append(rig.index("p1"))
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 60 > scores[-1]


def test_rejected_scans_drop_the_index_within_one_interval(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    for _ in range(4):
        rig.advance(15)
        rig.engine.on_reject("p1", rig.t)
    rig.advance(1)
    assert rig.index("p1") < 60


def test_a_break_does_not_count_against_the_index() -> None:
    def stuck(on_break: bool) -> tuple[bool, float]:
        r = Rig()
        r.picker("p1")
        r.task("T1")
        r.tick()
        r.engine.on_first_scan("T1", r.t)  # started, then nothing moves for 15 minutes
        if on_break:
            r.engine.on_break_start("p1", r.t)
        for _ in range(15):
            r.advance(60)
            r.engine.on_reject("p1", r.t)  # even scans on a break are not held against them
        opened = any(isinstance(d, BreakerChange) and d.state == OPENED for d in r.log)
        return opened, r.index("p1")

    assert stuck(on_break=False)[0]
    assert stuck(on_break=True) == (False, 100)


def test_break_minutes_are_not_counted(rig: Rig) -> None:
    rig.picker("p1")
    rig.task("T1")
    rig.tick()
    rig.engine.on_first_scan("T1", rig.t)
    rig.advance(30)
    rig.engine.on_break_start("p1", rig.t)
    rig.advance(600)
    stats = rig.engine.picker_stats("p1")
    assert stats is not None
    assert stats.counted_s == pytest.approx(30) and stats.busy_s == pytest.approx(30)
    rig.engine.on_break_end("p1", rig.t)
    rig.advance(90)
    stats = rig.engine.picker_stats("p1")
    assert stats is not None and stats.counted_s == pytest.approx(60)


def test_time_going_backwards_is_taken_as_now() -> None:
    book = IndexBook(interval_s=60, start=0)
    book.on_login("p1", 10)
    book.on_assigned("p1", 5)  # earlier than the last event: treated as t=10
    (sample,) = book.advance(60)
    assert sample.stats.busy_s == pytest.approx(50)
