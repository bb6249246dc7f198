"""What the packing station's scale weighs, through the real parts: a scale simulator on a pty and the real
driver, a serial scanner at the bench, the PTL bus for picking. A weighing waits for a parcel on an empty
scale (before, it read 0 g and sent the order to review), and a parcel left on the scale is not weighed again
as the next order's (before, two orders of the same goods passed with one parcel)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.clock import SystemClock
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.domain.packing import expected_weight
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.conftest import LOCATIONS, OPERATORS, SKUS, make_config, until

GOOD, BAD = b"\x06", b"\x15"
ITEM = "4006381333931"  # SKU-1, 120 g, on module 1


async def beep(scanner: VirtualSerialScanner) -> bytes:
    """The next answer the gateway writes back to the scanner."""
    async with asyncio.timeout(60):
        return await scanner.wait_feedback(1)


@dataclass
class Bench:
    app: App
    ptl: PtlSimulator
    picker: VirtualSerialScanner
    packer: VirtualSerialScanner
    scale: ScaleSimulator
    n: int = 0

    async def cmd(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        service = self.app.service
        assert service is not None
        self.n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"c{self.n}", **payload})
        at = service.at()
        return await service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def scan(self, scanner: VirtualSerialScanner, text: str) -> bytes:
        """Scan and return the scanner's answer (good or bad beep)."""
        await scanner.scan(text)
        return await beep(scanner)

    def state(self, order_id: str) -> str:
        service = self.app.service
        assert service is not None
        return service.floor.orders[order_id].state

    async def pick(self, order_id: str) -> None:
        assert (await self.cmd("order.upsert", {"order": {"order_id": order_id, "lines": [
            {"line_no": 1, "sku": "SKU-1", "qty": 1}]}}))["ok"]
        assert self.app.ticker is not None
        self.app.ticker.poke()
        node = self.ptl.module(1)
        await until(lambda: node.mode == 1 and node.quantity == 1, f"the job of {order_id} on module 1")
        assert await self.scan(self.picker, ITEM) == GOOD
        await until(lambda: node.quantity == 0 or node.mode != 1, "the count down")
        if self.state(order_id) != "picked":
            assert self.ptl.press(1, "confirm")
        await until(lambda: self.state(order_id) == "picked", f"{order_id} picked")

    def expected_g(self, order_id: str) -> float:
        service = self.app.service
        assert service is not None
        floor = service.floor
        return expected_weight(floor, floor.orders[order_id], floor.stations["pack-1"].carton)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with make_bench(tmp_path) as b:
        yield b


