"""The floor ticker on a journal that cannot store (a full disk): it waits longer between tries and says so once,
where it had retried at once and logged 60-90 lines a second for as long as the disk stayed full."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.journal import Journal, StorageFull
from gateway.service import FloorService
from gateway.ticker import RETRY_S, FloorTicker
from tests.conftest import make_config


async def test_ticks_that_cannot_be_stored_are_retried_after_growing_waits_and_said_once(
        tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(tmp_path)
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    real = s.execute
    waits: list[float] = []
    stored = asyncio.Event()

    async def full(op: Any, **kw: Any) -> Any:
        if len(waits) < 6:
            raise StorageFull("database or disk is full")
        result = await real(op, **kw)
        stored.set()
        return result

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    s.execute = full  # type: ignore[method-assign]
    ticker = FloorTicker(s, sleep=sleep)
    task = asyncio.create_task(ticker.run(), name="ticker")
    try:
        with caplog.at_level(logging.INFO, logger="floorgate.ticker"):
            async with asyncio.timeout(30):
                await stored.wait()
                while not any("stored again" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.01)
        assert waits == [*RETRY_S, RETRY_S[-1], RETRY_S[-1]]
        assert ticker.failed_ticks == 6
        said = [r.getMessage() for r in caplog.records if r.name == "floorgate.ticker"]
        assert said == ["floor tick not stored; retrying", "floor tick stored again"], said
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await j.close()
