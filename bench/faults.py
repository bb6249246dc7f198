"""The fault matrix of tests/faults with bench lengths: the same faults CI injects for a few seconds, held for
as long as a real floor sees them (a 60 s partition, the broker down 30 s, the disk full a minute, more
orders and kills). Each fault runs as its own pytest process; a fault passes when the hub ends with every
event, contiguous seq, order states right and no parcel packed wrongly (the checks are the tests').

    python -m bench.faults [--partition-s 60] [--broker-down-s 30] [--disk-full-s 60] [--kills 40]
                           [--orders 60] [--seed 7] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {
    "gateway_sigkill": "tests/faults/test_gateway_kills.py::test_gateway_sigkilled_at_random_moments",
    "partition_then_broker_sigkill": "tests/faults/test_floor_faults.py::test_network_partitions_then_broker_sigkill",
    "devices_vanish_garble_unplug": "tests/faults/test_floor_faults.py::test_devices_vanish_garble_and_unplug",
    "wall_clock_back_1h": "tests/faults/test_floor_faults.py::test_wall_clock_jumps_back_an_hour",
    "disk_full": "tests/faults/test_floor_faults.py::test_disk_fills_up_then_space_returns",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partition-s", type=float, default=60)
    ap.add_argument("--broker-down-s", type=float, default=30)
    ap.add_argument("--disk-full-s", type=float, default=60)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--orders", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=sorted(FAULTS), action="append", help="run only this fault (repeatable)")
    args = ap.parse_args()
    env = {**os.environ, "FLOORGATE_PARTITION_S": str(args.partition_s),
           "FLOORGATE_BROKER_DOWN_S": str(args.broker_down_s), "FLOORGATE_DISK_FULL_S": str(args.disk_full_s),
           "FLOORGATE_FAULT_KILLS": str(args.kills), "FLOORGATE_FAULT_ORDERS": str(args.orders),
           "FLOORGATE_FAULT_SEED": str(args.seed),
           # the black-box floor's patience: a command sent as the partitions begin waits through all of them
           "FLOORGATE_SAFETY_S": str(int(120 + 3 * args.partition_s + args.broker_down_s + args.disk_full_s))}
    rows: list[tuple[str, bool, float]] = []
    for name, node in FAULTS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "--timeout", str(int(env["FLOORGATE_SAFETY_S"]) * 6), node],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        ok = proc.returncode == 0
        rows.append((name, ok, time.monotonic() - t0))
        if not ok:
            sys.stderr.write(f"--- {name} failed ---\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}\n")
    print(f"faults at bench lengths: partition {args.partition_s:.0f} s, broker down {args.broker_down_s:.0f} s, "
          f"disk full {args.disk_full_s:.0f} s, {args.kills} kills, {args.orders} orders, seed {args.seed}")
    print(f"{'fault':34} {'result':>8} {'seconds':>9}")
    for name, ok, secs in rows:
        print(f"{name:34} {'pass' if ok else 'FAIL':>8} {secs:9.0f}")
    print(json.dumps({"bench": "faults", "partition_s": args.partition_s, "broker_down_s": args.broker_down_s,
                      "disk_full_s": args.disk_full_s, "kills": args.kills, "orders": args.orders,
                      "seed": args.seed, "results": {n: ok for n, ok, _ in rows},
                      "seconds": {n: round(s) for n, _, s in rows}}))
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
