"""Time to choose a picker for a task: 50 pickers in one zone, 5,000 open tasks, goal < 1 ms per decision.

Measured three ways in the same run:
- `choose`: the engine ranking all 50 pickers with its full explanation (a Candidate per picker), without
  applying it;
- `assign`: a new task added and assigned by `tick` (ranking, bookkeeping, escalation timer, decision);
- baseline: a plain `max()` over the same 50 picker records by index minus load, the least a ranking
  can cost in Python.

    python -m bench.dispatch [--decisions 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from datetime import UTC, datetime

from gateway.domain.dispatch import DispatchEngine, DispatchSettings, PickerView, TaskView

N_PICKERS = 50
N_TASKS = 5000
N_PROBES = 200  # of the open tasks, the queued ones that `choose` is timed on


def build() -> tuple[DispatchEngine, list[str], datetime]:
    rng = random.Random(7)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    # A cap high enough that every picker stays a candidate with 100 tasks in hand: the worst case.
    engine = DispatchEngine(DispatchSettings(task_cap=1000), start=0.0)
    for i in range(N_PICKERS):
        engine.set_picker(PickerView(f"p{i:02d}", frozenset({"a"}), on_break=i % 17 == 0), 0.0)
    for i in range(N_TASKS - N_PROBES):
        engine.add_task(TaskView(f"T{i:05d}", f"O{i:05d}", "a", (1, 2, 3), value_cents=rng.randint(0, 50_000)), 0.0)
    engine.tick(0.0, now)
    for i in range(N_TASKS - N_PROBES):
        engine.on_first_scan(f"T{i:05d}", 0.0)
    # Some history so pickers differ: lines at different paces, a few rejects, over a few intervals.
    t = 0.0
    for _ in range(5):
        t += 60.0
        for i in range(N_PICKERS):
            op = f"p{i:02d}"
            for _ in range(rng.randint(0, 4)):
                engine.on_line_done(f"T{rng.randrange(N_TASKS - N_PROBES):05d}", t)
            if rng.random() < 0.3:
                engine.on_reject(op, t)
        engine.tick(t, now)
    queued = [f"Q{i:05d}" for i in range(N_PROBES)]
    for tid in queued:
        engine.add_task(TaskView(tid, "O" + tid, "a", (1,)), t)
    engine.set_hold("zone", "a", True)  # keep the probe tasks queued while `choose` is timed
    engine.tick(t, now)
    return engine, queued, now


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=20_000)
    n = ap.parse_args().decisions
    engine, queued, now = build()
    open_tasks = sum(p.open_tasks for p in engine.pickers()) + engine.queued()
    # The same 50 pickers' index and load, as plain tuples.
    pickers = [(p.score, p.open_tasks, p.operator_id) for p in engine.pickers()]
    weight = engine.settings.load_weight

    gc.collect()
    base: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        max(pickers, key=lambda p: p[0] - weight * p[1])
        base.append((time.perf_counter_ns() - t0) / 1000)

    ch: list[float] = []
    for i in range(n):
        tid = queued[i % len(queued)]
        t0 = time.perf_counter_ns()
        engine.choose(tid, 300.0)
        ch.append((time.perf_counter_ns() - t0) / 1000)

    engine.set_hold("zone", "a", False)
    engine.tick(300.0, now)  # the probe tasks go out
    asg: list[float] = []
    for i in range(min(n, 5000)):
        tid = f"N{i:05d}"
        t0 = time.perf_counter_ns()
        engine.add_task(TaskView(tid, "O" + tid, "a", (1,)), 300.0)
        out = engine.tick(300.0, now)
        asg.append((time.perf_counter_ns() - t0) / 1000)
        assert len(out) == 1, out
        engine.on_task_removed(tid, 300.0)  # keep the floor at 5,000 open tasks

    rows = [("plain max() baseline", base), ("engine choose (explained)", ch), ("engine add + assign", asg)]
    print(f"{N_PICKERS} pickers in one zone, {open_tasks} open tasks, {n} decisions")
    print(f"{'':28} {'p50 us':>9} {'p99 us':>9} {'p50 x baseline':>15}")
    b50 = pct(base, 0.5)
    for name, xs in rows:
        print(f"{name:28} {pct(xs, 0.5):9.1f} {pct(xs, 0.99):9.1f} {pct(xs, 0.5) / b50:15.1f}")
    result = {
        "pickers": N_PICKERS, "open_tasks": open_tasks, "decisions": n,
        "baseline_p50_us": round(b50, 2), "baseline_p99_us": round(pct(base, 0.99), 2),
        "choose_p50_us": round(pct(ch, 0.5), 2), "choose_p99_us": round(pct(ch, 0.99), 2),
        "assign_p50_us": round(pct(asg, 0.5), 2), "assign_p99_us": round(pct(asg, 0.99), 2),
        "choose_vs_baseline_p50": round(pct(ch, 0.5) / b50, 1),
        "goal_us": 1000, "goal_met": pct(ch, 0.99) < 1000 and pct(asg, 0.99) < 1000,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
