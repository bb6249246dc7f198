"""Fixtures for the packing station's devices: a scale simulator on a real pty (published under a stable
link, as udev's /dev/serial/by-id names are) with the real driver on the other side, and a printer
simulator on loopback. An fd guard fails any test that leaves a pty, serial port or socket open."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.scale import Backoff, SerialScale
from simulators.printer import PrinterSimulator
from simulators.scale import ScaleSimulator


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _still_open(fds: set[str]) -> set[str]:
    return {fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")}


@pytest.fixture(autouse=True)
async def no_fd_leaks() -> AsyncIterator[None]:
    before = _fds()
    yield
    for _ in range(20):
        gc.collect()
        leaked = _still_open(_fds() - before)
        if not leaked:
            return
        await asyncio.sleep(0.05)
    targets = {}
    for fd in leaked:
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    assert not targets, f"test left file descriptors open: {targets}"


class StatusLog:
    """The driver's online/offline reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[bool, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, online: bool, detail: str) -> None:
        self.events.append((online, detail))
        self.changed.set()

    @property
    def states(self) -> list[bool]:
        return [online for online, _ in self.events]

    async def wait_for(self, states: list[bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.states != states:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "scale-1"


@pytest.fixture
async def sim(link: Path) -> AsyncIterator[ScaleSimulator]:
    s = ScaleSimulator(link=link)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def status() -> StatusLog:
    return StatusLog()


def make_scale(link: Path, status: StatusLog | None = None, **kw: object) -> SerialScale:
    return SerialScale(str(link), on_status=status, retry_pause_s=0.01, backoff=Backoff(0.01, 0.1),
                       **kw)  # type: ignore[arg-type]


@pytest.fixture
async def scale(sim: ScaleSimulator, link: Path, status: StatusLog) -> AsyncIterator[SerialScale]:
    s = make_scale(link, status)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def printer_sim(tmp_path: Path) -> AsyncIterator[PrinterSimulator]:
    p = PrinterSimulator("127.0.0.1", 0, tmp_path / "jobs")
    await p.start()
    yield p
    await p.close()
