"""A plain-text progress bar on stderr, no dependency.

On a terminal it redraws one line; in a pipe or a log it writes a line per tenth, so `floorgate backup`
run from cron or over a slow SSH session still says how far it got without flooding the output.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, unit: str = "", stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.label = label
        self.total = max(total, 0)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._shown = -1  # last percent (tty) or tenth (pipe) shown
        self._last_draw = 0.0

    def _line(self) -> str:
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * WIDTH)
            bar = "#" * filled + "." * (WIDTH - filled)
            return f"{self.label} [{bar}] {frac * 100:3.0f}% {self.done}/{self.total} {self.unit}".rstrip()
        return f"{self.label} {self.done} {self.unit}".rstrip()

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self.quiet:
            return
        pct = int(100 * done / self.total) if self.total else 0
        if self.tty:
            now = time.monotonic()
            if pct != self._shown and now - self._last_draw >= 0.1:
                self._shown, self._last_draw = pct, now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        elif pct // 10 != self._shown:
            self._shown = pct // 10
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        if self.quiet:
            return
        if self.total:
            self.done = self.total if self.done < self.total and not note else self.done
        line = self._line() + (f" {note}" if note else "")
        self.stream.write(("\r" if self.tty else "") + line + "\n")
        self.stream.flush()
