"""`floorgate sim floor`: the floor simulation on a moved clock, through the real gateway code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
from pathlib import Path

from gateway.clock import ManualClock
from gateway.config import parse_config
from gateway.journal import Journal
from gateway.service import FloorService
from simulators.floor.sim import FloorSim, InProcessFloor, Report, SimConfig


async def simulate(cfg: SimConfig, data_dir: Path) -> Report:
    gw_cfg = parse_config({"data_dir": str(data_dir), "picking": {"idle_logout_min": 24 * 60}})
    clock = ManualClock()
    journal = await Journal.open(gw_cfg.db_path, site=gw_cfg.site, gateway=gw_cfg.gateway, clock=clock)
    journal.log_events = False
    try:
        service = FloorService(gw_cfg, journal, clock)
        await service.start()
        sim = FloorSim(InProcessFloor(service, clock, cfg.has_scale), cfg)
        return await sim.run()
    finally:
        await journal.close()


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("floor", help="a floor of pickers and packers making mistakes, through the real gateway",
                       description="Runs N pickers and M packers with an error rate through the real gateway "
                                   "code on a moved clock and checks that no packed parcel differs from its order.")
    p.add_argument("--orders", type=int, default=200)
    p.add_argument("--pickers", type=int, default=6)
    p.add_argument("--packers", type=int, default=2)
    p.add_argument("--error-rate", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-scale", action="store_true")
    p.add_argument("--json", action="store_true", help="print the figures as JSON as the last line")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    logging.getLogger("floorgate").setLevel(logging.WARNING)
    cfg = SimConfig(orders=args.orders, pickers=args.pickers, packers=args.packers, error_rate=args.error_rate,
                    seed=args.seed, has_scale=not args.no_scale)
    with tempfile.TemporaryDirectory(prefix="floorgate-floor-") as d:
        report = asyncio.run(simulate(cfg, Path(d)))
    print(f"floor simulation: {cfg.orders} orders, {cfg.pickers} pickers, {cfg.packers} packers, "
          f"{cfg.error_rate:.0%} picker errors, seed {cfg.seed}")
    print(report.table())
    if args.json:
        print(json.dumps({"sim": "floor", **report.as_dict()}))
    return 1 if report.wrong_packed else 0
