"""The engine's knobs as one plain value, so the domain does not depend on how the config file is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class _DispatchConfigLike(Protocol):
    @property
    def index_interval_s(self) -> int: ...
    @property
    def breaker_threshold(self) -> float: ...
    @property
    def breaker_consecutive(self) -> int: ...
    @property
    def breaker_cooldown_s(self) -> int: ...
    @property
    def escalate_after_min(self) -> int: ...
    @property
    def escalate_cold_chain_after_min(self) -> int: ...
    @property
    def task_cap(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    index_interval_s: float = 60.0
    index_window: int = 5  # intervals the index looks back over (a line takes longer than one interval)
    ref_line_s: float = 45.0  # prior seconds per line until the floor has its own median
    ref_first_scan_s: float = 30.0  # prior seconds from "task is next" to its first scan
    breaker_threshold: float = 60.0
    breaker_consecutive: int = 3
    breaker_cooldown_s: float = 300.0
    escalate_after_min: float = 30.0
    escalate_cold_chain_after_min: float = 10.0
    task_cap: int = 3
    load_weight: float = 40.0  # index points one open task costs in the health score
    requeue_on_break: bool = True
    requeue_on_logout: bool = True
    requeue_on_breaker_open: bool = True
    # Zone handoff: an order's waiting part moves up its zone's queue once its part in another zone is done
    # (off: the parts of one order are queued as if unrelated, e.g. to measure what the handoff gains).
    zone_handoff: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("index_interval_s", self.index_interval_s > 0, "a number of seconds > 0"),
            ("index_window", self.index_window >= 1, "an integer >= 1"),
            ("ref_line_s", self.ref_line_s > 0, "a number of seconds > 0"),
            ("ref_first_scan_s", self.ref_first_scan_s > 0, "a number of seconds > 0"),
            ("breaker_threshold", 0 <= self.breaker_threshold <= 100, "a score 0-100"),
            ("breaker_consecutive", self.breaker_consecutive >= 1, "an integer >= 1"),
            ("breaker_cooldown_s", self.breaker_cooldown_s > 0, "a number of seconds > 0"),
            ("escalate_after_min", self.escalate_after_min > 0, "a number of minutes > 0"),
            ("escalate_cold_chain_after_min", self.escalate_cold_chain_after_min > 0, "a number of minutes > 0"),
            ("task_cap", self.task_cap >= 1, "an integer >= 1"),
            ("load_weight", self.load_weight >= 0, "a number >= 0"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"dispatch.{key}: expected {expected}; got {getattr(self, key)!r}")

    @classmethod
    def from_config(cls, cfg: _DispatchConfigLike) -> DispatchSettings:
        """From the `[dispatch]` table (gateway.config.DispatchConfig)."""
        return cls(index_interval_s=float(cfg.index_interval_s), breaker_threshold=float(cfg.breaker_threshold),
                   breaker_consecutive=int(cfg.breaker_consecutive),
                   breaker_cooldown_s=float(cfg.breaker_cooldown_s),
                   escalate_after_min=float(cfg.escalate_after_min),
                   escalate_cold_chain_after_min=float(cfg.escalate_cold_chain_after_min),
                   task_cap=int(cfg.task_cap))
