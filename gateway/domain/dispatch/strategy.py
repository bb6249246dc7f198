"""Which strategy a task goes through, and the live A/B split with its figures.

Strategies: "health" (this engine: index, breaker, cap, load, escalation ladder) and "round_robin"
(static routing: the next available picker of the zone in turn, regardless of load or health, never
moved and never escalated; kept as the baseline and for sites that want fixed routing).
The A/B split sends a share of tasks through a candidate strategy. Membership is a hash of the task id, so
a task keeps its arm across restarts and a replayed journal gives the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.domain.dispatch.types import STRATEGIES, StrategyFigures


def bucket(task_id: str, salt: str = "") -> float:
    """A stable number in [0, 1) per task id (blake2b: the same on every machine and Python run)."""
    h = hashlib.blake2b(f"{salt}\x1f{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class ABSplit:
    candidate: str
    share: float
    zones: frozenset[str] | None = None  # None: every zone
    salt: str = ""

    def __post_init__(self) -> None:
        if self.candidate not in STRATEGIES:
            raise ValueError(f"A/B candidate: expected one of {', '.join(STRATEGIES)}; got {self.candidate!r}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"A/B share: expected a fraction 0-1; got {self.share!r}")


class StrategyTable:
    """The strategy of each zone plus the optional A/B split."""

    def __init__(self, default: str = "health", zones: Mapping[str, str] | None = None,
                 ab: ABSplit | None = None) -> None:
        for name in (default, *(zones or {}).values()):
            if name not in STRATEGIES:
                raise ValueError(f"dispatch strategy: expected one of {', '.join(STRATEGIES)}; got {name!r}")
        self.default, self.zones, self.ab = default, dict(zones or {}), ab

    def for_task(self, task_id: str, zone: str) -> str:
        base = self.zones.get(zone, self.default)
        ab = self.ab
        if ab is not None and ab.share > 0 and (ab.zones is None or zone in ab.zones) \
                and bucket(task_id, ab.salt) < ab.share:
            return ab.candidate
        return base


class Figures:
    """Running per-strategy counts for the A/B report."""

    def __init__(self, names: Iterable[str] = STRATEGIES) -> None:
        self._tasks = dict.fromkeys(names, 0)
        self._started = dict.fromkeys(names, 0)
        self._tts = dict.fromkeys(names, 0.0)
        self._lines = dict.fromkeys(names, 0)
        self._done_lines = dict.fromkeys(names, 0)
        self._work_s = dict.fromkeys(names, 0.0)

    def assigned(self, strategy: str) -> None:
        self._tasks[strategy] = self._tasks.get(strategy, 0) + 1

    def started(self, strategy: str, time_to_start_s: float) -> None:
        self._started[strategy] = self._started.get(strategy, 0) + 1
        self._tts[strategy] = self._tts.get(strategy, 0.0) + time_to_start_s

    def lines(self, strategy: str, n: int) -> None:
        self._lines[strategy] = self._lines.get(strategy, 0) + n

    def completed(self, strategy: str, lines: int, work_s: float) -> None:
        """A started task completed: its lines over its first-scan-to-completion time."""
        self._done_lines[strategy] = self._done_lines.get(strategy, 0) + lines
        self._work_s[strategy] = self._work_s.get(strategy, 0.0) + max(0.0, work_s)

    def report(self) -> dict[str, StrategyFigures]:
        out = {}
        for name in self._tasks:
            started, work = self._started.get(name, 0), self._work_s.get(name, 0.0)
            out[name] = StrategyFigures(name, self._tasks[name], started,
                                        self._tts.get(name, 0.0) / started if started else 0.0,
                                        self._lines.get(name, 0),
                                        self._done_lines.get(name, 0) / (work / 60.0) if work > 0 else 0.0)
        return out
