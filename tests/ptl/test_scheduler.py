"""The bus scheduler's rules, driven by a ManualClock and plain outcomes (no wire, no real time)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from drivers.ptl import BusSettings, Colour, KeyPress, ModuleFault, ModuleOffline, ModuleOnline, ModuleState, Pattern
from drivers.ptl.codec import ST_CONFIRM, ST_FAULT, ST_JOB_ACTIVE, ST_POWER_UP, ST_SHORTAGE, Status
from drivers.ptl.errors import BadReply, ExceptionReply, NoResponse
from drivers.ptl.scheduler import Action, Clear, Event, Poll, Scheduler, Write
from gateway.clock import ManualClock

SETTINGS = BusSettings(id="bus-a", poll_ms=20, timeout_ms=100, misses_offline=3, health_ms=1000,
                       probe_min_ms=200, probe_max_ms=1600, probe_share=0.10)
JOB = ModuleState.job(4, Colour.GREEN, Pattern.STEADY, 42)
IDLE = Status(0, 0, 0, 0)
ACTIVE = Status(ST_JOB_ACTIVE, 0, 0, 0)


def make(clock: ManualClock, *units: int, settings: BusSettings = SETTINGS) -> Scheduler:
    s = Scheduler(settings, clock.monotonic())
    for u in units:
        s.watch(u, clock.monotonic())
    return s


def ok(s: Scheduler, clock: ManualClock, action: Action, status: Status | None = None, cost: float = 0.005
       ) -> list[Event]:
    clock.advance(cost)
    if isinstance(action, Poll) and status is None:
        m = s.modules.get(action.unit)
        status = ACTIVE if m is not None and m.desired.mode == 1 else IDLE
    return s.on_success(action, clock.monotonic(), cost, status)


def miss(s: Scheduler, clock: ManualClock, action: Action, cost: float = 0.1) -> list[Event]:
    clock.advance(cost)
    return s.on_miss(action, clock.monotonic(), cost, NoResponse("bus-a", action.unit, "no reply"))


def settle(s: Scheduler, clock: ManualClock) -> None:
    """Bring modules online and in sync: first poll, the write, nothing pending."""
    for _ in range(500):
        if all(m.online and not m.dirty and m.pending_clear is None for m in s.modules.values()):
            return
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.001)
        else:
            ok(s, clock, a)
    raise AssertionError("scheduler did not settle")


def test_unknown_module_is_polled_before_its_first_write() -> None:
    clock = ManualClock()
    s = make(clock)
    s.set_state(1, JOB, clock.monotonic())
    a = s.next_action(clock.monotonic())
    assert a == Poll(1)
    # the first poll also reports the fault bit, healthy or not (a fault alarm from before a restart clears)
    assert ok(s, clock, a, Status(ST_POWER_UP, 0, 0, 0)) == [ModuleOnline("bus-a", 1, "first reply"),
                                                            ModuleFault("bus-a", 1, False)]
    assert s.next_action(clock.monotonic()) == Write(1, JOB)  # write before clearing the power-up bit
    ok(s, clock, Write(1, JOB))
    assert s.next_action(clock.monotonic()) == Clear(1, 0)
    ok(s, clock, Clear(1, 0))
    assert s.next_action(clock.monotonic()) is None
    assert s.stats.modules[1].restores == 0  # a fresh module is not a restore


def test_priorities_clear_then_write_then_poll_then_probe() -> None:
    clock = ManualClock()
    s = make(clock, 1, 2, 3, 4)
    settle(s, clock)
    # unit 4 offline, unit 3 due a poll, unit 2 a new job, unit 1 a pending clear
    for _ in range(3):
        miss(s, clock, Poll(4))
    clock.advance(5.0)
    s.set_state(2, JOB, clock.monotonic())
    s.modules[1].pending_clear = 7
    now = clock.monotonic()
    assert s.next_action(now) == Clear(1, 7)
    ok(s, clock, Clear(1, 7))
    assert s.next_action(clock.monotonic()) == Write(2, JOB)
    ok(s, clock, Write(2, JOB))
    polls = []
    while (a := s.next_action(clock.monotonic())) != Poll(4, probe=True):
        assert isinstance(a, Poll) and not a.probe
        polls.append(a.unit)
        ok(s, clock, a)
    assert sorted(polls) == [1, 2, 3]


def test_set_state_coalesces_latest_wins() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    settle(s, clock)
    for q in range(1, 50):
        s.set_state(1, ModuleState.job(q, Colour.BLUE, Pattern.STEADY, q), clock.monotonic())
    last = ModuleState.job(49, Colour.BLUE, Pattern.STEADY, 49)
    assert s.next_action(clock.monotonic()) == Write(1, last)
    s.set_state(1, JOB, clock.monotonic())  # changes again while that write is on the wire
    ok(s, clock, Write(1, last))
    assert s.next_action(clock.monotonic()) == Write(1, JOB)
    ok(s, clock, Write(1, JOB))
    assert s.stats.writes == 3  # the initial off, then exactly one write per state actually sent


def test_misses_take_a_module_offline_and_others_are_served_between_misses() -> None:
    clock = ManualClock()
    s = make(clock, 1, 2, 3)
    for u in (1, 2, 3):
        s.set_state(u, JOB, clock.monotonic())
    settle(s, clock)
    served: list[int] = []
    events: list[Event] = []
    while not any(isinstance(e, ModuleOffline) for e in events):
        clock.advance(0.001)
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.005)
            continue
        if a.unit == 3:
            events += miss(s, clock, a)
        else:
            served.append(a.unit)
            events += ok(s, clock, a)
    assert events == [ModuleOffline("bus-a", 3, "3 misses in a row; last: bus bus-a unit 3: no reply")]
    assert served.count(1) >= 2 and served.count(2) >= 2  # between each miss of unit 3, the others got polls
    assert s.view(3).online is False and s.view(1).online is True


def test_probe_backoff_doubles_to_the_cap_and_resets_on_return() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    settle(s, clock)
    for _ in range(3):
        clock.advance(1.0)
        miss(s, clock, Poll(1))
    gaps = []
    last = clock.monotonic()
    for _ in range(7):
        while (a := s.next_action(clock.monotonic())) is None:
            wake = s.next_wakeup(clock.monotonic())
            assert wake is not None
            clock.advance(max(wake - clock.monotonic(), 0.0) + 1e-6)
        assert a == Poll(1, probe=True)
        gaps.append(round(clock.monotonic() - last, 2))
        miss(s, clock, a)
        last = clock.monotonic()
    # probe_min 0.2 s doubling to 1.6 s; each gap is measured from the end of the previous (0.1 s) probe
    assert gaps == [0.2, 0.4, 0.8, 1.6, 1.6, 1.6, 1.6]
    events = ok(s, clock, Poll(1, probe=True), Status(ST_POWER_UP, 0, 0, 0))
    assert isinstance(events[0], ModuleOnline) and "restored" in events[0].detail
    assert s.next_action(clock.monotonic()) == Write(1, ModuleState.off())  # light restored first
    assert s.modules[1].backoff == 0.2


def test_probes_of_offline_modules_stay_within_ten_percent_of_bus_time() -> None:
    clock = ManualClock()
    fast = BusSettings(id="bus-a", poll_ms=20, timeout_ms=100, probe_min_ms=1, probe_max_ms=1, probe_share=0.10)
    s = make(clock, *range(1, 11), settings=fast)
    for u in range(1, 4):
        s.set_state(u, JOB, clock.monotonic())
    settle(s, clock)
    dead = {4, 5, 6, 7, 8, 9, 10}
    start = clock.monotonic()
    while clock.monotonic() - start < 60.0:
        a = s.next_action(clock.monotonic())
        if a is None:
            wake = s.next_wakeup(clock.monotonic())
            assert wake is not None
            clock.advance(max(wake - clock.monotonic(), 0.0) + 1e-6)
        elif a.unit in dead:
            miss(s, clock, a, cost=0.1)  # each silent probe costs a full timeout
        else:
            ok(s, clock, a)
    elapsed = clock.monotonic() - start
    probe_s = s.stats.probe_s - 0.0
    assert s.stats.probes > 20
    assert probe_s <= 0.10 * elapsed + 0.1 + 0.1  # share of the time, plus the bank and one probe over
    # the live modules were polled all along
    assert all(s.stats.modules[u].polls > 500 for u in (1, 2, 3))


def test_key_press_reported_once_per_counter_and_shortage_wins() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    latched = Status(ST_JOB_ACTIVE | ST_CONFIRM | ST_SHORTAGE | 0x4, 2, 42, 5)
    events = ok(s, clock, Poll(1), latched)
    assert events == [KeyPress("bus-a", 1, 42, "shortage", 2, True, 5)]
    assert s.next_action(clock.monotonic()) == Clear(1, 5)
    clock.advance(1.0)
    assert ok(s, clock, Poll(1), latched) == []  # the same event read again (clear lost): not doubled
    events = ok(s, clock, Poll(1), Status(ST_JOB_ACTIVE | ST_CONFIRM, 4, 42, 6))
    assert [e.counter for e in events if isinstance(e, KeyPress)] == [6]


def test_stale_token_is_cleared_not_reported_and_error_signal_keeps_the_token() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    assert ok(s, clock, Poll(1), Status(ST_JOB_ACTIVE | ST_CONFIRM, 4, 41, 3)) == []
    assert s.next_action(clock.monotonic()) == Clear(1, 3)
    assert s.stats.modules[1].stale_keys == 1
    ok(s, clock, Clear(1, 3))
    s.set_state(1, ModuleState.error(42), clock.monotonic())
    ok(s, clock, s.next_action(clock.monotonic()) or Poll(1))
    events = ok(s, clock, Poll(1), Status(ST_CONFIRM, 4, 42, 4))
    assert [type(e) for e in events] == [KeyPress]  # the domain decides what a key during the error means


def test_key_latched_under_a_token_this_bus_never_sent_is_stale() -> None:
    """The job's token, but latched before this bus wrote it (a previous gateway process used it too)."""
    clock = ManualClock()
    s = make(clock, 1)
    s.set_state(1, JOB, clock.monotonic())
    latched = Status(ST_JOB_ACTIVE | ST_CONFIRM, 4, 42, 9)
    # first contact: the ModuleOnline and the fault bit's first reading, no press
    assert ok(s, clock, Poll(1), latched)[1:] == [ModuleFault("bus-a", 1, False)]
    assert s.next_action(clock.monotonic()) == Write(1, JOB)
    ok(s, clock, Write(1, JOB))
    assert s.next_action(clock.monotonic()) == Clear(1, 9)
    assert s.stats.modules[1].stale_keys == 1 and s.stats.key_events == 0
    ok(s, clock, Clear(1, 9))
    events = ok(s, clock, Poll(1), Status(ST_JOB_ACTIVE | ST_CONFIRM, 4, 42, 10))  # pressed on our write
    assert events == [KeyPress("bus-a", 1, 42, "confirm", 4, False, 10)]


