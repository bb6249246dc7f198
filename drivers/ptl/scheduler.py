"""What one PTL bus does next, and what each reply means: pure logic, no I/O, times passed in.

The bus loop asks `next_action(now)`, performs it, and reports the outcome with `on_success` / `on_miss`
/ `on_link_down`; those return the events to deliver. Keeping every rule here (priorities, coalescing,
health, probe budget, compare-and-clear, restore after power-up) means each can be tested by feeding
times and outcomes, without a wire or a clock.

Order of work on a bus, first that applies:
1. a compare-and-clear owed to a module (the follow-up of a poll that saw latched bits or power-up);
2. a write: a module whose shown state differs from its desired state, oldest change first. Writes are
   coalesced: only the latest desired state is ever written, however many `set_state` calls came in;
3. a poll of a reachable module that is due: jobs every `poll_ms`, idle modules every `health_ms`, a module
   in unknown state at once (before its first write); most overdue first, so a saturated bus degrades to
   fair round robin;
4. a probe of an offline module whose backoff has run out, only while probing stays within
   `probe_share` of the bus's time (a token bucket, measured in seconds of transaction time).
A latched key counts only when its token echo is the token of the job the module should show *and* this
bus has put a write of that token on the wire to that module: a press latched under a token some other
process wrote (the gateway before a restart, or a coordinator rebuilt on SIGHUP, which may hand out the
same token again) is stale, whatever its value, and is cleared like any other stale key.
A module that misses is not retried before `max(poll_ms, timeout_ms)` has passed, so a dead module costs
the others at most one timeout in two until it is declared offline, and a late reply cannot pass for the
reply to the module's next request. A module that answers, but slowly (well past a typical reply, inside the
timeout), waits before its next poll for what its reply took times the modules it kept waiting: it gets no
more of the bus than each of the others. Polled in turn like any other, one replying in 90 ms of a 100 ms timeout took
the healthy modules' polls from 48/s to 11/s and their key presses from 30 to 130 ms.
A module that refuses the job write with an exception reply (another register map or firmware) is alive: it
is reported once as a fault, kept online and polled, and its write is tried again with a growing backoff.
Counted as misses, it went offline, answered the next probe, was "restored", refused again: about 5 offline
and online events a second, each one journaled and sent to the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Mode, Status
from .errors import ExceptionReply, ModuleMiss, NoResponse
from .model import (
    OFF,
    BusSettings,
    BusStats,
    HealthEvent,
    KeyPress,
    ModuleFault,
    ModuleOffline,
    ModuleOnline,
    ModuleState,
    ModuleStats,
)


@dataclass(frozen=True, slots=True)
class Poll:
    unit: int
    probe: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    unit: int
    state: ModuleState


@dataclass(frozen=True, slots=True)
class Clear:
    unit: int
    counter: int


Action = Poll | Write | Clear
Event = KeyPress | HealthEvent


@dataclass(frozen=True, slots=True)
class ModuleView:
    """A module as the bus sees it, for the coordinator and the technician page."""

    unit: int
    online: bool | None  # None: not heard from yet
    desired: ModuleState
    shown: ModuleState | None  # None: unknown, a write is due
    misses: int
    last_status: Status | None
    stats: ModuleStats


class _Module:
    """One module's bookkeeping. `dirty` (shown != desired) is kept up to date by the two setters, since
    the scheduler consults it for every module before every transaction."""

    __slots__ = ("_desired", "_shown", "backoff", "dirty", "dirty_since", "fault", "last_status", "misses",
                 "next_poll", "next_probe", "not_before", "offline_since", "online", "pending_clear", "refused",
                 "reported", "said", "sent_token", "stats", "unit", "write_after", "write_backoff")

    def __init__(self, unit: int, backoff: float, now: float) -> None:
        self.unit = unit
        self.backoff = backoff
        self._desired: ModuleState = OFF
        self._shown: ModuleState | None = None  # None: unknown, a write is due
        self.dirty = True
        self.online: bool | None = None
        self.misses = 0
        self.not_before = 0.0
        self.next_poll = now
        self.next_probe = 0.0
        self.dirty_since = now
        self.offline_since = 0.0
        self.pending_clear: int | None = None
        self.reported: tuple[int, int] | None = None  # (token, counter) of the last KeyPress
        self.sent_token = 0  # the last job token this bus sent to the module (0: none yet)
        self.last_status: Status | None = None
        self.fault: bool | None = None  # the fault bit as last reported (None: not polled yet)
        self.refused: str | None = None  # why the module refuses its job write (None: it does not)
        self.said: tuple[bool, str] | None = None  # the fault last reported: (faulty, refusal or '')
        self.write_after = 0.0  # a refused write is not tried again before this
        self.write_backoff = 0.0
        self.stats = ModuleStats()

    @property
    def desired(self) -> ModuleState:
        return self._desired

    @desired.setter
    def desired(self, state: ModuleState) -> None:
        self._desired = state
        self.dirty = self._shown != state

    @property
    def shown(self) -> ModuleState | None:
        return self._shown

    @shown.setter
    def shown(self, state: ModuleState | None) -> None:
        self._shown = state
        self.dirty = state != self._desired

    @property
    def fast(self) -> bool:
        return self._desired.mode in (Mode.JOB, Mode.ERROR)


class Scheduler:
    def __init__(self, settings: BusSettings, now: float) -> None:
        self.settings = settings
        self.bus_id = settings.id
        self.poll_s = settings.poll_ms / 1000
        self.health_s = settings.health_ms / 1000
        self.timeout_s = settings.timeout_ms / 1000
        self.probe_min_s = settings.probe_min_ms / 1000
        self.probe_max_s = settings.probe_max_ms / 1000
        self.share = settings.probe_share
        self.credit_cap = settings.timeout_ms / 1000  # one silent probe's worth of time, banked at most
        self.credit = self.credit_cap
        self.credit_at = now
        self.modules: dict[int, _Module] = {}
        self.stats = BusStats(started=now)
        self.typical_s = 0.0  # a poll's usual duration on this bus (a slow average of the fastest replies)

    # ---- what the coordinator asks -----------------------------------------------------------------

    def watch(self, unit: int, now: float) -> None:
        if unit not in self.modules:
            m = _Module(unit, self.probe_min_s, now)
            self.modules[unit] = m
            self.stats.modules[unit] = m.stats

    def unwatch(self, unit: int) -> None:
        self.modules.pop(unit, None)
        self.stats.modules.pop(unit, None)

    def set_state(self, unit: int, state: ModuleState, now: float) -> None:
        self.watch(unit, now)
        m = self.modules[unit]
        if state == m.desired:
            return
        was_dirty = m.dirty
        m.desired = state
        if m.dirty and not was_dirty:
            m.dirty_since = now

    def view(self, unit: int) -> ModuleView:
        m = self.modules[unit]
        return ModuleView(m.unit, m.online, m.desired, m.shown, m.misses, m.last_status, m.stats)

    # ---- what to do next ----------------------------------------------------------------------------

    def _accrue(self, now: float) -> None:
        if now > self.credit_at:
            self.credit = min(self.credit_cap, self.credit + self.share * (now - self.credit_at))
            self.credit_at = now

    def next_action(self, now: float) -> Action | None:
        """One pass over the modules (this runs before every transaction, so it stays cheap)."""
        self._accrue(now)
        write_m: _Module | None = None
        poll_m: _Module | None = None
        probe_m: _Module | None = None
        for m in self.modules.values():
            if m.online is False:
                if m.next_probe <= now and (probe_m is None or _earlier(m.next_probe, m, probe_m.next_probe, probe_m)):
                    probe_m = m
                continue
            if m.not_before > now:
                continue
            if m.pending_clear is not None and not m.dirty:
                return Clear(m.unit, m.pending_clear)
            # A module never heard from is polled before it is written: its power-up bit is then seen (and
            # cleared) before the first write, rather than after it, which would cost a second "restore" write.
            if m.dirty and m.online and m.write_after <= now:
                if write_m is None or _earlier(m.dirty_since, m, write_m.dirty_since, write_m):
                    write_m = m
            elif m.next_poll <= now and (poll_m is None or _earlier(m.next_poll, m, poll_m.next_poll, poll_m)):
                poll_m = m
        if write_m is not None:
            _sending(write_m, write_m.desired)
            return Write(write_m.unit, write_m.desired)
        if poll_m is not None:
            return Poll(poll_m.unit)
        if probe_m is not None and self.credit >= 0:
            return Poll(probe_m.unit, probe=True)
        return None

    def next_wakeup(self, now: float) -> float | None:
        """When `next_action` may next return something without any new input (None: only on input)."""
        times: list[float] = []
        credit_ok_at = now if self.credit >= 0 else self.credit_at + (-self.credit) / self.share
        for m in self.modules.values():
            if m.online is False:
                times.append(max(m.next_probe, credit_ok_at))
            elif m.dirty and m.online and m.write_after > now:  # a refused write waits; the polls go on
                times.append(max(m.not_before, min(m.write_after, m.next_poll)))
            elif (m.dirty and m.online) or m.pending_clear is not None:
                times.append(m.not_before)
            else:
                times.append(max(m.not_before, m.next_poll))
        return min(times) if times else None

    # ---- what the outcome means ---------------------------------------------------------------------

    def _account(self, action: Action, m: _Module | None, duration: float) -> None:
        st = self.stats
        st.transactions += 1
        st.busy_s += duration
        if isinstance(action, Poll):
            st.polls += 1
            if action.probe:
                st.probes += 1
                st.probe_s += duration
                self.credit -= duration
        elif isinstance(action, Write):
            st.writes += 1
        else:
            st.clears += 1
        if m is not None:
            m.stats.transactions += 1
            if isinstance(action, Poll):
                m.stats.polls += 1
            else:
                m.stats.writes += 1

    def on_success(self, action: Action, now: float, duration: float, status: Status | None = None) -> list[Event]:
        m = self.modules.get(action.unit)
        self._account(action, m, duration)
        self.stats.last_ok = now
        if m is None:  # unwatched while the transaction ran
            return []
        if isinstance(action, Write):
            _sending(m, action.state)
        events: list[Event] = []
        m.stats.last_seen = now
        m.not_before = now
        m.misses = 0
        if m.online is not True:
            if m.online is None:
                detail = "first reply"
            else:
                detail = f"answering again after {now - m.offline_since:.1f} s offline; state restored"
                m.shown = None
                m.stats.restores += 1
            m.online = True
            m.backoff = self.probe_min_s
            m.next_poll = now
            events.append(ModuleOnline(self.bus_id, m.unit, detail))
        if isinstance(action, Write):
            self._written(m, action.state, now)
            if m.refused is not None:
                m.refused, m.write_after, m.write_backoff = None, 0.0, 0.0
                events.extend(self._say(m, "takes its job write again"))
        elif isinstance(action, Clear):
            if m.pending_clear == action.counter:
                m.pending_clear = None
        elif status is not None:
            events.extend(self._polled(m, status, now - duration))
            self._slow_share(m, duration)
        return events

    def _slow_share(self, m: _Module, duration: float) -> None:
        """Push a slow replier's next poll back by its reply's time times the modules that waited (above)."""
        typical = self.typical_s
        if typical == 0.0 or duration < typical:
            self.typical_s = duration  # the fastest reply seen sets the pace at once
        else:
            self.typical_s = typical + (duration - typical) / 64  # and slow replies move it only slowly
        # Slow only well past the usual (and a quarter of the timeout): jitter never costs a module its turn.
        excess = duration - max(2 * typical, typical + self.timeout_s / 4)
        if excess <= 0:
            return
        waiting = sum(1 for o in self.modules.values() if o is not m and o.online)
        if waiting:
            m.next_poll += duration * waiting

    def _written(self, m: _Module, state: ModuleState, now: float) -> None:
        if state.mode == Mode.DONE:
            # The module turns itself off after 1 s: so does our copy, or a restore would replay "done".
            m.shown = OFF
            if m.desired == state:
                m.desired = OFF
        else:
            m.shown = state
        if m.dirty:
            m.dirty_since = now  # changed again while this write was on the wire
        if m.fast:
            m.next_poll = min(m.next_poll, now + self.poll_s)

    def _polled(self, m: _Module, status: Status, sent: float) -> list[Event]:
        """`sent`: when the poll went out; the poll period runs from there, not from the reply."""
        events: list[Event] = []
        now = sent
        m.last_status = status
        m.next_poll = sent + (self.poll_s if m.fast else self.health_s)
        if status.fault != m.fault:
            # Reported once per change, and at the first poll either way: a fault alarm raised before a
            # restart must be cleared by a module that comes back healthy. (While it refuses its job write,
            # that fault stands whatever the bit says.)
            m.fault = status.fault
            events.extend(self._say(m))
        if status.powered_up:
            # Rebooted: what it showed is gone. Rewrite the desired state first (writes go before clears),
            # then clear the power-up bit, so a failed restore is noticed again at the next poll.
            if m.shown is not None:
                m.stats.restores += 1
            m.shown = None
            m.reported = None  # the counter restarted from 0
            m.pending_clear = status.counter
        if status.key_latched:
            kind = status.key_kind
            token = m.desired.job_token
            key = (status.token_echo, status.counter)
            if token is not None and status.token_echo == token == m.sent_token and kind is not None:
                if m.reported != key:
                    m.reported = key
                    m.stats.key_events += 1
                    self.stats.key_events += 1
                    events.append(KeyPress(self.bus_id, m.unit, token, "shortage" if kind == "shortage" else "confirm",
                                           status.confirmed_qty, status.adjusted, status.counter))
            elif m.reported != key:
                m.reported = key
                m.stats.stale_keys += 1
            m.pending_clear = status.counter
        elif not status.powered_up and m.shown is not None and not m.dirty:
            expect_job = m.shown.mode == Mode.JOB
            if status.job_active != expect_job:
                m.shown = None  # the module lost or changed its state behind our back: write it again
                m.dirty_since = now
        return events

    def on_miss(self, action: Action, now: float, duration: float, error: ModuleMiss) -> list[Event]:
        m = self.modules.get(action.unit)
        self._account(action, m, duration)
        self.stats.misses += 1
        if not isinstance(error, NoResponse):
            self.stats.errors += 1
        if m is None:
            return []
        if isinstance(action, Write):
            _sending(m, action.state)  # a write without a reply may still have reached the module
        m.stats.misses += 1
        if not isinstance(error, NoResponse):
            m.stats.errors += 1
        m.stats.last_error = str(error)
        if isinstance(action, Write) and isinstance(error, ExceptionReply) and m.online:
            return self._refused(m, now, error)
        if m.online is False:
            m.backoff = min(m.backoff * 2, self.probe_max_s)
            m.next_probe = now + m.backoff
            return []
        m.misses += 1
        # Left alone for a timeout at least: a reply that comes late then lands while the bus waits for
        # another unit (and is dropped for its unit id) instead of passing for this module's next reply.
        m.not_before = now + max(self.poll_s, self.timeout_s)
        if m.misses < self.settings.misses_offline:
            return []
        self._go_offline(m, now)
        return [ModuleOffline(self.bus_id, m.unit, f"{m.misses} misses in a row; last: {error}")]

    def _refused(self, m: _Module, now: float, error: ExceptionReply) -> list[Event]:
        """The module answered its job write with an exception: alive, but it will not take the job."""
        m.write_backoff = min(max(m.write_backoff * 2, self.probe_min_s), self.probe_max_s)
        m.write_after = now + m.write_backoff
        if m.refused is not None:
            return []
        what = str(error).partition(": ")[2]
        m.refused = f"refuses its job write ({what}): a module of another register map or firmware?"
        return self._say(m)

    def _say(self, m: _Module, cleared: str = "") -> list[Event]:
        """Report the module's fault (its bit, or its refusal, which names itself) whenever either changes."""
        state = (bool(m.fault) or m.refused is not None, m.refused or "")
        if state == m.said:
            return []
        m.said = state
        return [ModuleFault(self.bus_id, m.unit, state[0], state[1] or ("" if state[0] else cleared))]

    def _go_offline(self, m: _Module, now: float) -> None:
        m.online = False
        m.offline_since = now
        m.shown = None
        m.pending_clear = None
        m.backoff = self.probe_min_s
        m.next_probe = now + self.probe_min_s

    def on_link_down(self, now: float, reason: str) -> list[Event]:
        """The whole bus is unreachable: every module not already offline goes offline now."""
        events: list[Event] = []
        for m in self.modules.values():
            if m.online is not False:
                self._go_offline(m, now)
                events.append(ModuleOffline(self.bus_id, m.unit, f"bus link down: {reason}", link=True))
        return events

    def on_link_up(self, now: float) -> None:
        """Probe every offline module at once (cheap when they answer); the budget still bounds silent ones."""
        for m in self.modules.values():
            if m.online is False:
                m.next_probe = now
                m.backoff = self.probe_min_s
        self.credit = max(self.credit, 0.0)


def _sending(m: _Module, state: ModuleState) -> None:
    """Note a job token as sent to the module: from then on a key latched under it may be the job's."""
    if state.job_token is not None:
        m.sent_token = state.job_token


def _earlier(t: float, m: _Module, t_other: float, other: _Module) -> bool:
    return t < t_other or (t == t_other and m.unit < other.unit)
