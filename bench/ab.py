"""The A/B floor simulation over five seeds: health dispatch against static round robin on the same
8,000-order peak with 30 pickers, one slowed to a fifth for an hour, one whose scanner fails for 90 minutes.

Goal: on every seed, at least 50% fewer tasks unstarted for more than 30 minutes than static routing, and
a lower p95 order lead time. The seeds are 1-5, not chosen. This is a quality figure, not a speed one:
the machine time is printed for information only.

    python -m bench.ab [--seeds 1,2,3,4,5] [--orders 8000] [--pickers 30] [--load LOAD]

`--load` defaults to `simulators.ab.scenario.DEFAULT_LOAD`, as for `floorgate sim ab`.
"""

from __future__ import annotations

import argparse
import json
import time

from simulators.ab import run_ab, summary, table
from simulators.ab.cli import parse_seeds
from simulators.ab.scenario import DEFAULT_LOAD


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=parse_seeds, default=[1, 2, 3, 4, 5])
    ap.add_argument("--orders", type=int, default=8000)
    ap.add_argument("--pickers", type=int, default=30)
    ap.add_argument("--load", type=float, default=DEFAULT_LOAD,
                    help=f"mean offered load as a share of nominal capacity (default {DEFAULT_LOAD:g})")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = run_ab(args.seeds, args.orders, args.pickers, load=args.load)
    elapsed = time.perf_counter() - t0
    print(table(results))
    print(f"({len(results)} simulated shifts in {elapsed:.1f} s of machine time)")
    doc = summary(results)
    doc.update({"orders": args.orders, "pickers": args.pickers, "load": args.load,
                "total_waited_30_health": sum(r.waited_30 for r in results if r.strategy == "health"),
                "total_waited_30_static": sum(r.waited_30 for r in results if r.strategy == "round_robin")})
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
