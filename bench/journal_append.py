"""Durable event appends per second through the journal (production settings: WAL, synchronous=FULL, group
commit, one structured log line per event, the gateway's interpreter settings from gateway/runtime.py),
beside the disk's own fsync-bound rate measured in the same run: the same SQLite, the same table and payload
size, one commit per event.

    python -m bench.journal_append [--seconds 3] [--producers 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from gateway import runtime
from gateway.clock import SystemClock
from gateway.domain.change import Change
from gateway.journal import Journal
from gateway.journal.store import PRAGMAS
from gateway.logs import setup_logging

PAYLOAD = {"task_id": "T-000123", "line_no": 3, "sku": "SKU-000042", "gtin": "04006381333931", "lot": "L2026-11",
           "expiry": "2027-06-30", "serials": [], "qty": 1, "location": "A-01-03", "operator_id": "p17",
           "via": "scan"}


def baseline(path: Path, seconds: float) -> float:
    """One transaction and one fsync per event: what a naive outbox gets from this disk."""
    conn = sqlite3.connect(path, isolation_level=None)
    for k, v in PRAGMAS.items():
        conn.execute(f"PRAGMA {k}={v}")
    conn.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY, event_id TEXT, type TEXT, ts TEXT, order_id TEXT, "
                 "journal TEXT, body TEXT)")
    body = json.dumps({"v": 1, "data": PAYLOAD, "pad": "x" * 200})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", (n + 1, "id", "pick.line_confirmed", "ts",
                                                                       "O-1", "j", body))
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


async def journal_rate(path: Path, seconds: float, producers: int) -> tuple[float, float, int]:
    j = await Journal.open(path, site="dc1", gateway="zone-a", clock=SystemClock())
    stop = False
    latencies: list[float] = []

    async def producer(k: int) -> None:
        i = 0
        while not stop:
            ch = Change(cmd_id=None)
            ch.emit("pick.line_confirmed", PAYLOAD, f"O-{k}-{i}")
            t = time.perf_counter()
            await j.submit(ch)
            latencies.append(time.perf_counter() - t)
            i += 1

    start_seq, start_commits = j.last_seq, j.commits
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(producer(k), name=f"producer-{k}") for k in range(producers)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    events = j.last_seq - start_seq
    commits = j.commits - start_commits
    await j.close()
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    return events / elapsed, p99, events // max(commits, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--producers", type=int, default=256)
    args = ap.parse_args()
    runtime.tune()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the run
    setup_logging("info", devnull)  # production formatting cost, without flooding the terminal
    logging.getLogger("floorgate.journal").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ".")) as d:
        base = baseline(Path(d) / "baseline.db", args.seconds)
        rate, p99, per_commit = asyncio.run(journal_rate(Path(d) / "journal.db", args.seconds, args.producers))
    ratio = rate / base
    print("journal_append: durable events/s (WAL, synchronous=FULL)")
    print(f"{'measure':44} {'value':>12}")
    print(f"{'one commit per event (fsync-bound baseline)':44} {base:12.0f}")
    print(f"{'journal, group commit':44} {rate:12.0f}")
    print(f"{'ratio journal / baseline':44} {ratio:12.1f}x   (goal >= 20x)")
    print(f"{'events per commit (mean)':44} {per_commit:12d}")
    print(f"{'commit wait p99 (ms)':44} {p99:12.1f}")
    print(f"{'goal >= 5,000 events/s':44} {'met' if rate >= 5000 else 'NOT met':>12}")
    print(json.dumps({"bench": "journal_append", "events_per_s": round(rate), "baseline_per_s": round(base),
                      "ratio": round(ratio, 2), "events_per_commit": per_commit, "commit_wait_p99_ms": round(p99, 2),
                      "producers": args.producers}))


if __name__ == "__main__":
    main()
