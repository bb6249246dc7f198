"""The availability index: one number 0-100 per picker per interval, comparable across pickers.

Why a number at all: dispatch must tell "this picker can take work now" from "this picker is stuck"
(scanner broken, lost, overloaded) within minutes, without a person watching a screen.

Figures per picker per interval (`index_interval_s`, default 60 s), counted only while the picker is
logged in and not on break (a picker on break, or logged out, has no index minutes at all):
- `lines`: lines done (throughput);
- `busy_s`: seconds with at least one task in hand;
- `first_scans` and `first_scan_wait_s`: response time from "the task is the picker's next" (assignment,
  or the end of their previous task if later) to its first accepted scan; `pending_wait_s` is the wait so
  far of a task still waiting for its first scan at the end of the interval;
- `mean_line_s` = busy_s / lines: response time per line;
- `failures` = rejected scans + short picks + timeouts (a task not started in time); `failure_rate` =
  failures / (lines + failures).

The index looks back over the last `index_window` counted intervals (default 5), because a single line
often takes longer than one interval. Over that window, with L lines, B busy seconds, n first scans
with waits summing to W (plus the pending wait), and F failures:

    T (throughput)     = min(1, (L + 1) * ref_line  / (B + ref_line))
    R (response)       = min(1, (n + 1) * ref_first / (W + ref_first))
    Q (quality)        = (L + 1) / (L + 1 + F)
    index              = 100 * (0.5 * T + 0.2 * R + 0.3 * Q)

`ref_line` and `ref_first` are the floor's own pace: the median over pickers of seconds per line
(B / L, pickers with at least 3 lines in their window) and of mean first-scan wait (pickers with at least
2 first scans), so a picker is measured against their colleagues right now, not against a constant; until
3 pickers qualify, the priors `ref_line_s` (45 s) and `ref_first_scan_s` (30 s) are used. The "+1" terms
give one line / one response of credit at the reference pace, so a picker who got work seconds ago is not
judged on seconds, and an idle picker (B = 0, nothing waiting, no failures) scores 100: having no work is
not their fault. A picker at the floor's pace with no failures scores about 100; one stuck with work in
hand falls below 60 within a few intervals (T -> 0 gives at most 50); one whose every scan is rejected
falls below 60 within one.

An interval is "evidence" for the breaker when the picker was busy at least half of it or had a line,
a first scan or a failure in it; idle intervals neither open nor close a breaker.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median

W_THROUGHPUT, W_RESPONSE, W_QUALITY = 0.5, 0.2, 0.3


@dataclass(slots=True)
class IntervalStats:
    start: float
    end: float
    counted_s: float = 0.0
    busy_s: float = 0.0
    lines: int = 0
    first_scans: int = 0
    first_scan_wait_s: float = 0.0
    pending_wait_s: float = 0.0
    rejects: int = 0
    shorts: int = 0
    timeouts: int = 0

    @property
    def failures(self) -> int:
        return self.rejects + self.shorts + self.timeouts

    @property
    def failure_rate(self) -> float:
        n = self.lines + self.failures
        return self.failures / n if n else 0.0

    @property
    def mean_first_scan_s(self) -> float | None:
        return self.first_scan_wait_s / self.first_scans if self.first_scans else None

    @property
    def mean_line_s(self) -> float | None:
        return self.busy_s / self.lines if self.lines else None

    @property
    def has_events(self) -> bool:
        return bool(self.lines or self.first_scans or self.failures)


@dataclass(frozen=True, slots=True)
class IndexSample:
    """One picker's index at the close of one interval."""

    operator_id: str
    t: float
    index: float
    evidence: bool
    stats: IntervalStats


def compute_index(window: list[IntervalStats] | deque[IntervalStats], ref_line: float, ref_first: float) -> float:
    """The formula of the module docstring over one window (oldest first)."""
    lines = busy = waits = 0.0
    scans = failures = 0
    for s in window:
        lines += s.lines
        busy += s.busy_s
        scans += s.first_scans
        waits += s.first_scan_wait_s
        failures += s.failures
    if window:
        waits += window[-1].pending_wait_s
    t = min(1.0, (lines + 1) * ref_line / (busy + ref_line))
    r = min(1.0, (scans + 1) * ref_first / (waits + ref_first))
    q = (lines + 1) / (lines + 1 + failures)
    return 100.0 * (W_THROUGHPUT * t + W_RESPONSE * r + W_QUALITY * q)


