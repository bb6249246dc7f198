"""Strategies per zone, the live A/B split, and the A/B floor simulation's direction."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.domain.dispatch import (
    HEALTH,
    ROUND_ROBIN,
    ABSplit,
    DispatchEngine,
    DispatchSettings,
    PickerView,
    StrategyTable,
    TaskView,
    bucket,
)
from simulators.ab import DEFAULT_LOAD, add_parser, build, run_ab, summary, table, verdicts
from simulators.ab.cli import parse_seeds
from tests.dispatch.conftest import Rig, given


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("T-000123") == bucket("T-000123")
    assert bucket("T-000123") != bucket("T-000123", salt="other")
    share = sum(bucket(f"T-{i}") < 0.2 for i in range(20_000)) / 20_000
    assert 0.18 < share < 0.22


def test_ab_split_is_deterministic_per_task_id() -> None:
    def arms() -> dict[str, str]:
        e = DispatchEngine(strategies=StrategyTable(HEALTH, ab=ABSplit(ROUND_ROBIN, 0.3)))
        for i in range(200):
            e.add_task(TaskView(f"T{i}", f"O{i}", "a"), 0.0)
        return {f"T{i}": s.strategy for i in range(200) if (s := e.task_status(f"T{i}")) is not None}

    first, second = arms(), arms()
    assert first == second
    assert {tid for tid, s in first.items() if s == ROUND_ROBIN} == {f"T{i}" for i in range(200)
                                                                     if bucket(f"T{i}") < 0.3}


def test_ab_split_limited_to_zones() -> None:
    table_ = StrategyTable(HEALTH, ab=ABSplit(ROUND_ROBIN, 1.0, zones=frozenset({"b"})))
    assert table_.for_task("T1", "a") == HEALTH and table_.for_task("T1", "b") == ROUND_ROBIN


def test_round_robin_zone_is_static() -> None:
    rig = Rig(DispatchSettings(breaker_threshold=0), strategies=StrategyTable(HEALTH, {"b": ROUND_ROBIN}))
    for op in ("p1", "p2", "p3"):
        rig.picker(op, zones=("b",))
    rig.picker("p4", zones=("b",), on_break=True)
    for i in range(8):
        rig.task(f"T{i}", zone="b")
    out = rig.tick()
    # In turn, regardless of load and past the cap, skipping the picker on break.
    assert given(out) == [("T0", "p1"), ("T1", "p2"), ("T2", "p3"), ("T3", "p1"), ("T4", "p2"), ("T5", "p3"),
                          ("T6", "p1"), ("T7", "p2")]
    assert out[0].reason == "round robin: next in rotation of zone b"
    assert rig.advance(3 * 3600, step=60) == []  # never moved, never escalated
    figs = rig.engine.strategy_figures()
    assert figs[ROUND_ROBIN].tasks == 8 and figs[HEALTH].tasks == 0


def test_strategy_figures() -> None:
    e = DispatchEngine(strategies=StrategyTable(HEALTH, ab=ABSplit(ROUND_ROBIN, 0.5)))
    e.set_picker(PickerView("p1", frozenset({"a"})), 0.0)
    ids = [f"T{i}" for i in range(6)]
    for tid in ids:
        e.add_task(TaskView(tid, "O" + tid, "a", (1, 2)), 0.0)
    e.tick(0.0, datetime(2026, 11, 23, tzinfo=UTC))
    held = [tid for tid in ids if (st := e.task_status(tid)) is not None and st.operator_id is not None]
    for tid in held:
        e.on_first_scan(tid, 60.0)
    for tid in held:
        e.on_line_done(tid, 90.0, 2)
    for tid in held:
        e.on_task_completed(tid, 120.0)
    figs = e.strategy_figures()
    rr = sum(bucket(t) < 0.5 for t in ids)
    assert figs[ROUND_ROBIN].tasks == rr
    assert figs[ROUND_ROBIN].mean_time_to_start_s == 60.0 and figs[ROUND_ROBIN].lines_per_min == 2.0
    assert figs[HEALTH].tasks == min(3, 6 - rr)  # the health arm respects the cap


def test_bad_strategy_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="dispatch strategy: expected one of health, round_robin; got 'fifo'"):
        StrategyTable("fifo")
    with pytest.raises(ValueError, match="A/B share: expected a fraction 0-1"):
        ABSplit(ROUND_ROBIN, 1.5)
    with pytest.raises(ValueError, match="A/B candidate"):
        ABSplit("static", 0.1)


def test_small_ab_run_goes_the_right_way() -> None:
    results = run_ab([1, 2], orders=400, pickers=30)
    for v in verdicts(results):
        assert v.p95_health < v.p95_static
        assert v.reduction > 0
    by = {(r.seed, r.strategy): r for r in results}
    for seed in (1, 2):
        h, s = by[(seed, HEALTH)], by[(seed, ROUND_ROBIN)]
        assert h.done == s.done == 400  # the scanner is swapped in the end: every order is finished
        assert h.waited_30 < s.waited_30 and h.mean_lead_min < s.mean_lead_min
        assert h.breaker_opened > 0 and h.moved > 0 and s.moved == 0
    text = table(results)
    assert "goal" in text and "round_robin" in text
    assert summary(results)["seeds_run"] == 2


def test_live_ab_mode_in_the_simulation() -> None:
    (_, _, ab) = run_ab([3], orders=200, pickers=30, ab_share=0.25)
    assert ab.strategy == "ab:0.25" and set(ab.figures) == {HEALTH, ROUND_ROBIN}
    assert ab.figures[ROUND_ROBIN]["tasks"] > 0


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="sim"))
    args = parser.parse_args(["ab", "--seeds", "4,5", "--orders", "10"])
    assert args.seeds == [4, 5] and args.orders == 10 and args.pickers == 30
    with pytest.raises(argparse.ArgumentTypeError, match="expected seeds as integers"):
        parse_seeds("1,x")
    bad = parser.parse_args(["ab", "--pickers", "2"])
    assert bad.func(bad) == 2


def test_one_default_load_for_the_scenario_the_command_and_the_readme() -> None:
    """`build()` without a load is the floor `floorgate sim ab` runs without `--load` (they once differed:
    0.75 against 0.65), and the README's A/B table says which load it was made at."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="sim"))
    args = parser.parse_args(["ab"])
    assert args.load == DEFAULT_LOAD
    by_default, by_cli = build(7, 300, 12), build(7, 300, 12, load=args.load)
    assert [o.arrival_s for o in by_default.orders] == [o.arrival_s for o in by_cli.orders]
    assert build(7, 300, 12, load=0.75).orders[-1].arrival_s < by_default.orders[-1].arrival_s  # it matters
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"The floor load ({DEFAULT_LOAD:g} of nominal capacity" in readme


def test_cli_runs(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="sim"))
    args = parser.parse_args(["ab", "--seeds", "1", "--orders", "60", "--pickers", "8", "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in doc["runs"]] == [HEALTH, ROUND_ROBIN]
