"""The floor's own clockwork: dispatch decisions (assignments, moves, escalations, breakers), idle logouts
and alarms for devices offline too long. It wakes when something changed that dispatch cares about and
otherwise when the engine says something falls due, so an idle floor costs nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.domain.change import Change
from gateway.domain.devices import offline_alarms
from gateway.domain.floor import Floor
from gateway.domain.sessions import idle_logouts
from gateway.domain.tasks import dispatch_tick
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.ticker")

MAX_SLEEP_S = 1.0
RETRY_S = (0.5, 1.0, 2.0, 5.0)  # after a tick that could not be stored: the wait before the next, growing


class FloorTicker:
    name = "floor-ticker"

    def __init__(self, service: FloorService, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.service = service
        self._wake = asyncio.Event()
        self._sleep = sleep
        self.decisions = 0
        self.failed_ticks = 0
        service.on_signal(self._on_signal)

    def _on_signal(self, signal: Any) -> None:
        if isinstance(signal, tuple) and signal and signal[0] == "dispatch":
            self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    async def tick(self) -> int:
        at = self.service.at()

        def op(floor: Floor, change: Change) -> int:
            n = dispatch_tick(floor, change, at)
            idle_logouts(floor, change, at)
            offline_alarms(floor, change, at)
            return n
        n = await self.service.execute(op)
        self.decisions += n
        return n

    async def run(self) -> None:
        clock = self.service.clock
        failing = 0
        while True:
            self._wake.clear()
            try:
                n = await self.tick()
            except JournalError as e:
                # On a full disk every tick fails until there is room: retried at once, it logged 60-90 lines a
                # second. Said once, then tried again after a growing wait.
                self.failed_ticks += 1
                if not failing:
                    log.warning("floor tick not stored; retrying", extra={"fields": {"error": str(e)}})
                await self._sleep(RETRY_S[min(failing, len(RETRY_S) - 1)])
                failing += 1
                continue
            if failing:
                log.info("floor tick stored again", extra={"fields": {"failed_ticks": failing}})
                failing = 0
            if n:
                continue  # decisions may free or need more: look again at once
            due = self.service.floor.dispatch.next_due() - clock.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(due, 0.01), MAX_SLEEP_S)):
                    await self._wake.wait()