def test_key_on_a_job_whose_write_got_no_reply_still_counts() -> None:
    """A write may reach the module even when its reply is lost: a press under that token is the job's."""
    clock = ManualClock()
    s = make(clock, 1)
    settle(s, clock)
    s.set_state(1, JOB, clock.monotonic())
    assert s.next_action(clock.monotonic()) == Write(1, JOB)
    miss(s, clock, Write(1, JOB))
    clock.advance(1.0)
    events = ok(s, clock, Poll(1), Status(ST_JOB_ACTIVE | ST_CONFIRM, 4, 42, 1))
    assert events == [KeyPress("bus-a", 1, 42, "confirm", 4, False, 1)]


def test_power_up_restores_then_clears() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    ok(s, clock, Poll(1), Status(ST_POWER_UP, 0, 0, 0))
    assert s.next_action(clock.monotonic()) == Write(1, JOB)
    miss(s, clock, Write(1, JOB))  # the restore fails once: the clear must wait for it
    assert s.next_action(clock.monotonic()) is None  # left alone for a timeout after a miss
    clock.advance(0.1)
    assert s.next_action(clock.monotonic()) == Write(1, JOB)
    ok(s, clock, Write(1, JOB))
    assert s.next_action(clock.monotonic()) == Clear(1, 0)
    assert s.stats.modules[1].restores == 1


