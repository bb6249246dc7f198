"""The benches that run the gateway in-process wait for the same thing before measuring: the gateway up, the
scanner online, and the per-event log lines off (the bench measures the floor, not the terminal)."""

from __future__ import annotations

import asyncio

from gateway.app import App


async def gateway_ready(app: App, scanner: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        await app.ready.wait()
        while not app.registry.devices[scanner].online:
            await asyncio.sleep(0.01)
    assert app.journal is not None and app.service is not None
    app.journal.log_events = False
