"""The PTL coordinator: what the domain wants each module to show, turned into module states on the right
bus; key presses turned into domain confirms; module health into device events.

Job tokens are allocated here: every change of what a module shows (another line, another quantity, another
colour) gets a new token, so a press made on the old display is recognised as stale by the driver and never
confirms the new one. Each coordinator (a gateway process, or the set rebuilt on SIGHUP) starts every
module's tokens at a random value rather than at 1, so that what a new process shows is unlikely to carry
the token a module still has latched from the old one; and the bus driver ignores (and clears) any press
latched under a token it has not itself written to that module, so a press latched before the new process
wrote its job never counts, whatever the token. What is left is a press on the old display in the few
milliseconds between the new process's first poll and its first write, which counts only if the random
token also collides (1 in 65535).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import Any

from drivers.ptl import (
    BusLink,
    BusSettings,
    Colour,
    HealthEvent,
    KeyPress,
    ModuleFault,
    ModuleOffline,
    ModuleOnline,
    ModuleState,
    Pattern,
    PtlBus,
)
from gateway.config import Config
from gateway.devices.registry import DeviceRegistry
from gateway.devices.status import store_fault, store_status
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.devices import fault_alarm_id, module_id
from gateway.domain.floor import Floor
from gateway.domain.lights import LightJob, desired
from gateway.domain.model import Light
from gateway.domain.picking import key_press
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.ptl.coordinator")

COLOURS = {"green": Colour.GREEN, "blue": Colour.BLUE, "yellow": Colour.YELLOW, "magenta": Colour.MAGENTA,
           "cyan": Colour.CYAN}
PATTERNS = {"steady": Pattern.STEADY, "blink": Pattern.BLINK_1HZ}
UNKNOWN_BUS_ALARM = "ptl_unknown_bus"
DONE_S = 1.5  # the module turns itself off after `done`; leave it alone meanwhile
LINK_GRACE_S = 10.0  # a module dark (its bus link dropped, or it stopped answering) is recorded offline after this


class PtlDevices:
    name = "ptl"

    def __init__(self, cfg: Config, service: FloorService, registry: DeviceRegistry) -> None:
        self.cfg = cfg
        self.service = service
        self.registry = registry
        self.error_s = cfg.picking.error_signal_ms / 1000.0
        self.buses: dict[str, PtlBus] = {}
        for b in cfg.ptl.buses:
            self.buses[b.id] = PtlBus(BusSettings.from_config(b), on_key=self._on_key, on_health=self._on_health)
            registry.add(b.id, "bus")
        self.shown: dict[Light, tuple[int, tuple[Any, ...]]] = {}  # token and what it shows
        self._tokens: dict[Light, int] = {}  # the last token handed out per module
        self._random = random.SystemRandom()
        self._done_at: dict[Light, float] = {}
        self._error_until: dict[Light, float] = {}
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.presses = 0
        self._unknown_buses: dict[str, int] = {}  # bus ids master data lights and the config lacks: locations
        self._tasks: set[asyncio.Task[None]] = set()
        # Modules offline only because their bus's link went down, not yet recorded: bus -> unit -> detail. A
        # link that dropped for a moment (a TCP reconnect) wrote an offline and an online event for every module
        # of the bus, 80 for 40 modules, besides the bus's own; the bus's events say it all. Those still not
        # answering after LINK_GRACE_S are recorded offline then, the others never were.
        self.link_grace_s = LINK_GRACE_S
        self._link_dark: dict[str, dict[int, tuple[str, float]]] = {}  # bus -> unit -> (detail, record at)
        self._link_timers: dict[str, asyncio.TimerHandle] = {}
        service.on_signal(self._on_signal)

    # -- domain -> modules --------------------------------------------------------------------------------

    def _on_signal(self, signal: Any) -> None:
        if not isinstance(signal, tuple) or not signal:
            return
        kind = signal[0]
        if kind == "lights":
            for light in signal[1]:
                self.refresh(light)
        elif kind == "light_error":
            for light in signal[1]:
                self.error(light)
        elif kind == "light_done":
            self.done(signal[1])
        elif kind == "masterdata_replaced":
            self.watch_all()
        elif kind == "modules_changed":  # a merge put locations on other modules: only those are shown again
            self.watch(signal[1])
        elif kind == "floor_reloaded":
            # Memory was rebuilt from the journal after a change could not be stored (e.g. a full disk): every
            # job is shown again from what is stored, under new tokens, as after a restart, so a press made
            # meanwhile (its confirm was not stored) is never taken for the job shown now.
            shown = set(self.shown)
            self.shown.clear()
            self.watch_all(shown)

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def refresh(self, light: Light) -> None:
        bus = self.buses.get(light.bus)
        if bus is None:
            return
        if self._error_until.get(light, 0.0) > self._loop_time():
            return  # the error signal is showing; the job comes back when it ends
        job = desired(self.service.floor, light)
        done_left = self._done_at.get(light, -1e9) + DONE_S - self._loop_time()
        if job is None:
            self.shown.pop(light, None)
            if done_left > 0:
                return
            bus.set_state(light.unit, ModuleState.off())
            return
        if done_left > 0:
            # The done acknowledgement first, then the next line on this module: shown at once, it replaced the
            # `done` before it was written, and the display went on as it was (the same picker's next line of
            # that SKU, for another order and tote, looked like the line just finished).
            asyncio.get_running_loop().call_later(done_left, self.refresh, light)
            return
        key = (job.task_id, job.line_no, job.qty, job.colour, job.pattern)
        current = self.shown.get(light)
        if current is not None and current[1] == key:
            token = current[0]
        else:
            token = self._next_token(light)
            self.shown[light] = (token, key)
        bus.set_state(light.unit, self._job_state(job, token))

    def _job_state(self, job: LightJob, token: int) -> ModuleState:
        return ModuleState.job(min(job.qty, 9999), COLOURS.get(job.colour, Colour.GREEN),
                               PATTERNS.get(job.pattern, Pattern.STEADY), token)

    def _next_token(self, light: Light) -> int:
        last = self._tokens.get(light)
        if last is None:
            last = self._random.randrange(65535)  # 0-65534: the first token is 1-65535
        t = last % 65535 + 1
        self._tokens[light] = t
        return t

    def error(self, light: Light) -> None:
        bus = self.buses.get(light.bus)
        if bus is None:
            return
        current = self.shown.get(light)
        token = current[0] if current is not None else self._next_token(light)
        qty = current[1][2] if current is not None else 0
        bus.set_state(light.unit, ModuleState.error(token, qty=min(qty, 9999)))
        self._error_until[light] = self._loop_time() + self.error_s
        asyncio.get_running_loop().call_later(self.error_s, self._end_error, light)

    def _end_error(self, light: Light) -> None:
        self._error_until.pop(light, None)
        self.refresh(light)

    def done(self, light: Light) -> None:
        bus = self.buses.get(light.bus)
        if bus is None:
            return
        self.shown.pop(light, None)
        self._done_at[light] = self._loop_time()
        bus.set_state(light.unit, ModuleState.done())

    def watch_all(self, shown: Iterable[Light] = ()) -> None:
        """Watch every module master data puts on our buses, and show what each should. Modules that showed a job
        (`shown`, and what self.shown holds) are refreshed too: one that no location names any more would
        otherwise keep its old job lit, and a picker would walk to it."""
        lights = {loc.light for loc in self.service.floor.md.locations.values() if loc.light is not None}
        self._unknown_buses = {}
        self._watch(lights)
        if bool(self._unknown_buses) != (UNKNOWN_BUS_ALARM in self.service.floor.alarms):
            self._tell()  # (also an alarm kept from before a restart, or of a bus now configured)
        for light in lights | set(self.service.floor.modules) | set(self.shown) | set(shown):
            self.refresh(light)

    def watch(self, lights: Iterable[Light]) -> None:
        """Watch these modules (one a location has just joined is new to its bus) and show what each should."""
        lights = set(lights)
        self._watch(lights)
        for light in lights:
            self.refresh(light)

    def _watch(self, lights: set[Light]) -> None:
        before = set(self._unknown_buses)
        for light in lights:
            bus = self.buses.get(light.bus)
            if bus is not None:
                bus.watch(light.unit)
                self.registry.add(module_id(light), "ptl")
            else:
                self._unknown_buses[light.bus] = self._unknown_buses.get(light.bus, 0) + 1
        if set(self._unknown_buses) - before:
            self._tell()

    def _tell(self) -> None:
        task = asyncio.get_running_loop().create_task(self._tell_unknown_buses(), name="ptl-unknown-buses")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell_unknown_buses(self) -> None:
        """Master data lights locations on buses this gateway's config does not have: their lines are picked
        without a light, which nobody was told (a bus id mistyped in the config or in master data)."""
        unknown = sorted(self._unknown_buses)
        at = self.service.at()
        message = (f"locations light modules on {', '.join(unknown)}, which this gateway's config does not have "
                   f"([[ptl.buses]] has {', '.join(sorted(self.buses))}): their lines are picked without a light; "
                   f"correct the bus id in the config or in master data")

        def op(floor: Floor, change: Change) -> None:
            if unknown:
                raise_alarm(floor, change, UNKNOWN_BUS_ALARM, "ptl_unknown_bus", "warning", message, at.wall)
            else:
                clear_alarm(floor, change, UNKNOWN_BUS_ALARM, "every lit location is on a configured bus")
        try:
            await self.service.execute(op)
        except JournalError as e:
            log.warning("unknown PTL bus alarm not stored", extra={"fields": {"error": str(e)}})

    # -- modules -> domain ----------------------------------------------------------------------------

    def _on_key(self, press: KeyPress) -> None:
        self._events.put_nowait(("key", press))

    def _on_health(self, event: HealthEvent) -> None:
        self._events.put_nowait(("health", event))

    async def _handle(self, kind: str, ev: Any) -> None:
        at = self.service.at()
        if kind == "key":
            press: KeyPress = ev
            light = Light(press.bus_id, press.unit)
            current = self.shown.get(light)
            job = desired(self.service.floor, light)
            if (current is None or current[0] != press.token or job is None
                    or (job.task_id, job.line_no) != current[1][:2]):
                # An old token, or a line no longer on this module: it moved (master data) while the module
                # showed the error signal, which keeps the token it had until the job is shown again.
                log.info("stale key press ignored", extra={"fields": {"module": module_id(light),
                                                                        "token": press.token}})
                return
            task_id, line_no = current[1][0], current[1][1]
            self.presses += 1

            def op(floor: Floor, change: Change) -> object:
                return key_press(floor, change, task_id, line_no, press.kind, press.qty, press.adjusted,
                                 "ptl_button", at, module_id(light))
            try:
                await self.service.execute(op)
            except JournalError:
                # Not stored (a full disk): the job is shown again under a new token, as after a rebuild of the
                # floor, so this press is never taken for it and a second press is needed.
                self.shown.pop(light, None)
                self.refresh(light)
                raise
        elif isinstance(ev, BusLink):
            await store_status(self.service, self.registry, ev.bus_id, "bus", ev.up, ev.detail)
        elif kind == "link_grace":
            await self._after_link_grace(ev)
        elif isinstance(ev, ModuleOffline):
            # Recorded after the grace, if it is still dark then: a drop of the bus's link, and a flaky module
            # too (one losing 40% of its replies in bursts went offline and online 5-6 times in 8 s, each
            # change a journaled event for the hub).
            dark = self._link_dark.setdefault(ev.bus_id, {})
            if ev.unit not in dark:  # each module its own grace from when it went dark (a later drop: afresh)
                dark[ev.unit] = (ev.detail, self._loop_time() + self.link_grace_s)
            self._grace_timer(ev.bus_id)
            self.registry.status(module_id(Light(ev.bus_id, ev.unit)), "ptl", False, ev.detail)  # live, not stored
        elif isinstance(ev, ModuleFault):
            device = module_id(Light(ev.bus_id, ev.unit))
            if ev.fault or fault_alarm_id(device) in self.service.floor.alarms:  # a healthy first poll: nothing
                await store_fault(self.service, self.registry, device, "ptl", ev.fault, ev.detail)
        else:
            online = isinstance(ev, ModuleOnline)
            light = Light(ev.bus_id, ev.unit)
            waiting = self._link_dark.get(ev.bus_id)
            if waiting is not None and waiting.pop(ev.unit, None) is not None:
                self._grace_timer(ev.bus_id)  # all back within the grace: nothing to record, no timer
            detail = "answering" if online else getattr(ev, "detail", "no answer")
            await store_status(self.service, self.registry, module_id(light), "ptl", online, detail)
            if online:
                self.refresh(light)

    def _grace_timer(self, bus_id: str) -> None:
        """One timer per bus, at the earliest grace end of its dark modules; none when none is dark."""
        dark = self._link_dark.get(bus_id)
        timer = self._link_timers.pop(bus_id, None)
        if timer is not None:
            timer.cancel()
        if not dark:
            self._link_dark.pop(bus_id, None)
            return
        when = min(at for _, at in dark.values())
        self._link_timers[bus_id] = asyncio.get_running_loop().call_at(
            when, self._events.put_nowait, ("link_grace", bus_id))

    async def _after_link_grace(self, bus_id: str) -> None:
        """Record offline the modules of the bus dark for their whole grace, each from when it went dark (its link
        dropped, or it stopped answering) and still dark; the others wait for theirs."""
        self._link_timers.pop(bus_id, None)
        dark = self._link_dark.get(bus_id, {})
        now = self._loop_time()
        due = sorted((unit, detail) for unit, (detail, at) in dark.items() if at <= now)
        for unit, _ in due:
            del dark[unit]
        self._grace_timer(bus_id)
        bus = self.buses.get(bus_id)
        for unit, detail in due:
            if bus is not None and bus.is_online(unit) is not True:
                await store_status(self.service, self.registry, module_id(Light(bus_id, unit)), "ptl", False, detail)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for bus in self.buses.values():
                tg.create_task(bus.run(), name=f"ptl-bus-{bus.settings.id}")
            self.watch_all()
            while True:
                kind, ev = await self._events.get()
                try:
                    await self._handle(kind, ev)
                except JournalError as e:
                    log.warning("PTL event not stored", extra={"fields": {"error": str(e)}})

    async def shutdown(self) -> None:
        """Lights off on a clean stop (nothing is left lit for a job the gateway no longer drives)."""
        for light in list(self.shown):
            bus = self.buses.get(light.bus)
            if bus is not None:
                bus.set_state(light.unit, ModuleState.off())
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.2)
