"""The peak the A/B simulation replays: orders, pickers and their faults, all drawn from one seed.

Both strategies see exactly the same scenario. Sizes are chosen so the floor is busy but not drowning: at
the default load (`DEFAULT_LOAD`, 65% of the floor's nominal capacity on average) the arrival profile peaks
near 86%, with pickers per zone in proportion to the zone's work, so a good dispatcher can keep up and a
poor one shows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Relative order arrival rate per hour of the intake window: a morning ramp, an afternoon peak, a tail.
PROFILE = (0.70, 0.85, 1.00, 1.15, 1.25, 1.25, 1.15, 1.00, 0.90, 0.80, 0.70, 0.60)
ZONES = (("a", 0.35), ("b", 0.30), ("c", 0.20), ("d", 0.15))
CARRIER_PICKUPS_H = tuple(range(3, 40, 2))  # a truck every two hours from 3 h after the shift starts
# The mean offered load as a share of nominal capacity (the peak hour is PROFILE's 1.25 / mean ~0.95 = ~1.3x
# that). One value for `build`, `floorgate sim ab --load` and the README's A/B table (0.65 was chosen after
# seeing results; the README says so).
DEFAULT_LOAD = 0.65


@dataclass(frozen=True, slots=True)
class SimLine:
    zone: str


@dataclass(frozen=True, slots=True)
class SimOrder:
    order_id: str
    arrival_s: float
    cutoff_s: float
    cold_chain: bool
    value_cents: int
    customer_level: int
    lines_by_zone: tuple[tuple[str, int], ...]  # (zone, number of lines)

    @property
    def lines(self) -> int:
        return sum(n for _, n in self.lines_by_zone)


@dataclass(frozen=True, slots=True)
class SimPicker:
    operator_id: str
    zone: str
    speed: float  # 1.0 = the floor's nominal pace
    break_at_s: float


@dataclass(slots=True)
class Scenario:
    seed: int
    orders: list[SimOrder]
    pickers: list[SimPicker]
    line_s: float
    start_s: float
    break_s: float
    slow_picker: str
    slow_from_s: float
    slow_until_s: float
    slow_factor: float
    fault_picker: str
    fault_from_s: float
    fault_until_s: float
    shift_start: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    reject_p: float = 0.01
    short_p: float = 0.01

    def wall(self, t: float) -> datetime:
        return self.shift_start + timedelta(seconds=t)


def _lines_by_zone(rng: random.Random, n: int) -> tuple[tuple[str, int], ...]:
    names = [z for z, _ in ZONES]
    weights = [w for _, w in ZONES]
    counts: dict[str, int] = {}
    zone = rng.choices(names, weights)[0]
    for i in range(n):
        if i > 0 and rng.random() > 0.6:  # lines cluster: 60% stay in the zone of the previous line
            zone = rng.choices(names, weights)[0]
        counts[zone] = counts.get(zone, 0) + 1
    return tuple(sorted(counts.items()))


def build(seed: int, n_orders: int = 8000, n_pickers: int = 30, *, line_s: float = 30.0, start_s: float = 20.0,
          load: float = DEFAULT_LOAD, break_min: float = 20.0, fault_min: float = 90.0) -> Scenario:
    if n_orders < 1 or n_pickers < 4:
        raise ValueError("the A/B floor needs at least 1 order and 4 pickers (one per zone)")
    rng = random.Random(seed)
    shapes = []
    for i in range(n_orders):
        n = rng.randint(1, 5)
        shapes.append((f"O{seed}-{i:05d}", _lines_by_zone(rng, n)))
    # Work in picker-seconds at nominal pace, per zone: a first scan per task plus every line.
    work = {z: 0.0 for z, _ in ZONES}
    for _, by_zone in shapes:
        for z, n in by_zone:
            work[z] += start_s + n * line_s
    total = sum(work.values())
    # Pickers per zone in proportion to the work (largest remainder), at least one each.
    exact = {z: n_pickers * w / total for z, w in work.items()}
    alloc = {z: max(1, math.floor(x)) for z, x in exact.items()}
    while sum(alloc.values()) < n_pickers:
        z = max(exact, key=lambda k: exact[k] - alloc[k])
        alloc[z] += 1
    while sum(alloc.values()) > n_pickers:
        z = max((k for k in alloc if alloc[k] > 1), key=lambda k: alloc[k] - exact[k])
        alloc[z] -= 1
    # The intake window is as long as the work needs at `load` of the floor's capacity.
    capacity_per_s = float(n_pickers)  # picker-seconds of work done per second at nominal pace
    window_s = total / (capacity_per_s * load)
    hours = len(PROFILE)
    arrivals = []
    for _ in range(n_orders):
        h = rng.choices(range(hours), PROFILE)[0]
        arrivals.append((h + rng.random()) / hours * window_s)
    arrivals.sort()
    orders = []
    for (oid, by_zone), t in zip(shapes, arrivals, strict=True):
        express = rng.random() < 0.1
        lead = 3600.0 if express else 2 * 3600.0
        cutoff = next((h * 3600.0 for h in CARRIER_PICKUPS_H if h * 3600.0 >= t + lead), t + lead)
        orders.append(SimOrder(oid, t, cutoff, rng.random() < 0.12, int(rng.lognormvariate(8.5, 1.0)),
                               rng.choices((0, 1, 2), (70, 25, 5))[0], by_zone))
    pickers = []
    k = 0
    mid = window_s / 2
    for z, _ in ZONES:
        for _ in range(alloc[z]):
            k += 1
            speed = min(1.4, max(0.7, rng.lognormvariate(0.0, 0.12)))
            # Breaks staggered around the middle of the intake window, so the floor is never all away.
            break_at = mid + (k / n_pickers - 0.5) * 0.5 * window_s
            pickers.append(SimPicker(f"p{k:02d}", z, speed, break_at))
    # The faulty pickers: one in the busiest zone slows to a fifth for an hour during the peak, another's
    # scanner fails later (every scan rejected) until it is swapped `fault_min` minutes after.
    busiest = [p for p in pickers if p.zone == ZONES[0][0]]
    second = [p for p in pickers if p.zone == ZONES[1][0]] or busiest
    slow = busiest[len(busiest) // 2]
    fault = second[len(second) // 2] if second[len(second) // 2] is not slow else busiest[0]
    slow_from = 0.30 * window_s
    fault_from = 0.45 * window_s
    return Scenario(seed, orders, pickers, line_s, start_s, break_min * 60.0, slow.operator_id, slow_from,
                    slow_from + 3600.0, 0.2, fault.operator_id, fault_from, fault_from + fault_min * 60.0)
