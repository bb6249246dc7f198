"""A long uplink outage with the floor still working: the broker is down for --outage-s (60 s by default; the
CI test runs the same scenario with 10 s) while events keep being committed at --rate per second. Prints how
long the hub took to hold every event after the broker returned, and checks seq 1..N is contiguous.

    python -m bench.sync_outage [--outage-s 60] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from gateway.domain.change import Change
from gateway.domain.floor import Floor
from tests.brokers import Broker
from tests.sync.conftest import gateway_config, running_gateway, running_hub


def event(i: int):  # type: ignore[no-untyped-def]
    def op(floor: Floor, change: Change) -> None:
        change.emit("test.outage", {"i": i})
    return op


async def run(outage_s: float, rate: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="floorgate-outage-", dir=os.environ.get("BENCH_DIR")))
    broker = Broker(work / "broker").start()
    cfg = gateway_config(work, broker)
    async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
        assert app.service is not None and app.journal is not None
        for i in range(100):
            await app.service.execute(event(i))
        broker.stop()
        loop = asyncio.get_running_loop()
        end = loop.time() + outage_s
        i = 100
        while loop.time() < end:
            await app.service.execute(event(i))
            i += 1
            await asyncio.sleep(1 / rate)
        produced_offline = i - 100
        broker.start()
        t0 = time.monotonic()
        last = app.journal.last_seq
        await hub.wait_until(lambda: hub.holds(last), 600)
        caught_up = time.monotonic() - t0
        view = hub.journals[app.journal.journal_id]
        contiguous = sorted(view.events)[:last] == list(range(1, last + 1))
        result = {"outage_s": outage_s, "events": last, "produced_during_outage": produced_offline,
                  "catch_up_s": caught_up, "contiguous": contiguous, "duplicates": hub.duplicates,
                  "conflicts": len(hub.conflicts)}
    broker.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=50.0, help="events per second committed during the outage")
    args = ap.parse_args()
    r = asyncio.run(run(args.outage_s, args.rate))
    print(f"sync_outage: broker down {r['outage_s']:.0f} s while the floor keeps committing events")
    print(f"{'measure':48} {'value':>10}")
    print(f"{'events committed in all':48} {r['events']:10d}")
    print(f"{'of which during the outage':48} {r['produced_during_outage']:10d}")
    print(f"{'broker back -> hub holds all, s':48} {r['catch_up_s']:10.2f}")
    print(f"{'seq 1..N contiguous at the hub':48} {r['contiguous']!s:>10}")
    print(f"{'duplicates (allowed) / conflicts (never)':48} {r['duplicates']:>5} / {r['conflicts']}")
    print(json.dumps({"bench": "sync_outage", **{k: (round(v, 3) if isinstance(v, float) else v)
                                                 for k, v in r.items()}}))


if __name__ == "__main__":
    main()
