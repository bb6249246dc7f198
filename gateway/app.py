"""The composition root: builds every part from the config and runs them under one task group.

A part is anything with `name` and `async run()`; it runs until cancelled, and may have `async shutdown()`
for a clean stop (called before the tasks are cancelled). If one part fails, the whole gateway stops with
an error (systemd restarts it) rather than limping on without, say, its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway import __version__, bulkwork, runtime
from gateway.clock import Clock, SystemClock
from gateway.config import Config, ConfigError, check_start, load_config, restart_keys
from gateway.devices.fleet import DeviceFleet
from gateway.devices.registry import DeviceRegistry
from gateway.journal import Journal, JournalError
from gateway.ops.lock import RunLock, acquire_run_lock
from gateway.service import FloorService
from gateway.ticker import FloorTicker

if TYPE_CHECKING:
    from drivers.ptl.bus import PtlBus
    from gateway.ops.systemd import SystemdNotifier
    from gateway.sync.link import HubLink

log = logging.getLogger("floorgate.app")
# A clean stop (SIGTERM, SPEC §5: within 10 s) runs under one deadline: the parts' `shutdown()`s together
# get SHUTDOWN_TOTAL_S, one part at most SHUTDOWN_PART_S and never so much that the parts still to come
# (the hub link's `offline` last of all) get less than SHUTDOWN_RESERVE_S each. What is left of the 10 s
# is for cancelling the tasks and closing the journal.
SHUTDOWN_TOTAL_S = 7.0
SHUTDOWN_PART_S = 3.0
SHUTDOWN_RESERVE_S = 0.5


def _bus_in_step(bus: PtlBus) -> bool:
    return all(v.online is not True or v.shown == v.desired for v in bus.modules())


class Part(Protocol):
    name: str

    async def run(self) -> None: ...




@dataclass
class Maintenance:
    """Storage cap checks and retention pruning, off the hot path."""

    service: FloorService
    storage_every_s: float = 5.0
    prune_every_s: float = 60.0
    name: str = "maintenance"
    hub_acked_seq: Callable[[], int] = lambda: 0

    async def run(self) -> None:
        clock = self.service.clock
        next_prune = clock.monotonic() + self.prune_every_s
        while True:
            await self.service.check_storage()
            if clock.monotonic() >= next_prune:
                next_prune = clock.monotonic() + self.prune_every_s
                try:
                    await self.prune()
                except (JournalError, sqlite3.Error) as e:  # e.g. the disk is full: try again next time
                    log.warning("pruning failed; will try again", extra={"fields": {"error": str(e)}})
            await asyncio.sleep(self.storage_every_s)

    async def prune(self) -> None:
        """Each kind on its own: one that fails (a full disk) must not keep the others, which may free the
        space, from running."""
        acked = self.hub_acked_seq()

        async def events() -> None:
            if acked > 0:
                n = await self.service.prune_events(acked)
                forgotten = await self.service.forget_finished_orders(acked)
                if n or forgotten:
                    log.info("pruned", extra={"fields": {"events": n, "up_to_seq": acked, "orders": forgotten}})

        async def masterdata() -> None:
            # Swapped-out generations only (below the live one); a replace being staged is above it.
            n = await self.service.prune_masterdata("old")
            if n:
                log.info("pruned", extra={"fields": {"masterdata_rows": n}})
        failed: list[str] = []
        for step in (events, self.service.prune_commands, self.service.prune_audit, masterdata):
            try:
                await step()
            except (JournalError, sqlite3.Error) as e:
                failed.append(f"{getattr(step, '__name__', step)}: {e}")
        if failed:
            raise JournalError("; ".join(failed))


@dataclass
class JournalWatch:
    """The journal's writer must never stop while the gateway runs: if it does, the gateway stops with an
    error (and systemd restarts it) instead of accepting work it can no longer store."""

    journal: Journal
    name: str = "journal-watch"

    async def run(self) -> None:
        writer = self.journal.writer_task
        if writer is None:
            raise RuntimeError("the journal is not open")
        await asyncio.shield(writer)
        raise RuntimeError("the journal writer stopped while the gateway was running")


@dataclass
class RecoveryWatch:
    """A floor that cannot be rebuilt from the journal refuses every change; after the service's tries the
    gateway stops with an error instead (systemd restarts it: the journal is opened and checked anew)."""

    service: FloorService
    name: str = "recovery-watch"

    async def run(self) -> None:
        await self.service.gave_up.wait()
        raise RuntimeError("the floor could not be rebuilt from the journal")


class App:
    def __init__(self, cfg: Config, clock: Clock | None = None, *, connect_mqtt: bool = True,
                 config_path: str | Path | None = None, devices: bool = True, web: bool = True,
                 daily_checks: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.connect_mqtt = connect_mqtt
        self.config_path = Path(config_path) if config_path else None
        self.with_devices = devices
        self.with_web = web
        self.with_daily_checks = daily_checks
        self.journal: Journal | None = None
        self.service: FloorService | None = None
        self.parts: list[Any] = []
        self.link: HubLink | None = None
        self.fleet: DeviceFleet | None = None
        self.ticker: FloorTicker | None = None
        self.notifier: SystemdNotifier | None = None
        self.registry = DeviceRegistry()
        self.web: Any = None
        self.lock: RunLock | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.on_ready: list[Callable[[], Awaitable[None] | None]] = []

    def stop(self) -> None:
        self._stop.set()

    async def open(self) -> FloorService:
        from gateway.alarms import AlarmNotifier
        from gateway.ops.doctor import DailyChecks
        from gateway.ops.systemd import SystemdNotifier

        self.lock = acquire_run_lock(self.cfg.data_dir)  # before the journal is touched
        bulkwork.prestart()  # while the heap is small, before the floor is loaded (gateway/bulkwork.py context)
        self.journal = await Journal.open(self.cfg.db_path, site=self.cfg.site, gateway=self.cfg.gateway,
                                          clock=self.clock)
        self.service = service = FloorService(self.cfg, self.journal, self.clock)
        await service.start()
        maintenance = Maintenance(service)
        self.parts.append(JournalWatch(self.journal))
        self.parts.append(RecoveryWatch(service))
        self.parts.append(maintenance)
        self.ticker = FloorTicker(service)
        self.parts.append(self.ticker)
        if self.connect_mqtt:
            from gateway.sync.link import HubLink

            self.link = link = HubLink(self.cfg, service, self.clock)
            maintenance.hub_acked_seq = lambda: link.publisher.hub_acked
            link.telemetry_sources.append(self.registry.telemetry)
            link.telemetry_sources.append(self._picker_telemetry)
            self.parts.append(link)
        self.parts.append(AlarmNotifier(self.cfg, service, self.clock))
        if self.with_devices:
            self.fleet = DeviceFleet(self.cfg, service, self.registry)
            self.parts.append(self.fleet)
        if self.with_web:
            from gateway.web.server import WebServer

            self.web = WebServer(self)
            self.parts.append(self.web)
        if self.with_daily_checks:
            self.parts.append(DailyChecks(self.cfg, service, self.clock))
        self.notifier = SystemdNotifier(self.journal, self.clock, ready=self.ready)
        self.parts.append(self.notifier)
        return service

    def _picker_telemetry(self) -> dict[str, Any]:
        assert self.service is not None
        return {"pickers": [{"operator_id": p.operator_id, "score": round(p.score, 1),
                             "breaker": "open" if p.breaker == "opened" else p.breaker, "open_tasks": p.open_tasks}
                            for p in self.service.floor.dispatch.pickers()]}

    async def close(self) -> None:
        if self.service is not None:
            await self.service.stop_recovery()
        if self.journal is not None:
            await self.journal.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def reload(self) -> None:
        """SIGHUP: re-read the config; devices follow it, master data and the journal stay."""
        if self.config_path is None or self.fleet is None:
            log.warning("SIGHUP ignored: no config file to re-read")
            return
        file = str(self.config_path)
        try:
            read = load_config(self.config_path)
            stale = restart_keys(self.cfg, read)
            # What a SIGHUP applies: the new device sections, the running values of the rest. Only its files are
            # checked now: a TLS certificate named for the next restart, and not there yet, refused the whole
            # SIGHUP, and with it the new scanner the technician had added.
            cfg = read.model_copy(update={k: getattr(self.cfg, k) for k in {key.split(".")[0] for key in stale}})
            check_start(cfg, file, data_dir=False)
        except ConfigError as e:
            log.error("SIGHUP: the new config is not valid; keeping the running one",
                      extra={"fields": {"error": str(e)}})
            return
        if stale:
            log.warning("SIGHUP: these keys changed but take effect only after a restart; the running values stay",
                        extra={"fields": {"keys": stale}})
            try:
                check_start(read, file, data_dir=False)
            except ConfigError as e:
                log.warning("SIGHUP: applied, but the next restart will refuse this config as it stands",
                            extra={"fields": {"error": str(e)}})
        self.cfg = cfg
        if self.notifier is not None:
            self.notifier.reloading()
        self.fleet.reload(cfg)
        if self.notifier is not None:
            self.notifier.reloaded()
        from gateway.ops.doctor import DailyChecks

        for part in self.parts:
            if isinstance(part, DailyChecks):
                part.reconfigure(cfg)
        log.info("config re-read on SIGHUP", extra={"fields": {"scanners": len(cfg.scanners),
                                                               "buses": len(cfg.ptl.buses)}})

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """The parts' clean stops, newest part first, under one deadline (see SHUTDOWN_TOTAL_S).

        Before the devices turn the lights off, the floor ticker stops, so no new assignment lights a module
        again behind them; after it, the PTL buses get the time left of the devices' share to write `off`
        to every module that answers. The hub link comes later and says `offline` last, once the work
        before it is committed (the journal commits each change before it is acknowledged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_TOTAL_S
        stopping = [(p, getattr(p, "shutdown", None)) for p in reversed(self.parts)]
        with_shutdown = [p for p, fn in stopping if fn is not None]
        for p, fn in stopping:
            if p is self.fleet:
                self._stop_part(tasks, self.ticker)
            if fn is None:
                continue
            later = len(with_shutdown) - with_shutdown.index(p) - 1
            budget = min(SHUTDOWN_PART_S, deadline - loop.time() - later * SHUTDOWN_RESERVE_S)
            if budget <= 0:
                log.warning("no time left for a part's clean stop", extra={"fields": {"part": p.name}})
                continue
            try:
                async with asyncio.timeout(budget):
                    await fn()
                    if p is self.fleet:
                        await self._lights_written()
            except TimeoutError:
                log.warning("part did not shut down in time", extra={"fields": {"part": p.name,
                                                                                "budget_s": round(budget, 2)}})
            except Exception:
                log.exception("part did not shut down cleanly", extra={"fields": {"part": p.name}})

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel the parts' tasks and wait for them. (A PTL bus loop whose cancellation pymodbus lost ends by
        itself: drivers/ptl/bus.py _end_if_cancelled.)"""
        for t in tasks:
            t.cancel()
        pending = {t for t in tasks if not t.done()}
        warned = False
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if pending and not warned:
                warned = True
                log.info("parts still stopping", extra={"fields": {"parts": sorted(t.get_name() for t in pending)}})

    def _stop_part(self, tasks: list[asyncio.Task[None]], part: Any) -> None:
        if part is None or part not in self.parts:
            return
        tasks[self.parts.index(part)].cancel()

    async def _lights_written(self) -> None:
        """Until every PTL module that answers shows what the gateway wants of it (after the devices'
        shutdown: off); a module that does not answer is left to its own power-up state."""
        ptl = self.fleet.ptl if self.fleet is not None else None
        if ptl is None:
            return
        for bus in ptl.buses.values():
            await bus.wait_until(functools.partial(_bus_in_step, bus))

    async def run(self, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        runtime.tune()  # GIL switch interval and GC threshold: see gateway/runtime.py
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.open()
            assert self.journal is not None
            log.info("gateway started", extra={"fields": {
                "version": __version__, "site": self.cfg.site, "gateway": self.cfg.gateway,
                "journal": self.journal.journal_id, "last_seq": self.journal.last_seq, "db": str(self.cfg.db_path)}})
            if not self.cfg.packing.sscc_company_prefix:
                log.warning("packing.sscc_company_prefix is not set: SSCCs on labels use GS1's demo prefix; set "
                            "your GS1 company prefix before shipping real parcels",
                            extra={"fields": {"prefix": self.cfg.packing.company_prefix}})
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(p.run(), name=p.name) for p in self.parts]
                stopper = tg.create_task(self._stop.wait(), name="stop-wait")
                self.ready.set()
                for cb in self.on_ready:
                    r = cb()
                    if r is not None:
                        await r
                await stopper
                await self._shutdown(tasks)
                await self._cancel(tasks)
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
            await self.close()
            if self.ready.is_set():
                log.info("gateway stopped", extra={"fields": {
                    "last_seq": self.journal.last_seq if self.journal else None}})
            else:  # a gateway that never started is not said to have stopped (its reason follows on stderr)
                log.error("gateway did not start")
