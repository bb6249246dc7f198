"""The gateway SIGKILLed at random moments while the floor works: the hub still ends with every event, `seq`
1..N contiguous and equal to the journal, the final order states right, and no parcel packed wrongly."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.faults.rig import KILLS, ORDERS, SEED, floor_rig


async def test_gateway_sigkilled_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with floor_rig(tmp_path) as rig:
        rig.floor.start()
        feeder = rig.floor.spawn(rig.floor.feed(ORDERS, first=6, every_s=0.8), name="feed")
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            await rig.kill_and_restart()
        await feeder
        await rig.wait_floor_done()
        out = await rig.check_outcome()
    assert rig.restarts == KILLS
    assert out["orders"] == ORDERS and out["packed"] == ORDERS, out
    report = rig.floor.report
    assert report.lines_done > 0 and report.presses > 0, report
