"""Durable event appends per second through the journal (production settings: WAL, synchronous=FULL, group
commit, one structured log line per event, the gateway's interpreter settings from gateway/runtime.py),
beside the disk's own fsync-bound rate measured in the same run: the same SQLite, the same table and payload
size, one commit per event.

The journal is driven by N concurrent producers, each submitting one change with one event and waiting for its
commit before the next (a scan waits for its commit before its beep). Group commit needs concurrency to fill a
commit, so the rate is measured at several N (64, 256 and 512 by default; 512 fills MAX_BATCH) and the
journal's capacity is the best of them; every N is printed. Baseline and journal runs are interleaved in
rounds and the medians compared, because this machine's fsync rate drifts by a third from minute to minute.

    python -m bench.journal_append [--seconds 1.5] [--rounds 3] [--producers 64,256,512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
    """One transaction and one fsync per event, the fastest way: a single INSERT in autocommit mode is its own
    transaction (no BEGIN/COMMIT round trips), and SQLite's own automatic checkpoint every 1,000 pages keeps the
    WAL file short and reused (a WAL that keeps growing makes every fsync dearer: 5,000 against 7,400 commits/s
    here). What a naive outbox gets from this disk."""
    conn = sqlite3.connect(path, isolation_level=None)
    for k, v in {**PRAGMAS, "wal_autocheckpoint": "1000"}.items():
        conn.execute(f"PRAGMA {k}={v}")
    conn.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY, event_id TEXT, type TEXT, ts TEXT, order_id TEXT, "
                 "journal TEXT, body TEXT)")
    body = json.dumps({"v": 1, "data": PAYLOAD, "pad": "x" * 200})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", (n + 1, "id", "pick.line_confirmed", "ts",
                                                                       "O-1", "j", body))
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


async def produce(submit: Callable[[Change], Awaitable[Any]], producers: int, seconds: float
                  ) -> tuple[float, list[float]]:
    """`producers` tasks, each submitting one change with one event and waiting for it before its next, for
    `seconds`; returns the time they ran and every wait, in seconds."""
    stop = False
    latencies: list[float] = []

    async def producer(k: int) -> None:
        i = 0
        while not stop:
            ch = Change(cmd_id=None)
            ch.emit("pick.line_confirmed", PAYLOAD, f"O-{k}-{i}")
            t = time.perf_counter()
            await submit(ch)
            latencies.append(time.perf_counter() - t)
            i += 1

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(producer(k), name=f"producer-{k}") for k in range(producers)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0, latencies


async def journal_rate(path: Path, seconds: float, producers: int) -> tuple[float, float, int]:
    j = await Journal.open(path, site="dc1", gateway="zone-a", clock=SystemClock())
    start_seq, start_commits = j.last_seq, j.commits
    elapsed, latencies = await produce(j.submit, producers, seconds)
    events = j.last_seq - start_seq
    commits = j.commits - start_commits
    await j.close()
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    return events / elapsed, p99, events // max(commits, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each measured run")
    ap.add_argument("--rounds", type=int, default=3, help="baseline and journal runs, interleaved")
    ap.add_argument("--producers", default="64,256,512", help="comma-separated concurrency levels")
    args = ap.parse_args()
    levels = [int(x) for x in args.producers.split(",")]
    runtime.tune()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the run
    setup_logging("info", devnull)  # production formatting cost, without flooding the terminal
    logging.getLogger("floorgate.journal").setLevel(logging.INFO)
    bases: list[float] = []
    runs: dict[int, list[tuple[float, float, int]]] = {n: [] for n in levels}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ".")) as d:
        for r in range(args.rounds):
            bases.append(baseline(Path(d) / f"baseline-{r}.db", args.seconds))
            for n in levels:
                runs[n].append(asyncio.run(journal_rate(Path(d) / f"journal-{r}-{n}.db", args.seconds, n)))
            for f in Path(d).iterdir():  # a fresh file per run; a round's files are not kept
                f.unlink()
    base = statistics.median(bases)
    rate = {n: statistics.median(x[0] for x in runs[n]) for n in levels}
    p99 = {n: statistics.median(x[1] for x in runs[n]) for n in levels}
    per_commit = {n: round(statistics.median(x[2] for x in runs[n])) for n in levels}
    best = max(levels, key=lambda n: rate[n])
    ratio = rate[best] / base
    print(f"journal_append: durable events/s (WAL, synchronous=FULL), medians of {args.rounds} interleaved rounds "
          f"of {args.seconds:g} s")
    print(f"{'run':34} {'events/s':>10} {'ratio':>7} {'events/commit':>14} {'commit wait p99':>16}")
    print(f"{'one commit per event (baseline)':34} {base:10.0f} {1:7.1f}x {1:14d} {'':>16}")
    for n in levels:
        print(f"{f'journal, {n} producers':34} {rate[n]:10.0f} {rate[n] / base:7.1f}x {per_commit[n]:14d} "
              f"{p99[n]:13.1f} ms")
    met = {True: "met", False: "NOT met"}
    print(f"capacity (best of the above): {rate[best]:.0f}/s at {best} producers, {ratio:.1f}x the baseline; "
          f"goals: >= 5,000/s {met[rate[best] >= 5000]}, >= 20x {met[ratio >= 20]}")
    print(json.dumps({"bench": "journal_append", "events_per_s": round(rate[best]), "baseline_per_s": round(base),
                      "ratio": round(ratio, 2), "producers": best, "events_per_commit": per_commit[best],
                      "commit_wait_p99_ms": round(p99[best], 2), "rounds": args.rounds, "seconds": args.seconds,
                      "baseline_runs": [round(b) for b in bases],
                      "by_producers": {str(n): {"events_per_s": round(rate[n]), "ratio": round(rate[n] / base, 2),
                                                "events_per_commit": per_commit[n],
                                                "commit_wait_p99_ms": round(p99[n], 2)} for n in levels}}))


if __name__ == "__main__":
    main()
