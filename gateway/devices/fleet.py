"""All of the gateway's devices as one part, rebuilt from the config on SIGHUP (SPEC §5: devices are
re-read; master data and everything in the journal stay)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.config import Config
from gateway.devices.packing import PrinterDevice, ScaleDevice
from gateway.devices.ptl import PtlDevices
from gateway.devices.registry import DeviceRegistry
from gateway.devices.scanners import ScannerDevice
from gateway.devices.status import resave
from gateway.domain.devices import forget_devices
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.devices")

LIGHTS_OFF_S = 3.0  # a PTL member dropped by a SIGHUP: the time its buses get to switch its lights off
RESAVE_S = 5.0  # device states a full disk kept out of the journal: tried again this often


class DeviceFleet:
    """A SIGHUP restarts only the devices whose settings changed (and starts new ones, stops removed ones): the
    others keep their port, their state and their counters. Before, every reload rebuilt every device, so adding
    one scanner cut a scan in progress on the others and rewrote every PTL module."""

    name = "devices"

    def __init__(self, cfg: Config, service: FloorService, registry: DeviceRegistry) -> None:
        self.service = service
        self.registry = registry
        self.cfg = cfg
        self.members: dict[tuple[str, str], Any] = {}
        self._settings: dict[tuple[str, str], Any] = {}
        self.ptl: PtlDevices | None = None
        self.scanners: dict[str, ScannerDevice] = {}
        self.scales: dict[str, ScaleDevice] = {}
        self.printers: dict[str, PrinterDevice] = {}
        self._reload = asyncio.Event()
        self._pending = cfg
        self._resave_now = asyncio.Event()
        self._build(cfg)
        service.on_signal(self._on_signal)

    def _on_signal(self, signal: Any) -> None:
        if signal == ("floor_reloaded",):
            # The floor was rebuilt from the journal after a failed commit, and device states are not in the
            # journal (as after a restart): every device reports afresh, as it is now, or its alarm would
            # never come. Before, the rebuilt floor had no device at all until each one next changed.
            for device_id, info in self.registry.devices.items():
                if info.reported:
                    self.registry.unsaved.add((device_id, "status"))
                if info.fault:
                    self.registry.unsaved.add((device_id, "fault"))
            self._resave_now.set()

    @staticmethod
    def _wanted(cfg: Config) -> dict[tuple[str, str], Any]:
        """Each device's key and the settings it is built from: equal settings, same device."""
        with_scale = {s.station for s in cfg.scales}
        wanted: dict[tuple[str, str], Any] = {}
        for sc in cfg.scanners:
            wanted[("scanner", sc.id)] = (sc, sc.station in with_scale)
        for sl in cfg.scales:
            wanted[("scale", sl.id)] = sl
        for pr in cfg.printers:
            wanted[("printer", pr.id)] = pr
        if cfg.ptl.buses:
            wanted[("ptl", "")] = (cfg.ptl, cfg.picking)
        return wanted

    def _build(self, cfg: Config) -> list[tuple[str, str]]:
        """Make the members `cfg` asks for, keeping those whose settings did not change; returns the keys of
        the members dropped (removed or changed), whose tasks must stop."""
        wanted = self._wanted(cfg)
        dropped = [k for k in self.members if self._settings.get(k) != wanted.get(k, _GONE)]
        for key in dropped:  # they stop listening to the floor
            handler = getattr(self.members.pop(key), "_on_signal", None)
            if handler is not None:
                self.service.off_signal(handler)
        self.cfg = cfg
        for key, settings in wanted.items():
            if key not in self.members:
                self.members[key] = self._make(key[0], settings, cfg)
        self._settings = wanted
        self.scanners = {k[1]: m for k, m in self.members.items() if k[0] == "scanner"}
        self.scales = {k[1]: m for k, m in self.members.items() if k[0] == "scale"}
        self.printers = {k[1]: m for k, m in self.members.items() if k[0] == "printer"}
        self.ptl = self.members.get(("ptl", ""))
        return dropped

    def _make(self, kind: str, settings: Any, cfg: Config) -> Any:
        if kind == "scanner":
            scanner, has_scale = settings  # a scale added or removed at its station makes it anew
            return ScannerDevice(scanner, self.service, self.registry, lambda _station: has_scale)
        if kind == "scale":
            return ScaleDevice(settings, self.service, self.registry)
        if kind == "printer":
            return PrinterDevice(settings, cfg, self.service, self.registry)
        return PtlDevices(cfg, self.service, self.registry)

    def reload(self, cfg: Config) -> None:
        self._pending = cfg
        self._reload.set()

    def configured(self, device_id: str) -> bool:
        """A device id of the running config: a scanner, scale, printer or bus, or a module on one of its buses."""
        cfg = self.cfg
        buses = {b.id for b in cfg.ptl.buses}
        ids = {*(d.id for d in cfg.scanners), *(d.id for d in cfg.scales), *(d.id for d in cfg.printers), *buses}
        bus, sep, unit = device_id.rpartition("-u")
        return device_id in ids or (bool(sep) and unit.isdigit() and bus in buses)

    async def _forget_removed(self) -> None:
        """Clear the alarms of devices the config no longer has (at start, after a SIGHUP): only a device coming
        back cleared its offline alarm, so one taken out of the config kept it for good. Tried again at the next
        reload if it cannot be stored now."""
        try:
            cleared = await self.service.execute(lambda f, c: forget_devices(f, c, self.configured))
        except JournalError as e:
            log.warning("alarms of removed devices not cleared", extra={"fields": {"error": str(e)}})
            return
        if cleared:
            log.info("alarms of devices no longer configured cleared", extra={"fields": {"alarms": cleared}})

    def _forget_registry(self) -> None:
        """Devices taken out of the config leave the technician page, telemetry and /metrics (they went on
        being reported there as online, their port closed)."""
        for device_id in [d for d in self.registry.devices if not self.configured(d)]:
            del self.registry.devices[device_id]
        self.registry.unsaved = {(d, w) for d, w in self.registry.unsaved if d in self.registry.devices}

    async def _resave(self) -> None:
        """Device states that could not be stored (gateway/devices/status.py), stored once there is room."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resave_now.wait(), RESAVE_S)
            self._resave_now.clear()
            with contextlib.suppress(JournalError):  # still no room: each failure was logged where it happened
                await resave(self.service, self.registry, self.configured)

    async def run(self) -> None:
        running: dict[tuple[str, str], asyncio.Task[None]] = {}
        await self._forget_removed()
        resaver = asyncio.create_task(self._resave(), name="devices-resave")
        try:
            ended: set[tuple[str, str]] = set()
            while True:
                for key, member in self.members.items():
                    if key not in running and key not in ended:
                        running[key] = asyncio.create_task(member.run(), name=member.name)
                waiter = asyncio.create_task(self._reload.wait(), name="devices-reload-wait")
                try:
                    done, _ = await asyncio.wait([*running.values(), waiter], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                for key, t in list(running.items()):
                    if t in done:
                        if t.exception() is not None:
                            raise t.exception()  # type: ignore[misc]
                        del running[key]  # it ended by itself: not started again until its settings change
                        ended.add(key)  # (a scanner finished by the clean stop was started again, and its
                        # "stopped" stored as an outage)
                if waiter in done:
                    # Cleared here, just before the config is read, not at the top of the loop: a SIGHUP that
                    # comes while the changed devices stop (below) must leave the event set for the next turn.
                    self._reload.clear()
                    old_ptl = self.ptl
                    dropped = self._build(self._pending)
                    ended -= set(dropped)
                    if old_ptl is not None and ("ptl", "") in dropped and ("ptl", "") in running:
                        # Its lights off first, while its buses still run: a bus taken out of the config (or one
                        # of several) left its modules showing their jobs, with nothing driving them any more.
                        # The new member lights again what is wanted of the buses it keeps.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(LIGHTS_OFF_S):
                                await old_ptl.shutdown()
                    await _stop([running.pop(k) for k in dropped if k in running])
                    self._forget_registry()
                    await self._forget_removed()
                    log.info("devices re-read from the config", extra={"fields": {
                        "restarted": [f"{kind} {key}".strip() for kind, key in dropped]}})
        finally:
            await _stop([*running.values(), resaver])

    async def shutdown(self) -> None:
        # Scans already read are stored and answered first (DRAIN_S at most), while the hub link is still up to
        # send them; then the lights go off.
        await asyncio.gather(*(s.finish() for s in self.scanners.values()), return_exceptions=True)
        if self.ptl is not None:
            await self.ptl.shutdown()


_GONE = object()


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
