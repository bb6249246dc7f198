"""Fixtures for the PTL tests: a simulated bus on TCP loopback or on a pty pair, and a driver bus on it.

Timings are shortened (timeout 40 ms, poll 5 ms, probes from 30 ms) to keep the suite fast; no test
asserts a duration, only counts and states, with generous `asyncio.timeout` safety limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers.ptl import BusSettings, HealthEvent, KeyPress, ModuleOffline, ModuleOnline, PtlBus
from simulators.ptl import PtlSimulator

LIMIT = 10.0  # safety limit for any wait, never a timing assertion

FAST = {"poll_ms": 5, "timeout_ms": 40, "misses_offline": 3, "health_ms": 100, "probe_min_ms": 30,
        "probe_max_ms": 120, "reconnect_min_ms": 20, "reconnect_max_ms": 100}


@dataclass
class Recorder:
    keys: list[KeyPress] = field(default_factory=list)
    health: list[HealthEvent] = field(default_factory=list)

    def offline(self, unit: int) -> list[ModuleOffline]:
        return [e for e in self.health if isinstance(e, ModuleOffline) and e.unit == unit]

    def online(self, unit: int) -> list[ModuleOnline]:
        return [e for e in self.health if isinstance(e, ModuleOnline) and e.unit == unit]


def settings_for(sim: PtlSimulator, bus_id: str = "bus-a", **overrides: Any) -> BusSettings:
    opts: dict[str, Any] = {**FAST, **overrides}
    if sim.transport == "tcp":
        return BusSettings(id=bus_id, transport="tcp", host="127.0.0.1", port=sim.port, **opts)
    return BusSettings(id=bus_id, transport="rtu", port=sim.path, baudrate=sim.baudrate, **opts)


async def until(predicate: Callable[[], bool], limit: float = LIMIT) -> None:
    """Wait for a condition that other tasks will make true; fails the test after the safety limit."""
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.002)


@pytest.fixture(params=["tcp", "rtu"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sim(transport: str) -> AsyncIterator[PtlSimulator]:
    s = PtlSimulator(range(1, 6), transport=transport)  # type: ignore[arg-type]
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def bus(sim: PtlSimulator, rec: Recorder) -> AsyncIterator[PtlBus]:
    b = PtlBus(settings_for(sim), on_key=rec.keys.append, on_health=rec.health.append)
    await b.start()
    yield b
    await b.stop()
