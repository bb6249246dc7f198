"""How long a task may sit assigned but unstarted before it is moved.

The base threshold is `escalate_after_min` (30) or `escalate_cold_chain_after_min` (10), optionally
replaced by time of day (a quiet night shift can wait longer than the afternoon peak before the last truck).
Optionally it is learned: the recent p90 of assignment-to-first-scan of the same category, times a
margin, kept between a floor and the base, so a fast floor catches a stuck task sooner than the configured
limit but never later. The threshold in force when a task is assigned is the one that task gets.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    start_min: int  # minute of the day the entry starts at, local time of the schedule
    after_min: float
    cold_chain_after_min: float


class EscalationSchedule:
    """Thresholds by time of day: the entry with the latest start at or before the time applies (the last
    entry of the day also covers the early hours before the first). Without entries the defaults apply."""

    def __init__(self, after_min: float = 30.0, cold_chain_after_min: float = 10.0,
                 entries: Iterable[ScheduleEntry] = (), tz: tzinfo = UTC) -> None:
        self.after_min, self.cold_chain_after_min, self.tz = after_min, cold_chain_after_min, tz
        self.entries = sorted(entries, key=lambda e: e.start_min)
        for e in self.entries:
            if e.after_min <= 0 or e.cold_chain_after_min <= 0:
                raise ValueError(f"escalation schedule entry at minute {e.start_min}: thresholds must be > 0")

    @classmethod
    def parse(cls, items: Iterable[Mapping[str, Any]], after_min: float = 30.0,
              cold_chain_after_min: float = 10.0, tz: tzinfo = UTC) -> EscalationSchedule:
        """From a list such as `[{"from": "06:00", "after_min": 20, "cold_chain_after_min": 8}]`."""
        entries = []
        for i, item in enumerate(items):
            where = f"escalation schedule entry {i + 1}"
            unknown = set(item) - {"from", "after_min", "cold_chain_after_min"}
            if unknown:
                raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                 "(known keys: from, after_min, cold_chain_after_min)")
            start = item.get("from")
            m = _HHMM.match(start) if isinstance(start, str) else None
            if m is None:
                raise ValueError(f'{where}: expected "from" as "HH:MM" (24 h); got {start!r}')
            vals = []
            for key, default in (("after_min", after_min), ("cold_chain_after_min", cold_chain_after_min)):
                v = item.get(key, default)
                if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                    raise ValueError(f"{where}: expected {key} as a number of minutes > 0; got {v!r}")
                vals.append(float(v))
            entries.append(ScheduleEntry(int(m[1]) * 60 + int(m[2]), vals[0], vals[1]))
        return cls(after_min, cold_chain_after_min, entries, tz)

    def base_s(self, now: datetime, cold_chain: bool) -> tuple[float, str]:
        """Seconds, and where they come from (for the reason string)."""
        after, cold, src = self.after_min, self.cold_chain_after_min, "default"
        if self.entries:
            local = now.astimezone(self.tz)
            minute = local.hour * 60 + local.minute
            entry = self.entries[-1]
            for e in self.entries:
                if e.start_min <= minute:
                    entry = e
            after, cold = entry.after_min, entry.cold_chain_after_min
            src = f"schedule from {entry.start_min // 60:02d}:{entry.start_min % 60:02d}"
        return (cold if cold_chain else after) * 60.0, src


class LearnedThresholds:
    """p90 of recent assignment-to-first-scan per category, times `margin`, bounded to
    [max(floor_s, base * floor_fraction), base]. Until `min_samples` are known the base applies."""

    def __init__(self, quantile: float = 0.9, margin: float = 1.5, min_samples: int = 20, keep: int = 200,
                 floor_fraction: float = 1 / 3, floor_s: float = 120.0) -> None:
        if not 0 < quantile < 1 or margin <= 0 or min_samples < 1 or keep < min_samples:
            raise ValueError("learned thresholds: expected 0 < quantile < 1, margin > 0, "
                             "1 <= min_samples <= keep")
        self.quantile, self.margin, self.min_samples, self.keep = quantile, margin, min_samples, keep
        self.floor_fraction, self.floor_s = floor_fraction, floor_s
        self._samples: dict[str, deque[float]] = {}
        self._cache: dict[str, float] = {}

    def record(self, category: str, time_to_start_s: float) -> None:
        d = self._samples.get(category)
        if d is None:
            d = self._samples[category] = deque(maxlen=self.keep)
        d.append(max(0.0, time_to_start_s))
        self._cache.pop(category, None)

    def quantile_s(self, category: str) -> float | None:
        q = self._cache.get(category)
        if q is None:
            d = self._samples.get(category)
            if d is None or len(d) < self.min_samples:
                return None
            s = sorted(d)
            q = self._cache[category] = s[min(len(s) - 1, int(self.quantile * len(s)))]
        return q

    def threshold_s(self, category: str, base_s: float) -> tuple[float, str] | None:
        q = self.quantile_s(category)
        if q is None:
            return None
        lo = min(base_s, max(self.floor_s, base_s * self.floor_fraction))
        return min(base_s, max(lo, q * self.margin)), f"learned p{round(self.quantile * 100)} {q / 60:.1f} min"