def test_done_becomes_off_and_lost_state_is_rewritten() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    s.set_state(1, ModuleState.done(), clock.monotonic())
    ok(s, clock, s.next_action(clock.monotonic()) or Poll(1))
    assert s.view(1).desired == ModuleState.off() == s.view(1).shown
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    clock.advance(1.0)
    ok(s, clock, Poll(1), IDLE)  # says "no job active" without a power-up: someone changed it
    assert s.next_action(clock.monotonic()) == Write(1, JOB)


def test_link_down_takes_every_module_offline_and_link_up_probes_at_once() -> None:
    clock = ManualClock()
    s = make(clock, 1, 2)
    settle(s, clock)
    events = s.on_link_down(clock.monotonic(), "connection refused")
    assert events == [ModuleOffline("bus-a", 1, "bus link down: connection refused", link=True),
                      ModuleOffline("bus-a", 2, "bus link down: connection refused", link=True)]
    assert s.on_link_down(clock.monotonic(), "again") == []  # once per outage
    clock.advance(0.01)
    s.on_link_up(clock.monotonic())
    assert s.next_action(clock.monotonic()) == Poll(1, probe=True)


def test_bad_replies_count_as_errors_and_misses() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    settle(s, clock)
    clock.advance(2)
    s.on_miss(Poll(1), clock.monotonic(), 0.001, BadReply("bus-a", 1, "CRC"))
    st = s.stats.modules[1]
    assert (st.misses, st.errors, s.stats.errors) == (1, 1, 1)
    assert "CRC" in st.last_error


