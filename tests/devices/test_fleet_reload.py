"""Two SIGHUPs close together: the second comes while the devices the first one changed are still stopping
(closing a serial port or a Modbus link takes a moment). The fleet must end on the newer config; it cleared
the reload signal after the stop and so ran the older config, while the rest of the gateway had the newer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, parse_config
from gateway.devices.fleet import DeviceFleet
from gateway.devices.registry import DeviceRegistry
from tests.conftest import until

SAFETY_S = 30


class SlowToStop:
    """A device whose stop waits for the test's gate, so that a second reload can come in the middle of it."""

    def __init__(self, settings: Any, gate: asyncio.Event, stopping: asyncio.Event) -> None:
        self.settings = settings
        self.name = "slow-to-stop"
        self.running = False
        self._gate = gate
        self._stopping = stopping

    async def run(self) -> None:
        self.running = True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self._stopping.set()
            await self._gate.wait()
            raise


class NoAlarms:
    """The floor service as far as the fleet uses it here: no alarm of a removed device to clear."""

    async def execute(self, op: Any) -> list[str]:
        return []

    def on_signal(self, fn: Any) -> None:
        pass


def config(tmp_path: Path, port: str) -> Config:
    return parse_config({"data_dir": str(tmp_path), "scanners": [
        {"id": "s1", "kind": "serial", "port": port, "station": "pick"}]})


async def test_a_second_reload_while_the_first_one_stops_devices_is_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, stopping = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(DeviceFleet, "_make", lambda self, kind, settings, cfg: SlowToStop(settings, gate, stopping))
    fleet = DeviceFleet(config(tmp_path, "/dev/ttyA"), service=NoAlarms(), registry=DeviceRegistry())  # type: ignore[arg-type]
    task = asyncio.create_task(fleet.run(), name="fleet")
    try:
        await until(lambda: fleet.members[("scanner", "s1")].running, "the scanner on ttyA running")
        fleet.reload(config(tmp_path, "/dev/ttyB"))
        async with asyncio.timeout(SAFETY_S):
            await stopping.wait()  # the scanner on ttyA is stopping
        stopping.clear()
        fleet.reload(config(tmp_path, "/dev/ttyC"))  # the second SIGHUP, meanwhile
        gate.set()
        await until(lambda: fleet.members[("scanner", "s1")].settings[0].port == "/dev/ttyC",
                    "the fleet on the newer config", timeout=SAFETY_S)
        assert fleet.cfg.scanners[0].port == "/dev/ttyC"
    finally:
        gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
