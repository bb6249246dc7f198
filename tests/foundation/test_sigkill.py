"""Crash safety: a child appending events is SIGKILLed at 20 random moments. After each restart `seq` is
contiguous, nothing the child saw committed is missing, and `integrity_check` is ok."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

CHILD = Path(__file__).with_name("journal_child.py")


def run_and_kill(data_dir: Path, seed: int, kill_after: float) -> tuple[int, list[tuple[int, int]]]:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), str(seed)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    t = threading.Thread(target=reader, name="child-reader")
    t.start()
    try:
        assert ready.wait(60), "child did not start"
        time.sleep(kill_after)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        t.join(30)
    start = int(lines[0].split()[1])
    committed = [(int(a), int(b)) for _, a, b in (ln.split() for ln in lines[1:] if ln.startswith("C ")
                                                  and ln.endswith("\n"))]
    return start, committed


def test_sigkill_at_20_random_moments(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    seen_last = 0
    total_committed = 0
    for round_no in range(20):
        start, committed = run_and_kill(tmp_path, round_no, rng.uniform(0.02, 0.4))
        assert start >= seen_last, f"round {round_no}: restarted at {start}, but {seen_last} was committed"
        conn = sqlite3.connect(tmp_path / "floorgate.db")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
            last_meta = int(conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
        finally:
            conn.close()
        assert seqs == list(range(1, len(seqs) + 1)), f"round {round_no}: gap in seq"
        assert last_meta == len(seqs)
        for a, b in committed:
            assert b <= len(seqs), f"round {round_no}: events {a}..{b} were reported committed but are missing"
        seen_last = len(seqs)
        total_committed += len(committed)
    assert seen_last > 0 and total_committed > 20