def test_unwatched_module_mid_transaction_is_ignored() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    a = s.next_action(clock.monotonic())
    assert a is not None
    s.unwatch(1)
    assert ok(s, clock, a) == []
    assert s.next_action(clock.monotonic()) is None and s.next_wakeup(clock.monotonic()) is None


def run_until(s: Scheduler, clock: ManualClock, stop: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if stop():
            return
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.001)
        else:
            ok(s, clock, a)
    raise AssertionError("condition never met")


def test_idle_modules_get_health_polls_job_modules_fast_polls() -> None:
    clock = ManualClock()
    s = make(clock, 1, 2)
    s.set_state(1, JOB, clock.monotonic())
    settle(s, clock)
    start = {u: s.stats.modules[u].polls for u in (1, 2)}
    t0 = clock.monotonic()
    run_until(s, clock, lambda: clock.monotonic() - t0 >= 2.0)
    job_polls = s.stats.modules[1].polls - start[1]
    idle_polls = s.stats.modules[2].polls - start[2]
    assert 80 <= job_polls <= 101 and 1 <= idle_polls <= 3  # every 20 ms vs every 1 s


def test_the_fault_bit_is_reported_at_the_first_poll_and_then_once_per_change() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    faulty = Status(ST_FAULT, 0, 0, 0)
    assert ok(s, clock, Poll(1), faulty)[1:] == [ModuleFault("bus-a", 1, True)]  # after the ModuleOnline
    assert ok(s, clock, Poll(1), faulty) == []  # unchanged: said once
    assert ok(s, clock, Poll(1), IDLE) == [ModuleFault("bus-a", 1, False)]
    assert ok(s, clock, Poll(1), IDLE) == []


def test_a_module_that_refuses_its_job_write_is_a_fault_not_a_flapping_module() -> None:
    """It answers its polls and refuses the FC16 job write (another register map or firmware). Counted as
    misses, it went offline, answered the next probe, was "restored", refused again: about 5 offline and online
    events a second, all journaled. Now: one fault, still online and polled, the write tried again with a
    growing backoff; the fault clears when a write is taken."""
    clock = ManualClock()
    s = make(clock, 1, 2)
    settle(s, clock)
    s.set_state(2, JOB, clock.monotonic())
    refused = ExceptionReply("bus-a", 2, 16, 2)
    events: list[Event] = []
    writes: list[float] = []
    t0 = clock.monotonic()
    while clock.monotonic() - t0 < 10.0:  # ten seconds of bus time
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.001)
        elif isinstance(a, Write) and a.unit == 2:
            writes.append(clock.monotonic())
            clock.advance(0.005)
            events += s.on_miss(a, clock.monotonic(), 0.005, refused)
        else:
            events += ok(s, clock, a)
    assert events == [ModuleFault("bus-a", 2, True, "refuses its job write (exception 2 (illegal data address) to "
                                                    "function 16): a module of another register map or firmware?")]
    assert s.modules[2].online and s.stats.modules[2].polls > 5  # alive, and watched
    gaps = [b - a for a, b in pairwise(writes)]
    assert all(b >= a - 0.01 for a, b in pairwise(gaps))  # a growing backoff,
    assert gaps[0] >= 0.2 and gaps[-1] >= 1.6 and len(writes) < 15  # from probe_min up to probe_max
    assert s.stats.modules[2].errors == len(writes)
    run_until(s, clock, lambda: isinstance(s.next_action(clock.monotonic()), Write))
    a = s.next_action(clock.monotonic())
    assert a == Write(2, JOB)
    assert ok(s, clock, a) == [ModuleFault("bus-a", 2, False, "takes its job write again")]


