"""Shared fixtures. Every test that starts a task, thread or process must stop it: a leak here is the bug
that kills a gateway after three weeks, so the autouse guards below fail the test that leaks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import Config, parse_config
from gateway.journal import Journal
from gateway.service import FloorService


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    while True:
        # `asyncio_N` are the event loop's executor threads, shut down with the loop itself.
        leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                  and not t.daemon and not t.name.startswith("asyncio_")]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
async def no_task_leaks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    for _ in range(20):
        leaked = [t for t in asyncio.all_tasks() if t not in before and not t.done()
                  and t is not asyncio.current_task()]
        if not leaked:
            break
        await asyncio.sleep(0.05)
    assert not leaked, f"test left tasks running: {[t.get_name() for t in leaked]}"


def make_config(data_dir: Path, **overrides: Any) -> Config:
    from tests.brokers import free_port

    data: dict[str, Any] = {"data_dir": str(data_dir), "http": {"host": "127.0.0.1", "port": free_port()}}
    for k, v in overrides.items():
        data[k] = v
    return parse_config(data, "<test>")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def journal(cfg: Config, clock: ManualClock) -> AsyncIterator[Journal]:
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    yield j
    await j.close()


@pytest.fixture
async def service(cfg: Config, journal: Journal, clock: ManualClock) -> FloorService:
    s = FloorService(cfg, journal, clock)
    await s.start()
    return s


SKUS = [
    {"sku": "SKU-1", "gtins": ["4006381333931"], "unit_weight_g": 120.0},
    {"sku": "SKU-2", "gtins": ["05012345678900"], "pack_gtins": [{"gtin": "15012345678907", "qty": 6}],
     "unit_weight_g": 50.0},
    {"sku": "SKU-LOT", "gtins": ["09506000134352"], "lot_tracked": True, "expiry_tracked": True,
     "min_shelf_life_days": 30, "unit_weight_g": 300.0},
]
LOCATIONS = [
    {"code": "A-01-01", "zone": "zone-a", "sku": "SKU-1", "light": {"bus": "bus-a", "unit": 1}},
    {"code": "A-01-02", "zone": "zone-a", "sku": "SKU-2", "light": {"bus": "bus-a", "unit": 2}},
    {"code": "A-01-03", "zone": "zone-a", "sku": "SKU-LOT", "light": {"bus": "bus-a", "unit": 3}},
]
OPERATORS = [
    {"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"], "zones": ["zone-a"]},
    {"operator_id": "k1", "name": "Kai", "badge": "BADGE-K1", "roles": ["packer"], "zones": ["zone-a"]},
    {"operator_id": "s1", "name": "Sue", "badge": "BADGE-S1", "roles": ["supervisor"], "zones": ["zone-a"]},
]
CARTONS = [{"code": "BOX-S", "tare_g": 100.0}]


def order(order_id: str = "O-1", lines: list[tuple[int, str, int]] | None = None, **prio: Any) -> dict[str, Any]:
    lines = lines or [(1, "SKU-1", 2), (2, "SKU-2", 1)]
    return {"order_id": order_id, "channel": "web", "priority": prio,
            "lines": [{"line_no": n, "sku": s, "qty": q} for n, s, q in lines]}


async def until(pred: Callable[[], bool], what: str = "condition", timeout: float = 60) -> None:
    """Wait for a condition other tasks make true; a generous safety limit, never a measurement."""
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting for {what} after {timeout} s") from None
