"""Scanner test helpers: a collector for what readers report, and a guard that fails any test leaving a
pty, pipe or FIFO descriptor open (a reader that leaks one per replug runs out of fds in a month)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from drivers.scanner import RawScan
from drivers.scanner.reader import Backoff
from gateway.domain.floor import MasterData

WAIT_S = 10.0  # a safety limit only: every wait below ends as soon as the thing happens

FAST_BACKOFF = (0.01, 0.05)


def fast_backoff() -> Backoff:
    return Backoff(*FAST_BACKOFF)


def _device_fds() -> dict[int, str]:
    """Open pipes, FIFOs and character devices (ptys, input nodes), by fd."""
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            mode = os.stat(f"/proc/self/fd/{name}").st_mode
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            out[int(name)] = target
    return out


@pytest.fixture(autouse=True)
def no_fd_leaks() -> Iterator[None]:
    before = _device_fds()
    yield
    deadline = time.monotonic() + 2
    while True:
        leaked = {fd: t for fd, t in _device_fds().items() if before.get(fd) != t}
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test left descriptors open: {leaked}"


@dataclass
class Collector:
    """What a reader reported, in order; waits end at the event, WAIT_S is only a safety net."""

    scans: asyncio.Queue[RawScan] = field(default_factory=asyncio.Queue)
    statuses: list[tuple[bool, str]] = field(default_factory=list)
    _status_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_scan(self, scan: RawScan) -> None:
        self.scans.put_nowait(scan)

    def on_status(self, online: bool, detail: str) -> None:
        self.statuses.append((online, detail))
        self._status_changed.set()

    async def scan(self) -> RawScan:
        return await asyncio.wait_for(self.scans.get(), WAIT_S)

    async def status(self, online: bool) -> str:
        """Wait until the latest reported status is `online`; return its detail."""
        async def until() -> str:
            while not (self.statuses and self.statuses[-1][0] is online):
                self._status_changed.clear()
                await self._status_changed.wait()
            return self.statuses[-1][1]
        return await asyncio.wait_for(until(), WAIT_S)


def master_data() -> MasterData:
    md = MasterData()
    md.add("sku", {"sku": "SKU-1", "gtins": ["04006381333931"]})
    md.add("sku", {"sku": "SKU-2", "gtins": ["05012345678900"], "pack_gtins": [{"gtin": "15012345678907", "qty": 6}]})
    md.add("sku", {"sku": "SKU-LOT", "gtins": ["09506000134352"], "lot_tracked": True, "expiry_tracked": True})
    md.add("location", {"code": "A-01-01", "zone": "zone-a", "sku": "SKU-1", "light": {"bus": "bus-a", "unit": 1}})
    md.add("location", {"code": "4006381333931", "zone": "zone-a", "sku": "SKU-1",
                        "light": {"bus": "bus-a", "unit": 2}})
    md.add("operator", {"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"],
                        "zones": ["zone-a"]})
    md.add("carton", {"code": "BOX-S", "tare_g": 100.0})
    return md