@dataclass(slots=True)
class _Track:
    seg: float
    cur: IntervalStats
    window: deque[IntervalStats]
    logged_in: bool = False
    on_break: bool = False
    load: int = 0
    held: int = 0  # of `load`, tasks on hold: they neither keep the picker busy nor keep them waiting
    started: int = 0
    wait_since: float | None = None
    last: float | None = None
    last_stats: IntervalStats | None = None

    @property
    def counting(self) -> bool:
        return self.logged_in and not self.on_break


@dataclass(slots=True)
class IndexBook:
    """The per-picker figures and index. Every method takes the monotonic time of the event; time must not
    go backwards (an earlier time is treated as the latest seen). Intervals close at `start + k * interval`,
    the same boundaries for every picker; `advance(t)` closes the ones that ended and returns their indexes."""

    interval_s: float = 60.0
    window: int = 5
    ref_line_prior: float = 45.0
    ref_first_prior: float = 30.0
    start: float = 0.0
    next_boundary: float = field(init=False)
    ref_line: float = field(init=False)
    ref_first: float = field(init=False)
    _tracks: dict[str, _Track] = field(init=False, default_factory=dict)
    _now: float = field(init=False)
    _pending: list[IndexSample] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.next_boundary = self.start + self.interval_s
        self.ref_line, self.ref_first = self.ref_line_prior, self.ref_first_prior
        self._now = self.start

    # -- intake -------------------------------------------------------------------------------------
    def on_login(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        tr.logged_in = True
        self._rewait(tr, t)

    def on_logout(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        tr.logged_in = False
        self._rewait(tr, t)

    def on_break_start(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        tr.on_break = True
        self._rewait(tr, t)

    def on_break_end(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        tr.on_break = False
        self._rewait(tr, t)

    def on_assigned(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        tr.load += 1
        self._rewait(tr, t)

    def on_unassigned(self, operator_id: str, t: float) -> None:
        """An unstarted task left the picker (moved, cancelled)."""
        tr, t = self._at(operator_id, t)
        tr.load = max(0, tr.load - 1)
        self._rewait(tr, t)

    def set_held(self, operator_id: str, t: float, held: int) -> None:
        """How many of the picker's tasks are on hold now. Held work is nobody's delay: counted as busy time or as
        a wait for a first scan, it pulled the index of a picker who did nothing wrong (96 -> 71 while a held
        order sat in their hands) and could open their breaker."""
        tr = self._tracks.get(operator_id)
        if tr is None and held == 0:
            return
        tr, t = self._at(operator_id, t)
        if tr.held != held:
            tr.held = held
            self._rewait(tr, t)

    def on_first_scan(self, operator_id: str, t: float) -> None:
        tr, t = self._at(operator_id, t)
        if tr.wait_since is not None:
            tr.cur.first_scans += 1
            tr.cur.first_scan_wait_s += t - tr.wait_since
        tr.started = min(tr.load, tr.started + 1)
        tr.wait_since = None
        self._rewait(tr, t)

    def on_line_done(self, operator_id: str, t: float, lines: int = 1) -> None:
        self._at(operator_id, t)[0].cur.lines += lines

    def on_task_done(self, operator_id: str, t: float) -> None:
        """A started task left the picker (completed, cancelled, taken over)."""
        tr, t = self._at(operator_id, t)
        tr.load = max(0, tr.load - 1)
        tr.started = max(0, min(tr.load, tr.started - 1))
        self._rewait(tr, t)

    # Failures while on break or logged out are not held against the picker: those minutes do not count.
    def on_reject(self, operator_id: str, t: float) -> None:
        tr = self._at(operator_id, t)[0]
        if tr.counting:
            tr.cur.rejects += 1

    def on_short(self, operator_id: str, t: float) -> None:
        tr = self._at(operator_id, t)[0]
        if tr.counting:
            tr.cur.shorts += 1

    def on_timeout(self, operator_id: str, t: float) -> None:
        tr = self._at(operator_id, t)[0]
        if tr.counting:
            tr.cur.timeouts += 1

    def reset(self, operator_id: str) -> None:
        """Forget the window: a half-open breaker judges the picker on a fresh start."""
        tr = self._tracks.get(operator_id)
        if tr is not None:
            tr.window.clear()
            tr.last = None

    # -- reading ------------------------------------------------------------------------------------
    def index(self, operator_id: str) -> float:
        """The last closed index; 100 before the first (no evidence against the picker)."""
        tr = self._tracks.get(operator_id)
        return 100.0 if tr is None or tr.last is None else tr.last

    def last_stats(self, operator_id: str) -> IntervalStats | None:
        tr = self._tracks.get(operator_id)
        return None if tr is None else tr.last_stats

    def load(self, operator_id: str) -> int:
        tr = self._tracks.get(operator_id)
        return 0 if tr is None else tr.load

    # -- time ---------------------------------------------------------------------------------------
    def advance(self, t: float) -> list[IndexSample]:
        """Close the intervals that ended by `t`; returns every index closed since the last call (intake
        at a later time closes intervals too, and its indexes wait here)."""
        self._advance(t)
        out, self._pending = self._pending, []
        return out

    def _advance(self, t: float) -> None:
        if t <= self._now:
            return
        out = self._pending
        while self.next_boundary <= t:
            if not any(tr.counting or tr.cur.has_events for tr in self._tracks.values()):
                # Nobody on the floor: skip the empty intervals at once instead of closing each.
                skipped = int((t - self.next_boundary) // self.interval_s)
                if skipped > 0:
                    self.next_boundary += skipped * self.interval_s
                    for tr in self._tracks.values():
                        tr.seg = max(tr.seg, self.next_boundary - self.interval_s)
                        tr.cur = IntervalStats(self.next_boundary - self.interval_s, self.next_boundary)
            out.extend(self._close(self.next_boundary))
            self.next_boundary += self.interval_s
        self._now = t

    def _close(self, b: float) -> list[IndexSample]:
        closed: list[tuple[str, _Track]] = []
        for op, tr in self._tracks.items():
            self._accrue(tr, b)
            s = tr.cur
            if tr.wait_since is not None and tr.counting:
                s.pending_wait_s = b - tr.wait_since
            tr.cur = IntervalStats(b, b + self.interval_s)
            if s.counted_s > 0 or s.has_events:
                tr.window.append(s)
                tr.last_stats = s
                closed.append((op, tr))
        self._update_refs()
        out = []
        for op, tr in closed:
            tr.last = compute_index(tr.window, self.ref_line, self.ref_first)
            s = tr.window[-1]
            evidence = s.busy_s >= 0.5 * self.interval_s or s.has_events
            out.append(IndexSample(op, b, tr.last, evidence, s))
        return out

    def _update_refs(self) -> None:
        per_line: list[float] = []
        per_first: list[float] = []
        for tr in self._tracks.values():
            lines = sum(s.lines for s in tr.window)
            if lines >= 3:
                per_line.append(sum(s.busy_s for s in tr.window) / lines)
            scans = sum(s.first_scans for s in tr.window)
            if scans >= 2:
                per_first.append(sum(s.first_scan_wait_s for s in tr.window) / scans)
        self.ref_line = max(1.0, median(per_line)) if len(per_line) >= 3 else self.ref_line_prior
        self.ref_first = max(1.0, median(per_first)) if len(per_first) >= 3 else self.ref_first_prior

    # -- internals ----------------------------------------------------------------------------------
    def _at(self, operator_id: str, t: float) -> tuple[_Track, float]:
        """The picker's track with its busy time brought up to `t` (never earlier than the latest time)."""
        self._advance(t)
        t = self._now
        tr = self._tracks.get(operator_id)
        if tr is None:
            cur = IntervalStats(self.next_boundary - self.interval_s, self.next_boundary)
            tr = _Track(t, cur, deque(maxlen=self.window))
            self._tracks[operator_id] = tr
        self._accrue(tr, t)
        return tr, t

    def _accrue(self, tr: _Track, t: float) -> None:
        dt = t - tr.seg
        if dt > 0:
            if tr.counting:
                tr.cur.counted_s += dt
                if tr.load > tr.held:
                    tr.cur.busy_s += dt
            tr.seg = t

    def _rewait(self, tr: _Track, t: float) -> None:
        """Waiting for a first scan = counting, nothing started, something in hand."""
        waiting = tr.counting and tr.started == 0 and tr.load > tr.held
        if waiting and tr.wait_since is None:
            tr.wait_since = t
        elif not waiting:
            tr.wait_since = None
