"""How far bench.journal_append's ratio can go on this machine: the journal's rate with its SQLite work taken away,
beside the real journal and the one-commit-per-event baseline, all measured in the same run.

Three rates, each with the same producers as bench.journal_append (N tasks, each submitting one change with one
event and waiting for it before the next):
  - journal: the real journal, as bench.journal_append measures it;
  - journal, no SQLite: the same journal (numbering, envelopes, log lines, futures, the writer task) with the
    trip to the connection's thread answered at once and nothing written: what the event loop alone costs per
    event, an upper bound for any journal built this way, whatever the disk;
  - asyncio only: each submit answered by a bare future that a writer task settles a batch at a time, with no
    journal code at all: what the producers and asyncio cost on their own.
Each is printed as events/s and as a ratio to the baseline (bench.journal_append's, one autocommit INSERT per
event). The journal's goal (>= 20x) is out of reach where even "no SQLite" stays below it. A diagnostic, not a
goal of its own: it is not in bench.report.

    python -m bench.journal_ceiling [--seconds 1.5] [--rounds 3] [--producers 512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.journal_append import baseline, journal_rate, produce
from gateway import runtime
from gateway.domain.change import Change
from gateway.journal import store
from gateway.logs import setup_logging


@contextmanager
def no_sqlite() -> Iterator[None]:
    """The writer's one trip per batch to the connection's thread, answered at once with nothing written."""
    real = store.run_in_connection

    async def answered(db: Any, fn: Callable[..., Any]) -> None:
        return None

    store.run_in_connection = answered
    try:
        yield
    finally:
        store.run_in_connection = real


async def asyncio_only(seconds: float, producers: int) -> float:
    """The producers of journal_rate against a queue of bare futures that a writer settles up to MAX_BATCH at a
    time, one loop turn per batch: the journal's shape, none of its work."""
    queue: deque[asyncio.Future[None]] = deque()
    wake: list[asyncio.Future[None]] = []
    done = 0

    def submit(change: Change) -> Awaitable[None]:
        fut = asyncio.get_running_loop().create_future()
        queue.append(fut)
        if wake:
            w = wake.pop()
            if not w.done():
                w.set_result(None)
        return fut

    async def writer() -> None:
        nonlocal done
        while True:
            while not queue:
                w = asyncio.get_running_loop().create_future()
                wake.append(w)
                await w
            batch = [queue.popleft() for _ in range(min(len(queue), store.MAX_BATCH))]
            await asyncio.sleep(0)  # the writer's await of its commit
            for f in batch:
                f.set_result(None)
            done += len(batch)

    w = asyncio.create_task(writer())
    elapsed, _ = await produce(submit, producers, seconds)
    w.cancel()
    return done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each measured run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all four runs, interleaved")
    ap.add_argument("--producers", type=int, default=512, help="concurrent producers (512 fills MAX_BATCH)")
    args = ap.parse_args()
    runtime.tune()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the run
    setup_logging("info", devnull)  # the journal's log lines, formatted and written, as in production
    logging.getLogger("floorgate.journal").setLevel(logging.INFO)
    runs: dict[str, list[float]] = {"baseline": [], "journal": [], "no_sqlite": [], "asyncio_only": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ".")) as d:
        for r in range(args.rounds):
            runs["baseline"].append(baseline(Path(d) / f"baseline-{r}.db", args.seconds))
            runs["journal"].append(asyncio.run(journal_rate(Path(d) / f"j-{r}.db", args.seconds, args.producers))[0])
            with no_sqlite():
                runs["no_sqlite"].append(
                    asyncio.run(journal_rate(Path(d) / f"n-{r}.db", args.seconds, args.producers))[0])
            runs["asyncio_only"].append(asyncio.run(asyncio_only(args.seconds, args.producers)))
            for f in Path(d).iterdir():
                f.unlink()
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med["baseline"]
    rows = [("one commit per event (baseline)", "baseline"), ("journal", "journal"),
            ("journal, no SQLite (loop only)", "no_sqlite"), ("asyncio only (no journal code)", "asyncio_only")]
    print(f"journal_ceiling: {args.producers} producers, medians of {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s")
    print(f"{'run':34} {'events/s':>10} {'ratio':>7} {'us/event':>9}")
    for label, key in rows:
        print(f"{label:34} {med[key]:10.0f} {med[key] / base:6.1f}x {1e6 / med[key]:9.2f}")
    print(f"the 20x goal needs {20 * base:.0f}/s here ({1e6 / (20 * base):.2f} us per event, all in)")
    print(json.dumps({"bench": "journal_ceiling", "producers": args.producers, "rounds": args.rounds,
                      "seconds": args.seconds, "baseline_per_s": round(base),
                      **{f"{k}_per_s": round(med[k]) for k in ("journal", "no_sqlite", "asyncio_only")},
                      **{f"{k}_ratio": round(med[k] / base, 2) for k in ("journal", "no_sqlite", "asyncio_only")},
                      "goal_per_s": round(20 * base)}))


if __name__ == "__main__":
    main()
