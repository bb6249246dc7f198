"""The gateway as `floorgate run` runs it, plus an optional load part that commits alarm changes non-stop,
so tests can back up a database that is being written to, and optional parts whose clean stop never
returns (a stuck device or channel), so tests can see the stop stay within its deadline.

    python -m tests.ops.gateway_main --config PATH [--load] [--hang-parts N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import sys

from gateway.app import App
from gateway.clock import Clock
from gateway.config import Config, ConfigError, load_config
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.logs import setup_logging
from gateway.ops.lock import AlreadyRunning
from gateway.service import FloorService


class Load:
    name = "test-load"

    def __init__(self, service: FloorService, clock: Clock) -> None:
        self.service = service
        self.clock = clock

    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            alarm = f"load-{n % 50}"

            def op(floor: Floor, change: Change, alarm: str = alarm, n: int = n) -> None:
                if alarm in floor.alarms:
                    clear_alarm(floor, change, alarm)
                else:
                    raise_alarm(floor, change, alarm, "test_load", "info", f"load {n}", self.clock.now())
                change.audit.append({"kind": "test", "raw": f"scan-{n}", "result": "ok"})

            await self.service.execute(op)
            await asyncio.sleep(0.002)


class HungPart:
    """A part whose `shutdown()` never returns."""

    def __init__(self, n: int) -> None:
        self.name = f"test-hung-{n}"

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def shutdown(self) -> None:
        await asyncio.Event().wait()


class WiredApp(App):
    def __init__(self, cfg: Config, load: bool, hang_parts: int = 0) -> None:
        super().__init__(cfg)
        self.load = load
        self.hang_parts = hang_parts

    async def open(self) -> FloorService:
        # App takes the run lock and adds the systemd notifier itself; this only adds the test load.
        service = await super().open()
        if self.load:
            self.parts.append(Load(service, self.clock))
        # Last in the list, so first to be asked to stop: they eat into the time of every part after them.
        self.parts += [HungPart(n) for n in range(1, self.hang_parts + 1)]
        return service


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--load", action="store_true")
    p.add_argument("--hang-parts", type=int, default=0)
    args = p.parse_args()
    faulthandler.enable()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"floorgate: bad config: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    app = WiredApp(cfg, args.load, args.hang_parts)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(app.run())
    except AlreadyRunning as e:
        print(f"floorgate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
