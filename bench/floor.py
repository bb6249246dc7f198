"""The floor simulation at bench size: 2,000 orders with 3% picker errors through the real gateway code on a
moved clock (CI runs 200). Prints the table and, as the last line, the figures as JSON.

    python -m bench.floor [--orders 2000] [--error-rate 0.03] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from simulators.floor.cli import simulate
from simulators.floor.sim import SimConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--pickers", type=int, default=20)
    ap.add_argument("--packers", type=int, default=6)
    ap.add_argument("--error-rate", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.getLogger("floorgate").setLevel(logging.WARNING)
    cfg = SimConfig(orders=args.orders, pickers=args.pickers, packers=args.packers, error_rate=args.error_rate,
                    seed=args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="floorgate-floor-", dir=os.environ.get("BENCH_DIR")) as d:
        report = asyncio.run(simulate(cfg, Path(d)))
    wall = time.perf_counter() - t0
    print(f"floor: {cfg.orders} orders, {cfg.pickers} pickers, {cfg.packers} packers, {cfg.error_rate:.0%} picker "
          f"errors, seed {cfg.seed} ({wall:.1f} s of machine time)")
    print(report.table())
    print(json.dumps({"bench": "floor", **report.as_dict(), "machine_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
