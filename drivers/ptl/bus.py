"""One PTL bus: a run loop that owns the Modbus link and performs what the scheduler decides.

One instance per bus and one task per instance, so a slow or dead bus never delays another. The loop is
the link's only user, which makes the bus half-duplex by construction (one transaction at a time, as
RS-485 requires). Callers never wait on the wire: `set_state` records the desired state and returns;
key presses and health changes come back through the callbacks, which run in the bus task and must
not block (hand the event to the domain and return).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .codec import (
    COMM_BLOCK,
    HR_CLEAR,
    HR_COMMAND,
    IDENTITY_BLOCK,
    IR_FIRMWARE,
    JOB_BLOCK,
    POLL_BLOCK,
    Command,
    CommSettings,
    Identity,
    Parity,
    Status,
    check_unit,
    decode_comm,
    decode_identity,
    decode_status,
    encode_comm,
)
from .errors import BusNotRunning, LinkDown, ModuleMiss, PtlError
from .link import ModbusLink
from .model import (
    BusLink,
    BusSettings,
    BusStats,
    HealthEvent,
    KeyPress,
    ModuleFault,
    ModuleOffline,
    ModuleOnline,
    ModuleState,
)
from .scheduler import Action, Clear, Event, ModuleView, Poll, Scheduler, Write

log = logging.getLogger("floorgate.ptl")

T = TypeVar("T")


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class _Monotonic:
    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(slots=True)
class _TechOp:
    unit: int
    run: Callable[[ModbusLink], Awaitable[Any]]
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _end_if_cancelled(task: asyncio.Task[Any] | None) -> None:
    """End the bus loop if its task was asked to stop. In Python 3.11 `asyncio.wait_for`, which pymodbus uses
    for every request and connect, loses a cancellation that races with the reply (gh-86296): the request
    returns as if nothing happened, and the loop would run on under whoever cancelled it (a task group waits
    for it for ever). The request still counts on the task (`cancelling()`), so the loop honours it here, at the
    top of each turn."""
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PtlBus:
    """The driver of one bus. Construct, then `await start()` (or run `run()` in your TaskGroup)."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        on_key: Callable[[KeyPress], None] | None = None,
        on_health: Callable[[HealthEvent], None] | None = None,
        clock: MonotonicClock | None = None,
    ) -> None:
        self.settings = settings
        self.bus_id = settings.id
        self._clock: MonotonicClock = clock or _Monotonic()
        self._on_key = on_key
        self._on_health = on_health
        self._sched = Scheduler(settings, self._clock.monotonic())
        self._link = ModbusLink(settings)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._tech: deque[_TechOp] = deque()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._link_error = ""
        self._link_told: bool | None = None  # the link state last reported (BusLink); None: not yet
        self._unproven = False  # connected, and no transaction has gone through on this connection yet
        self._reconnect_s = settings.reconnect_min_ms / 1000  # the wait before the next connect; grows while down
        self.link_up = False

    # ---- desired state -------------------------------------------------------------------------------

    def set_state(self, unit: int, state: ModuleState) -> None:
        """Show `state` on `unit` as soon as the bus gets to it; only the latest state per module is written."""
        if not isinstance(state, ModuleState):
            raise TypeError(f"state must be a ModuleState, got {type(state).__name__}")
        self._sched.set_state(check_unit(unit), state, self._clock.monotonic())
        self._wake.set()
        self._progress.set()

    def watch(self, unit: int) -> None:
        """Take charge of a module that exists: it is written `off`, polled for health, restored on reboot."""
        self._sched.watch(check_unit(unit), self._clock.monotonic())
        self._wake.set()

    def unwatch(self, unit: int) -> None:
        """Forget a module: no more traffic to it, no more events from it (its light is left as it is)."""
        self._sched.unwatch(check_unit(unit))

    def module(self, unit: int) -> ModuleView:
        if unit not in self._sched.modules:
            raise KeyError(f"bus {self.bus_id}: unit {unit} is not watched")
        return self._sched.view(unit)

    def modules(self) -> list[ModuleView]:
        return [self._sched.view(u) for u in sorted(self._sched.modules)]

    def is_online(self, unit: int) -> bool | None:
        return self.module(unit).online

    @property
    def stats(self) -> BusStats:
        return self._sched.stats

    def snapshot(self) -> dict[str, Any]:
        """Stats for /metrics and the technician page, with link state and per-module health."""
        out = self.stats.as_dict(self._clock.monotonic())
        out["bus"] = self.bus_id
        out["link_up"] = self.link_up
        out["link_error"] = self._link_error
        for view in self.modules():
            entry = out["modules"].setdefault(view.unit, {})
            entry["online"] = view.online
            entry["mode"] = view.desired.mode.name.lower()
            entry["in_sync"] = view.shown == view.desired
            entry["fault"] = bool(view.last_status and view.last_status.fault)
        return out

    async def wait_shown(self, unit: int) -> None:
        """Until the module is online and shows its desired state; bound it with `asyncio.timeout`."""
        def done() -> bool:
            v = self._sched.modules.get(unit)
            return v is not None and v.online is True and v.shown == v.desired and v.pending_clear is None

        await self.wait_until(done)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Re-check `predicate` after every transaction; bound it with `asyncio.timeout`."""
        while not predicate():
            self._progress.clear()
            await self._progress.wait()

    # ---- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"ptl-bus-{self.bus_id}")
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """Cancel the bus task and wait for it. The loop ends by itself after a cancellation pymodbus lost
        (_end_if_cancelled); cancelling again every half second is only a second line of defence."""
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if not task.cancelled() and task.exception() is not None:
            log.error("PTL bus %s: run loop ended with %r", self.bus_id, task.exception())

    async def __aenter__(self) -> PtlBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """The bus loop; runs until cancelled. Never raises for a bus or module fault."""
        self._running = True
        self._sched.stats.started = self._clock.monotonic()
        me = asyncio.current_task()
        try:
            while True:
                _end_if_cancelled(me)
                if not self._link.connected:
                    await self._connect()
                    continue
                now = self._clock.monotonic()
                action = self._sched.next_action(now)
                if self._tech and (action is None or isinstance(action, Poll)):
                    await self._run_tech(self._tech.popleft())
                    continue
                if action is None:
                    await self._sleep_until(self._sched.next_wakeup(now), now)
                    continue
                await self._execute(action)
        finally:
            self._running = False
            self.link_up = False
            self._link.close()
            self._fail_tech(BusNotRunning(f"bus {self.bus_id} stopped"))

    async def _connect(self) -> None:
        me = asyncio.current_task()
        if self._unproven:
            # The last connection went down before any transaction went through: a server that accepts and
            # then drops every connection (busy with another client, its RS-485 side down). Until one goes
            # through, the outage (its one log line and event, the growing wait) goes on: reported as up at
            # each connect, it logged and sent a bus online/offline pair about 19 times a second.
            await asyncio.sleep(self._backoff())
        while True:
            _end_if_cancelled(me)
            try:
                await self._link.connect()
                break
            except LinkDown as e:
                self._link_down(str(e))
                self._fail_tech(e)
                _end_if_cancelled(me)  # a cancellation lost in the failed connect: not after the backoff
                await asyncio.sleep(self._backoff())
        self._unproven = True
        self.stats.connects += 1
        self.link_up = True
        self._sched.on_link_up(self._clock.monotonic())
        self._progress.set()

    def _backoff(self) -> float:
        delay = self._reconnect_s
        self._reconnect_s = min(delay * 2, self.settings.reconnect_max_ms / 1000)
        return delay

    def _link_proven(self) -> None:
        """A transaction went through (a module's reply, or its silence, on a working link)."""
        self._unproven = False
        if self._link_told is True:
            return
        if self._link_error:
            log.info("PTL bus %s: link up again", self.bus_id)
        self._link_error = ""
        self._reconnect_s = self.settings.reconnect_min_ms / 1000
        self._link_told = True
        self._emit([BusLink(self.bus_id, True, "link up")])

    def _link_down(self, reason: str) -> None:
        if not self._link_error:
            log.warning("PTL bus %s: link down: %s", self.bus_id, reason)
            self.stats.link_losses += 1
        if self._link_told is not False:
            self._link_told = False
            self._emit([BusLink(self.bus_id, False, f"link down: {reason}")])
        self._link_error = reason
        self.link_up = False
        self._link.close()
        self._emit(self._sched.on_link_down(self._clock.monotonic(), reason))
        self._progress.set()

    async def _sleep_until(self, deadline: float | None, now: float) -> None:
        self._wake.clear()
        if deadline is not None and deadline <= now:
            await asyncio.sleep(0)
            return
        handle = None
        if deadline is not None:
            handle = asyncio.get_running_loop().call_later(deadline - now, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if handle is not None:
                handle.cancel()

    async def _execute(self, action: Action) -> None:
        link = self._link
        t0 = self._clock.monotonic()
        status: Status | None = None
        try:
            if isinstance(action, Poll):
                status = decode_status(await link.read_input(action.unit, *POLL_BLOCK))
            elif isinstance(action, Write):
                await link.write_registers(action.unit, JOB_BLOCK[0], action.state.registers())
            elif isinstance(action, Clear):
                await link.write_register(action.unit, HR_CLEAR, action.counter)
        except ModuleMiss as e:
            self._link_proven()
            now = self._clock.monotonic()
            self._emit(self._sched.on_miss(action, now, now - t0, e))
        except LinkDown as e:
            self._link_down(str(e))
        else:
            self._link_proven()
            now = self._clock.monotonic()
            self._emit(self._sched.on_success(action, now, now - t0, status))
        self._progress.set()

    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            try:
                if isinstance(ev, KeyPress):
                    if self._on_key is not None:
                        self._on_key(ev)
                    continue
                if isinstance(ev, ModuleOffline):
                    log.warning("PTL %s-u%03d offline: %s", ev.bus_id, ev.unit, ev.detail)
                elif isinstance(ev, ModuleOnline):
                    log.info("PTL %s-u%03d online: %s", ev.bus_id, ev.unit, ev.detail)
                elif isinstance(ev, ModuleFault) and ev.fault:
                    log.warning("PTL %s-u%03d reports a fault (status bit 8)", ev.bus_id, ev.unit)
                if self._on_health is not None:
                    self._on_health(ev)
            except Exception:  # a faulty consumer must not stop the lights of a whole bus
                log.exception("PTL bus %s: event handler failed for %r", self.bus_id, ev)

    # ---- technician operations ------------------------------------------------------------------------

    async def _submit(self, unit: int, run: Callable[[ModbusLink], Awaitable[T]]) -> T:
        check_unit(unit)
        if not self._running:
            raise BusNotRunning(f"bus {self.bus_id} is not running: start it first")
        if not self.link_up:
            raise LinkDown(f"bus {self.bus_id}: link down: {self._link_error or 'connecting'}")
        op = _TechOp(unit, run)
        self._tech.append(op)
        self._wake.set()
        result: T = await op.future
        return result

    async def _run_tech(self, op: _TechOp) -> None:
        if op.future.done():  # the caller gave up
            return
        t0 = self._clock.monotonic()
        try:
            result = await op.run(self._link)
        except LinkDown as e:
            op.future.set_exception(e)
            self._link_down(str(e))
        except PtlError as e:
            op.future.set_exception(e)
        except Exception as e:  # a reply a technician op cannot decode is reported, not fatal
            op.future.set_exception(PtlError(f"bus {self.bus_id} unit {op.unit}: {e}"))
        else:
            op.future.set_result(result)
        self.stats.technician += 1
        self.stats.busy_s += self._clock.monotonic() - t0
        self._progress.set()

    def _fail_tech(self, error: Exception) -> None:
        while self._tech:
            op = self._tech.popleft()
            if not op.future.done():
                op.future.set_exception(error)

    async def read_status(self, unit: int) -> Status:
        """One poll outside the schedule (does not clear anything)."""
        return await self._submit(unit, lambda link: self._status(link, unit))

    @staticmethod
    async def _status(link: ModbusLink, unit: int) -> Status:
        return decode_status(await link.read_input(unit, *POLL_BLOCK))

    async def read_identity(self, unit: int) -> Identity:
        """Model number, model name, serial number (holding 1000-1053) and firmware version (input 4)."""
        async def run(link: ModbusLink) -> Identity:
            block = await link.read_holding(unit, *IDENTITY_BLOCK)
            fw = await link.read_input(unit, IR_FIRMWARE, 1)
            return decode_identity(block, fw[0])

        return await self._submit(unit, run)

    async def command(self, unit: int, command: Command) -> None:
        cmd = Command(command)
        await self._submit(unit, lambda link: link.write_register(unit, HR_COMMAND, int(cmd)))

    async def identify(self, unit: int) -> None:
        """Blink the module white for 5 s so a technician can find it on the shelf."""
        await self.command(unit, Command.IDENTIFY)

    async def self_test(self, unit: int) -> None:
        """All segments and white for 2 s."""
        await self.command(unit, Command.SELF_TEST)

    async def reboot(self, unit: int) -> None:
        await self.command(unit, Command.REBOOT)

    async def read_comm(self, unit: int) -> CommSettings:
        """The stored communication settings (6100-6103), which apply from the next reboot."""
        async def run(link: ModbusLink) -> CommSettings:
            return decode_comm(await link.read_holding(unit, *COMM_BLOCK))

        return await self._submit(unit, run)

    async def set_comm(
        self,
        unit: int,
        *,
        unit_id: int | None = None,
        baudrate: int | None = None,
        parity: Parity | None = None,
        stopbits: int | None = None,
        reboot: bool = True,
    ) -> CommSettings:
        """Change unit id / baud / parity / stop bits (read-modify-write of 6100-6103), then reboot so they apply.

        The module answers at its new address (and speed) after the reboot; the bus's watch list is not
        changed, that is the caller's business.
        """
        async def run(link: ModbusLink) -> CommSettings:
            old = decode_comm(await link.read_holding(unit, *COMM_BLOCK))
            new = CommSettings(
                unit_id=old.unit_id if unit_id is None else unit_id,
                baudrate=old.baudrate if baudrate is None else baudrate,
                parity=old.parity if parity is None else Parity(parity),
                stopbits=old.stopbits if stopbits is None else stopbits,
            )
            await link.write_registers(unit, COMM_BLOCK[0], encode_comm(new))
            if reboot:
                await link.write_register(unit, HR_COMMAND, int(Command.REBOOT))
            return new

        if unit_id is not None:
            check_unit(unit_id)
        return await self._submit(unit, run)

    async def read_coils(self, unit: int) -> tuple[bool, bool]:
        """(buzzer, keys locked)."""
        async def run(link: ModbusLink) -> tuple[bool, bool]:
            bits = await link.read_coils(unit, 0, 2)
            return bits[0], bits[1]

        return await self._submit(unit, run)

    async def write_coil(self, unit: int, coil: int, on: bool) -> None:
        if coil not in (0, 1):
            raise ValueError(f"coil {coil}: expected 0 (buzzer) or 1 (keys locked)")
        await self._submit(unit, lambda link: link.write_coil(unit, coil, on))