def test_a_slow_module_gets_no_more_of_the_bus_than_the_others() -> None:
    """Four modules with jobs; module 3 answers every poll in 90 ms (inside the 100 ms timeout), the others in
    5 ms. Polled in turn, it took the others from ~50 to ~11 polls a second (a black-box run on RTU); it now
    waits for its excess times the modules it kept waiting, and the others keep most of their rate. It still
    answers, and is still polled, so its own key presses still count."""
    clock = ManualClock()
    s = make(clock, 1, 2, 3, 4)
    for u in (1, 2, 3, 4):
        s.set_state(u, JOB, clock.monotonic())
    settle(s, clock)
    start = {u: s.stats.modules[u].polls for u in (1, 2, 3, 4)}
    t0 = clock.monotonic()
    for _ in range(100_000):
        if clock.monotonic() - t0 >= 10.0:
            break
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.001)
        else:
            ok(s, clock, a, cost=0.09 if a.unit == 3 else 0.005)
    rate = {u: (s.stats.modules[u].polls - start[u]) / 10.0 for u in (1, 2, 3, 4)}
    assert all(rate[u] >= 30 for u in (1, 2, 4)), rate  # polled in turn: 9.6/s each (34/s now)
    assert 1 <= rate[3] < rate[1] / 4, rate
    assert s.modules[3].online


REFUSED = ExceptionReply("bus-a", 1, 16, 2)
FAULTY = Status(ST_FAULT, 0, 0, 0)


def _refuse(s: Scheduler, clock: ManualClock) -> list[Event]:
    s.set_state(1, JOB, clock.monotonic())
    a = s.next_action(clock.monotonic())
    assert a == Write(1, JOB)
    clock.advance(0.005)
    return s.on_miss(a, clock.monotonic(), 0.005, REFUSED)


def test_the_fault_bit_and_a_refused_write_together_are_reported_as_they_change() -> None:
    """Either may end while the other stands: the alarm must then say the one that is left (review). The bit
    first: its fault, then the refusal names itself, and the bit clearing leaves the refusal."""
    clock = ManualClock()
    s = make(clock, 1)
    assert ok(s, clock, Poll(1), FAULTY)[1:] == [ModuleFault("bus-a", 1, True)]
    run_until(s, clock, lambda: not s.modules[1].dirty and s.modules[1].pending_clear is None)
    events = _refuse(s, clock)
    assert [(e.fault, "refuses its job write" in e.detail) for e in events if isinstance(e, ModuleFault)] == [
        (True, True)]
    assert ok(s, clock, Poll(1), IDLE) == []  # the bit is gone; the refusal stands, as reported


def test_a_write_taken_again_while_the_fault_bit_is_set_leaves_the_bit_s_fault() -> None:
    clock = ManualClock()
    s = make(clock, 1)
    settle(s, clock)
    assert "refuses its job write" in _refuse(s, clock)[0].detail  # type: ignore[union-attr]
    assert ok(s, clock, Poll(1), FAULTY) == []  # the fault bit comes on as well: still a fault, as reported
    while True:  # polled on until the write is tried again
        a = s.next_action(clock.monotonic())
        if a is None:
            clock.advance(0.001)
        elif isinstance(a, Write):
            break
        else:
            assert ok(s, clock, a, Status(ST_FAULT | ST_JOB_ACTIVE, 0, 0, 0)) == []
    assert ok(s, clock, a) == [ModuleFault("bus-a", 1, True)]  # taken: the fault bit's fault is what is left
