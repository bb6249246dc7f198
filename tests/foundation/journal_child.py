"""A child process that appends events as fast as it can and prints every committed seq range.

The parent SIGKILLs it at random moments: whatever it printed was committed and must be on disk.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal
from gateway.service import FloorService


async def main(data_dir: str, seed: int) -> None:
    cfg = parse_config({"data_dir": data_dir})
    clock = SystemClock()
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    journal.log_events = False
    service = FloorService(cfg, journal, clock)
    await service.start()
    rng = random.Random(seed)
    out = sys.stdout
    out.write(f"READY {journal.last_seq}\n")
    out.flush()

    async def producer(k: int) -> None:
        while True:
            n = rng.randint(1, 5)

            def op(floor: Floor, change: Change, n: int = n) -> None:
                for i in range(n):
                    change.emit("test.event", {"producer": k, "i": i, "pad": "x" * rng.randint(0, 400)})
            stored = await service.journal.commit(_change(op, floor=service.floor))
            if stored:
                out.write(f"C {stored[0].seq} {stored[-1].seq}\n")
                out.flush()

    await asyncio.gather(*(producer(k) for k in range(8)))


def _change(op: Any, floor: Floor) -> Change:
    ch = Change()
    op(floor, ch)
    return ch


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
