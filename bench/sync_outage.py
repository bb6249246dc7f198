"""A long uplink outage with the floor still working: the broker is down for --outage-s (60 s by default; the
CI test runs the same scenario with 10 s) while events keep being committed at --rate per second. Prints how
long the hub took to hold every event after the broker returned, and checks seq 1..N is contiguous.

    python -m bench.sync_outage [--outage-s 60] [--rate 50]

Whatever happens (done, failed, Ctrl-C, SIGTERM), the gateway and the hub (in this process) stop, the broker is
stopped by its PID and the temporary directory is removed (bench.sync_drain's `run_bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.sync_drain import Cleanup, hub_running, run_bench
from gateway.app import App
from gateway.clock import SystemClock
from gateway.config import Config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.sync.mqtt import MqttSettings
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.sync.conftest import gateway_config


def event(i: int):  # type: ignore[no-untyped-def]
    def op(floor: Floor, change: Change) -> None:
        change.emit("test.outage", {"i": i})
    return op


@contextlib.asynccontextmanager
async def gateway_running(cfg: Config) -> AsyncIterator[App]:
    """The gateway in this process, as tests.sync.conftest.running_gateway, but waiting for it without
    asyncio.wait_for: 3.11's returns the result when what it waits for ends in the same loop turn as a
    cancellation, so a Ctrl-C during the gateway's start-up was swallowed and the bench ran on."""
    app = App(cfg, SystemClock())
    task = asyncio.create_task(app.run(install_signals=False), name="bench-gateway")
    try:
        ready = asyncio.ensure_future(app.ready.wait())
        try:
            async with asyncio.timeout(30):
                await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            task.result()  # its failure
            raise RuntimeError("the gateway stopped during its start-up")
        yield app
    finally:
        app.stop()
        async with asyncio.timeout(30):
            await task


async def run(outage_s: float, rate: float, work: Path, cleanup: Cleanup) -> dict[str, float]:
    broker = Broker(work / "broker")
    cleanup.push(broker.stop)
    broker.start()
    cfg = gateway_config(work, broker)
    async with gateway_running(cfg) as app, contextlib.AsyncExitStack() as stack:
        hub = HubSim(MqttSettings(port=broker.port, client_id="hubsim-dc1-zone-a"), "dc1", "zone-a")
        await hub_running(hub, stack)
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
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=50.0, help="events per second committed during the outage")
    args = ap.parse_args()

    async def bench(work: Path, cleanup: Cleanup) -> dict[str, float]:
        return await run(args.outage_s, args.rate, work, cleanup)
    r = run_bench(bench, "floorgate-outage-")
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
