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
from gateway.service import FloorService

log = logging.getLogger("floorgate.devices")


class DeviceFleet:
    name = "devices"

    def __init__(self, cfg: Config, service: FloorService, registry: DeviceRegistry) -> None:
        self.service = service
        self.registry = registry
        self.cfg = cfg
        self.members: list[Any] = []
        self.ptl: PtlDevices | None = None
        self.scanners: dict[str, ScannerDevice] = {}
        self.scales: dict[str, ScaleDevice] = {}
        self.printers: dict[str, PrinterDevice] = {}
        self._reload = asyncio.Event()
        self._build(cfg)

    def _build(self, cfg: Config) -> None:
        for m in self.members:  # coordinators of the old set stop listening
            handler = getattr(m, "_on_signal", None)
            if handler is not None:
                self.service.off_signal(handler)
        self.cfg = cfg
        stations_with_scale = {s.station for s in cfg.scales}
        self.scanners = {s.id: ScannerDevice(s, self.service, self.registry, stations_with_scale.__contains__)
                         for s in cfg.scanners}
        self.scales = {s.id: ScaleDevice(s, self.service, self.registry) for s in cfg.scales}
        self.printers = {p.id: PrinterDevice(p, cfg, self.service, self.registry) for p in cfg.printers}
        self.ptl = PtlDevices(cfg, self.service, self.registry) if cfg.ptl.buses else None
        self.members = [*self.scanners.values(), *self.scales.values(), *self.printers.values()]
        if self.ptl is not None:
            self.members.append(self.ptl)

    def reload(self, cfg: Config) -> None:
        self._pending = cfg
        self._reload.set()

    async def run(self) -> None:
        while True:
            self._reload.clear()
            tasks = [asyncio.create_task(m.run(), name=m.name) for m in self.members]
            waiter = asyncio.create_task(self._reload.wait(), name="devices-reload-wait")
            try:
                done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not waiter and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            finally:
                for t in [*tasks, waiter]:
                    t.cancel()
                for t in [*tasks, waiter]:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            log.info("devices re-read from the config")
            self._build(self._pending)

    async def shutdown(self) -> None:
        if self.ptl is not None:
            await self.ptl.shutdown()
