"""bench.journal_append, bench.journal_ceiling and bench.rss (the Foundation issue's figures) at their smallest
sizes, run as a user runs them: each exits 0, prints its table and, as its last line, one JSON object with every
figure the README quotes, and leaves no temporary file behind. The figures themselves are not asserted (shared,
noisy machines): only that they were measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, args: list[str], tmp: Path) -> tuple[str, dict[str, Any]]:
    env = {**os.environ, "TMPDIR": str(tmp), "BENCH_DIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert isinstance(last, dict) and last["bench"] == name
    return p.stdout, last


def test_journal_append_measures_the_journal_beside_one_commit_per_event(tmp_path: Path) -> None:
    out, fig = run_bench("journal_append", ["--seconds", "0.3", "--rounds", "2", "--producers", "8,32"], tmp_path)
    assert "one commit per event (baseline)" in out and "journal, 32 producers" in out
    assert fig["baseline_per_s"] > 0 and fig["events_per_s"] > 0
    assert abs(fig["ratio"] - fig["events_per_s"] / fig["baseline_per_s"]) <= 0.01 * fig["ratio"] + 0.01  # rounding
    assert set(fig["by_producers"]) == {"8", "32"} and str(fig["producers"]) in fig["by_producers"]
    assert fig["events_per_s"] == max(v["events_per_s"] for v in fig["by_producers"].values())
    assert 1 <= fig["events_per_commit"] <= 32
    assert len(fig["baseline_runs"]) == 2
    assert os.listdir(tmp_path) == []


def test_journal_ceiling_measures_the_journal_without_its_sqlite_work(tmp_path: Path) -> None:
    out, fig = run_bench("journal_ceiling", ["--seconds", "0.3", "--rounds", "1", "--producers", "32"], tmp_path)
    assert "journal, no SQLite (loop only)" in out and "asyncio only" in out
    for k in ("baseline", "journal", "no_sqlite", "asyncio_only"):
        assert fig[f"{k}_per_s"] > 0
    assert abs(fig["goal_per_s"] - 20 * fig["baseline_per_s"]) <= 11  # both rounded in the JSON
    assert os.listdir(tmp_path) == []


def test_journal_ceiling_puts_the_thread_trip_back() -> None:
    from bench import journal_ceiling
    from gateway.journal import store

    real = store.run_in_connection
    with journal_ceiling.no_sqlite():
        assert store.run_in_connection is not real
    assert store.run_in_connection is real


def test_rss_measures_the_idle_gateway_beside_its_imports(tmp_path: Path) -> None:
    out, fig = run_bench("rss", ["--seconds", "1"], tmp_path)
    assert "floorgate run (idle, default config)" in out
    assert fig["gateway_peak_mb"] > 0 and fig["imports_peak_mb"] > 0
    assert fig["ratio"] == round(fig["gateway_peak_mb"] / fig["imports_peak_mb"], 2)
    assert os.listdir(tmp_path) == []
