"""`floorgate sim ab`: the A/B floor simulation, health dispatch against static round robin.

    floorgate sim ab --seeds 1,2,3,4,5 --orders 8000 --pickers 30 [--load 0.65] [--ab-share 0.2] [--json]

(--load defaults to scenario.DEFAULT_LOAD, the one constant for the scenario, this command and the bench.)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from gateway.domain.dispatch import HEALTH, ROUND_ROBIN
from simulators.ab.scenario import DEFAULT_LOAD, build
from simulators.ab.sim import Floor, RunResult

GOAL_REDUCTION = 0.5


@dataclass(frozen=True, slots=True)
class SeedVerdict:
    seed: int
    reduction: float  # fewer tasks waiting > 30 min, as a fraction of static's
    p95_health: float
    p95_static: float

    @property
    def met(self) -> bool:
        return self.reduction >= GOAL_REDUCTION and self.p95_health < self.p95_static


def run_ab(seeds: list[int], orders: int = 8000, pickers: int = 30, *, load: float = DEFAULT_LOAD,
           ab_share: float = 0.0) -> list[RunResult]:
    out = []
    for seed in seeds:
        sc = build(seed, orders, pickers, load=load)
        out.append(Floor(sc, HEALTH).run())
        out.append(Floor(sc, ROUND_ROBIN).run())
        if ab_share > 0:
            out.append(Floor(sc, HEALTH, ab_share=ab_share).run())
    return out


def verdicts(results: list[RunResult]) -> list[SeedVerdict]:
    by = {(r.seed, r.strategy): r for r in results}
    out = []
    for seed in sorted({r.seed for r in results}):
        h, s = by.get((seed, HEALTH)), by.get((seed, ROUND_ROBIN))
        if h is None or s is None:
            continue
        red = 1.0 - h.waited_30 / s.waited_30 if s.waited_30 else (1.0 if h.waited_30 == 0 else 0.0)
        out.append(SeedVerdict(seed, red, h.p95_lead_min, s.p95_lead_min))
    return out


def table(results: list[RunResult]) -> str:
    head = (f"{'seed':>4}  {'strategy':<12} {'orders':>6} {'mean lead':>10} {'p95 lead':>9} {'late':>5} "
            f"{'>30 min unstarted':>17} {'breaker opens':>13} {'moved':>5} {'level 2':>7} {'last done':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.seed:>4}  {r.strategy:<12} {r.orders:>6} {r.mean_lead_min:>6.1f} min "
                     f"{r.p95_lead_min:>5.1f} min {r.late:>5} {r.waited_30:>17} {r.breaker_opened:>13} "
                     f"{r.moved:>5} {r.level2:>7} {r.end_h:>7.1f} h")
        for name, f in r.figures.items() if r.strategy.startswith("ab:") else ():
            lines.append(f"{'':>6}  engine A/B figures {name:<12} tasks {f['tasks']:>6}  mean time to start "
                         f"{f['mean_time_to_start_s'] / 60:5.1f} min  {f['lines_per_min']:6.1f} lines/min")
    lines.append("lead time: order received to its last task done; late: done after its cutoff; moved: "
                 "reassigned or requeued tasks;")
    lines.append("breaker opens count re-opens after a failed trial; round_robin ignores the breaker (its count "
                 "shows what the index saw).")
    lines.append("")
    vs = verdicts(results)
    for v in vs:
        lines.append(f"seed {v.seed}: {v.reduction:.0%} fewer tasks unstarted > 30 min than static, p95 lead "
                     f"{v.p95_health:.1f} vs {v.p95_static:.1f} min: {'goal met' if v.met else 'GOAL MISSED'}")
    if vs:
        lines.append(f"goal (>= {GOAL_REDUCTION:.0%} fewer and a lower p95, every seed): "
                     f"{sum(v.met for v in vs)}/{len(vs)} seeds")
    return "\n".join(lines)


def summary(results: list[RunResult]) -> dict[str, Any]:
    vs = verdicts(results)
    return {"runs": [r.row() for r in results],
            "seeds": [{"seed": v.seed, "reduction_waited_30": round(v.reduction, 3), "p95_health_min":
                       round(v.p95_health, 1), "p95_static_min": round(v.p95_static, 1), "met": v.met}
                      for v in vs],
            "goal_met_seeds": sum(v.met for v in vs), "seeds_run": len(vs)}


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as integers separated by commas, e.g. 1,2,3; "
                                         f"got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed, e.g. 1,2,3")
    return seeds


def _cmd(args: argparse.Namespace) -> int:
    if args.orders < 1 or args.pickers < 4:
        print("floorgate sim ab: expected --orders >= 1 and --pickers >= 4 (one per zone)", file=sys.stderr)
        return 2
    if not 0.05 <= args.load <= 1.5 or not 0.0 <= args.ab_share <= 1.0:
        print("floorgate sim ab: expected --load in 0.05-1.5 and --ab-share in 0-1", file=sys.stderr)
        return 2
    results = run_ab(args.seeds, args.orders, args.pickers, load=args.load, ab_share=args.ab_share)
    print(json.dumps(summary(results)) if args.json else table(results))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `ab` to the `floorgate sim` subcommands."""
    p = sub.add_parser("ab", help="A/B floor simulation: health dispatch against static round robin",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=parse_seeds, default=[1, 2, 3, 4, 5], help="comma-separated seeds (1,2,3,4,5)")
    p.add_argument("--orders", type=int, default=8000, help="orders in the peak (8000)")
    p.add_argument("--pickers", type=int, default=30, help="pickers on the floor (30)")
    p.add_argument("--load", type=float, default=DEFAULT_LOAD,
                   help=f"mean offered load as a share of nominal capacity ({DEFAULT_LOAD:g}; the peak hour is "
                        "~1.3x that)")
    p.add_argument("--ab-share", type=float, default=0.0,
                   help="also run the engine's live A/B mode with this share of tasks on round robin")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floorgate sim")
    add_parser(parser.add_subparsers(dest="sim", required=True))
    args = parser.parse_args(["ab", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
