"""The composition root: builds every part from the config and runs them under one task group.

A part is anything with `name` and `async run()`; it runs until cancelled. If one part fails, the whole
gateway stops with an error (systemd restarts it) rather than limping on without, say, its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway import __version__
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.journal import Journal
from gateway.service import FloorService

if TYPE_CHECKING:
    from gateway.sync.link import HubLink

log = logging.getLogger("floorgate.app")
SHUTDOWN_PART_S = 3.0


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
                acked = self.hub_acked_seq()
                if acked > 0:
                    n = await self.service.prune_events(acked)
                    if n:
                        log.info("pruned events", extra={"fields": {"events": n, "up_to_seq": acked}})
            await asyncio.sleep(self.storage_every_s)


class App:
    def __init__(self, cfg: Config, clock: Clock | None = None, *, connect_mqtt: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.connect_mqtt = connect_mqtt
        self.journal: Journal | None = None
        self.service: FloorService | None = None
        self.parts: list[Part] = []
        self.link: HubLink | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.on_ready: list[Callable[[], Awaitable[None] | None]] = []

    def stop(self) -> None:
        self._stop.set()

    async def open(self) -> FloorService:
        self.journal = await Journal.open(self.cfg.db_path, site=self.cfg.site, gateway=self.cfg.gateway,
                                          clock=self.clock)
        self.service = FloorService(self.cfg, self.journal, self.clock)
        await self.service.start()
        maintenance = Maintenance(self.service)
        self.parts.append(maintenance)
        if self.connect_mqtt:
            from gateway.sync.link import HubLink

            self.link = HubLink(self.cfg, self.service, self.clock)
            maintenance.hub_acked_seq = lambda: self.link.publisher.hub_acked if self.link else 0
            self.parts.append(self.link)
        return self.service

    async def close(self) -> None:
        if self.journal is not None:
            await self.journal.close()

    async def run(self, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        await self.open()
        assert self.journal is not None
        log.info("gateway started", extra={"fields": {
            "version": __version__, "site": self.cfg.site, "gateway": self.cfg.gateway,
            "journal": self.journal.journal_id, "last_seq": self.journal.last_seq, "db": str(self.cfg.db_path)}})
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(p.run(), name=p.name) for p in self.parts]
                stopper = tg.create_task(self._stop.wait(), name="stop-wait")
                self.ready.set()
                for cb in self.on_ready:
                    r = cb()
                    if r is not None:
                        await r
                await stopper
                for p in self.parts:
                    shutdown = getattr(p, "shutdown", None)
                    if shutdown is not None:
                        try:
                            async with asyncio.timeout(SHUTDOWN_PART_S):
                                await shutdown()
                        except Exception:
                            log.exception("part did not shut down cleanly", extra={"fields": {"part": p.name}})
                for t in tasks:
                    t.cancel()
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
            await self.close()
            log.info("gateway stopped", extra={"fields": {
                "last_seq": self.journal.last_seq if self.journal else None}})
