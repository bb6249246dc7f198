"""Time sources.

Every timer in Floorgate runs on the monotonic clock, so a wall clock that jumps (NTP step, a technician
setting the date) never fires or stalls a timer. The wall clock is only read to stamp events, always in UTC.
Tests and simulations inject a `ManualClock` and move it by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current wall time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences are meaningful."""
        ...

    def stamp(self) -> str:
        """`rfc3339(self.now())`: the journal stamps every change with it."""
        ...


class SystemClock:
    """The real clocks. `offset_s` shifts the wall clock only, to simulate a clock jump in fault tests."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        self._stamp: tuple[int, str] = (-1, "")  # (unix ms, its text); replaced whole, so threads see a pair

    def now(self) -> datetime:
        now = datetime.now(UTC)
        return now + timedelta(seconds=self.offset_s) if self.offset_s else now

    def monotonic(self) -> float:
        return time.monotonic()

    def stamp(self) -> str:
        """Formatted once per millisecond, not per call (bench.journal_append: 0.95 against 0.2 us a change)."""
        ns = time.time_ns()
        if self.offset_s:
            ns += round(self.offset_s * 1e9)
        ms = ns // 1_000_000
        cached = self._stamp
        if cached[0] != ms:
            dt = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
            cached = self._stamp = (ms, rfc3339(dt))
        return cached[1]


class ManualClock:
    """A clock that moves only when told to; both its wall and monotonic time advance together."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def stamp(self) -> str:
        return rfc3339(self._wall)

    def advance(self, seconds: float) -> None:
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock, as an NTP step would."""
        self._wall += timedelta(seconds=seconds)


def rfc3339(dt: datetime) -> str:
    """UTC RFC 3339 with milliseconds and `Z`, the one timestamp format of the contract."""
    if dt.tzinfo is not UTC:
        if dt.tzinfo is None:
            raise ValueError("naive datetime: Floorgate stamps only timezone-aware UTC times")
        dt = dt.astimezone(UTC)
    global _second
    key = dt.toordinal() * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second
    cached = _second
    if cached[0] != key:  # one isoformat per second of stamps: the journal stamps every change
        cached = _second = (key, dt.isoformat()[:19])
    return f"{cached[1]}.{dt.microsecond // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 time with an offset or `Z`; the result is in UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset; use RFC 3339 with Z")
    return dt.astimezone(UTC)
