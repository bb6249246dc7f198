"""bench.sync_drain, bench.sync_outage and bench.bulk at their smallest sizes, run as a user runs them: each
exits 0 with its JSON object as the last line and leaves no temporary directory and no process behind;
interrupted with SIGINT (Ctrl-C) while its broker and gateway run, it exits 130 and leaves nothing behind
either. Each run gets a private TMPDIR, so "nothing behind" is exact: the directory stays empty and no live
process names it in its command line (the broker's config, the gateway's config and the raw publisher's
database all lie in it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import processes

ROOT = Path(__file__).resolve().parents[2]
SMALLEST = {
    "sync_drain": ["--events", "500", "--outage-s", "0.3"],
    "sync_outage": ["--outage-s", "1", "--rate", "20"],
    "bulk": ["--skus", "3000", "--locations", "300", "--parts", "2", "--idle-s", "1"],  # parts for the worker
}
# Interrupted while the most is running: sync_drain's gateway process (during the outage), sync_outage's broker.
INTERRUPTED = {
    "sync_drain": (["--events", "500", "--outage-s", "20"], "gateway.cli"),
    "sync_outage": (["--outage-s", "20", "--rate", "20"], "mosquitto"),
    "bulk": (["--skus", "3000", "--locations", "300", "--parts", "2", "--idle-s", "30"], "mosquitto"),
}


def naming(tmp: Path) -> list[str]:
    """`pid command line` of every live process whose command line names `tmp`."""
    return [f"{pid} {cmdline}" for pid, _, cmdline in processes() if str(tmp) in cmdline]


def bench_env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    env.pop("BENCH_DIR", None)  # else the bench's directory would go there
    return env


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_bench_runs_and_leaves_nothing_behind(name: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = subprocess.run([sys.executable, "-m", f"bench.{name}", *SMALLEST[name]], cwd=ROOT, env=bench_env(tmp),
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert isinstance(last, dict) and last["bench"] == name
    assert sorted(os.listdir(tmp)) == []
    assert naming(tmp) == []


@pytest.mark.parametrize("name", sorted(INTERRUPTED))
def test_bench_interrupted_leaves_nothing_behind(name: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args, running = INTERRUPTED[name]
    with open(tmp_path / "out", "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, env=bench_env(tmp),
                             stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not any(running in line for line in naming(tmp)):
            assert p.poll() is None, (tmp_path / "out").read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, f"no {running} after 60 s"
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)  # to the bench alone, not its process group: it has to stop the rest
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    log = (tmp_path / "out").read_text(errors="replace")
    assert rc == 128 + signal.SIGINT, log[-4000:]
    assert "interrupted by SIGINT" in log
    assert sorted(os.listdir(tmp)) == []
    assert naming(tmp) == [], log[-4000:]


def test_failing_bench_leaves_nothing_behind(tmp_path: Path) -> None:
    """A failure half-way (here the gateway refuses its config: an in-flight window of 0) stops the broker too."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = subprocess.run([sys.executable, "-m", "bench.sync_drain", "--events", "100", "--window", "0"], cwd=ROOT,
                       env=bench_env(tmp), capture_output=True, text=True, timeout=90)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-4000:]
    assert "mqtt.inflight" in p.stderr
    assert sorted(os.listdir(tmp)) == []
    assert naming(tmp) == []