@contextlib.asynccontextmanager
async def make_bench(tmp_path: Path, load_g: float = 0.0) -> AsyncIterator[Bench]:
    """The gateway with a packing bench; `load_g` is on the scale when it starts."""
    picker = VirtualSerialScanner(tmp_path / "by-id-pick", terminator="crlf")
    packer = VirtualSerialScanner(tmp_path / "by-id-pack", terminator="crlf")
    picker.plug()
    packer.plug()
    try:
        async with PtlSimulator(range(1, 4), transport="tcp") as ptl, ScaleSimulator(unit="g") as scale:
            scale.put(load_g)
            bus = {"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": ptl.port, "poll_ms": 20,
                   "timeout_ms": 200}
            feedback = {"good_feedback": GOOD.hex(), "bad_feedback": BAD.hex()}
            cfg = make_config(tmp_path / "gw", ptl={"buses": [bus]},
                              scanners=[{"id": "scan-1", "port": picker.path, "station": "pick", **feedback},
                                        {"id": "pack-scan", "port": packer.path, "station": "pack-1", **feedback}],
                              scales=[{"id": "scale-1", "station": "pack-1", "port": scale.path}])
            app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
            task = asyncio.create_task(app.run(install_signals=False), name="scale-gateway")
            try:
                await until(app.ready.is_set, "the gateway")
                assert app.fleet is not None
                device = app.fleet.scales["scale-1"]
                if load_g < 1:  # as on a floor: the scale is read empty before any parcel goes on
                    await until(lambda: not device.needs_empty, "the gateway to see the scale empty")
                b = Bench(app, ptl, picker, packer, scale)
                assert (await b.cmd("masterdata.sync", {
                    "mode": "replace", "sync_id": "m", "part": 1, "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                    "operators": OPERATORS}))["ok"]
                assert await b.scan(picker, "BADGE-P1") == GOOD
                assert await b.scan(packer, "BADGE-K1") == GOOD
                yield b
            finally:
                app.stop()
                await asyncio.wait_for(task, 60)
    finally:
        picker.close()
        packer.close()


async def test_an_empty_scale_is_waited_for_not_weighed(bench: Bench) -> None:
    await bench.pick("O-1")
    assert await bench.scan(bench.packer, "O-1") == GOOD
    read = bench.scale.readings
    assert await bench.scan(bench.packer, ITEM) == GOOD  # every item: weighing, on an empty scale
    await until(lambda: bench.scale.readings >= read + 3, "the gateway to read the empty scale a few times")
    assert bench.state("O-1") == "packing", "an empty scale sent the order to review"
    bench.scale.put(bench.expected_g("O-1"))
    await until(lambda: bench.state("O-1") == "packed", "O-1 packed once the parcel is on the scale")


async def test_a_parcel_left_on_the_scale_is_not_the_next_orders(bench: Bench) -> None:
    await bench.pick("O-1")
    await bench.pick("O-2")  # the same goods: the same weight
    assert await bench.scan(bench.packer, "O-1") == GOOD
    bench.scale.put(bench.expected_g("O-1"))
    assert await bench.scan(bench.packer, ITEM) == GOOD
    await until(lambda: bench.state("O-1") == "packed", "O-1 packed")
    assert await beep(bench.packer) == GOOD  # the weight's result, on the scanner too
    # O-1's parcel stays on the scale while O-2 is verified.
    assert await bench.scan(bench.packer, "O-2") == GOOD
    assert await bench.scan(bench.packer, ITEM) == GOOD
    assert await beep(bench.packer) == BAD  # "take the parcel off"
    assert bench.state("O-2") == "packing"
    service = bench.app.service
    assert service is not None
    assert service.floor.stations["pack-1"].awaiting_weight
    # Taken off, and O-2's parcel put on: packed, with its own weight.
    assert await bench.scale.take_off()
    bench.scale.put(bench.expected_g("O-2") + 3)
    await until(lambda: bench.state("O-2") == "packed", "O-2 packed once its own parcel is weighed")
    verified = [e for e in await events(bench) if e["type"] == "pack.verified"]
    assert [e["data"]["weight_g"] for e in verified] == [bench.expected_g("O-1"), bench.expected_g("O-2") + 3]


async def test_a_load_on_the_scale_when_the_gateway_starts_is_not_a_parcel(tmp_path: Path) -> None:
    """From a review: what the scale carried at a restart (the last parcel, left on it) was weighed as the next
    order's: the gateway knew of no parcel. It is now read until it has been seen empty once."""
    async with make_bench(tmp_path, load_g=120.0) as b:
        await b.pick("O-1")  # 120 g: the load left on the scale weighs just what O-1 should
        assert await b.scan(b.packer, "O-1") == GOOD
        assert await b.scan(b.packer, ITEM) == GOOD
        assert await beep(b.packer) == BAD  # "take the parcel off"
        assert b.state("O-1") == "packing"
        assert await b.scale.take_off()
        b.scale.put(b.expected_g("O-1"))
        await until(lambda: b.state("O-1") == "packed", "O-1 packed on its own parcel")


async def events(bench: Bench) -> list[dict[str, Any]]:
    import json

    journal = bench.app.journal
    assert journal is not None
    await journal.barrier()
    rows = await journal.reader.execute_fetchall("SELECT body FROM events ORDER BY seq")
    return [json.loads(r[0]) for r in rows]
