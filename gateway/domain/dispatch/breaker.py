"""A circuit breaker per picker: stop feeding work to someone who cannot do it, and try again later.

closed --(`consecutive` evidence intervals in a row below `threshold`)--> open (no new tasks)
open --(`cooldown_s` passed)--> half_open (one trial task; the index window starts afresh)
half_open --(an evidence interval at or above threshold)--> closed
half_open --(an evidence interval below threshold)--> open (cool-down again)

Intervals without evidence (idle, on break, logged out) are skipped: they neither extend nor break a run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.domain.dispatch.types import CLOSED, HALF_OPEN, OPENED

STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True)
class Breaker:
    threshold: float = 60.0
    consecutive: int = 3
    cooldown_s: float = 300.0
    state: str = STATE_CLOSED
    opened_at: float = 0.0
    trial_used: bool = False
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    last_scores: tuple[float, ...] = ()  # the scores that explain the last change
    _bad_run: int = 0

    def observe(self, score: float, t: float) -> str | None:
        """Feed one evidence interval's index; returns OPENED / CLOSED when the state changes."""
        self.recent.append(score)
        bad = score < self.threshold
        if self.state == STATE_CLOSED:
            self._bad_run = self._bad_run + 1 if bad else 0
            if self._bad_run >= self.consecutive:
                self.last_scores = tuple(self.recent)[-self.consecutive:]
                self._open(t)
                return OPENED
        elif self.state == STATE_HALF_OPEN:
            self.last_scores = (score,)
            if bad:
                self._open(t)
                return OPENED
            self.state, self._bad_run = STATE_CLOSED, 0
            return CLOSED
        return None

    def poll(self, t: float) -> str | None:
        """Returns HALF_OPEN when the cool-down has run out."""
        if self.state == STATE_OPEN and t >= self.opened_at + self.cooldown_s:
            self.state, self.trial_used = STATE_HALF_OPEN, False
            return HALF_OPEN
        return None

    @property
    def due(self) -> float | None:
        return self.opened_at + self.cooldown_s if self.state == STATE_OPEN else None

    def reopen(self, t: float) -> None:
        """Open from `t` (a restart restores an open breaker; its scores are gone)."""
        self._open(t)

    def _open(self, t: float) -> None:
        self.state, self.opened_at, self._bad_run, self.trial_used = STATE_OPEN, t, 0, False
