"""Screenshots of every page on a PDA (360x640) and a desktop (1280x800), from a real gateway with a
simulated PTL bus and label printer and a little work on the floor. The label printer of pack-2 is switched
off (nothing listens on its port), so the parcel packed there raises an alarm, shown in the supervisor's
banner and as an offline device (with the printer's refusal) on the technician's page.

    .venv/bin/python -m tests.web.shoot            # writes docs/screenshots/*.png

The test suite runs the same scenario into a temporary directory (test_screenshots.py).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from simulators.printer import PrinterSimulator
from simulators.ptl import PtlSimulator
from simulators.scanner import VirtualSerialScanner
from tests.brokers import free_port
from tests.web.conftest import SUPERVISOR_PW, TECH_PW, Gate, badge_client, chromium, gateway, web_config

expect.set_options(timeout=20_000)  # a safety limit on a shared machine
PDA = {"width": 360, "height": 640}
DESKTOP = {"width": 1280, "height": 800}
GTIN_1, GTIN_2, GTIN_LOT = "4006381333931", "05012345678900", "09506000134352"
LINES = [(1, "SKU-1", 2), (2, "SKU-2", 1)]
PICK_ALL = (GTIN_1, GTIN_1, GTIN_2)


def _cutoff(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _wedge(page: Page, text: str) -> None:
    await expect(page.locator("input.scan:visible")).to_be_focused()  # the page put the focus there
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def _english(page: Page, url: str) -> None:
    await page.goto(url)
    await page.evaluate("localStorage.setItem('fg_lang', 'en')")
    await page.reload()


async def _floor(gate: Gate) -> str:
    """Orders with cutoffs far, near and past; two picked by Bo, one of them packed at pack-2; Bo on break;
    an order on hold. Returns the picked order left for pack-1."""
    for i, minutes in enumerate((240, 25, -10, 90)):
        await gate.order(f"DY2026-00{i + 1}", LINES, cutoff_at=_cutoff(minutes))
        gate.web.live.sample()
    c, _ = await badge_client(gate, "BADGE-P2")
    try:
        await gate.until(lambda: sum(t.operator_id == "p2" for t in gate.service.floor.tasks.values()) >= 2)
        for n, code in enumerate(PICK_ALL * 2):
            r = await c.post("/api/v1/pda/scan", json={"action_id": f"shoot-scan-{n:04d}", "text": code})
            assert r.json()["ok"], r.text
        await c.post("/api/v1/pda/break", json={"action_id": "shoot-break-0001", "on": True})
    finally:
        await c.aclose()
    picked = sorted(o.order_id for o in gate.service.floor.orders.values() if o.state == "picked")
    assert len(picked) == 2, picked
    k, _ = await badge_client(gate, "BADGE-K1", "pack-2")
    try:
        for n, code in enumerate((picked[0], *PICK_ALL)):
            r = await k.post("/api/v1/pack/pack-2/scan", json={"action_id": f"shoot-pack-{n:04d}", "text": code})
            assert r.json()["ok"], r.text
    finally:
        await k.aclose()
    await gate.until(lambda: "printer:prn-2" in gate.service.floor.alarms)  # pack-2's printer is off
    gate.web.live.sample()
    await gate.order("DY2026-009", [(1, "SKU-2", 4)], cutoff_at=_cutoff(50))
    await gate.cmd("dispatch.hold", {"scope": "order", "id": "DY2026-009"})
    gate.web.live.sample()
    return str(picked[1])


async def _pda(browser: Any, gate: Gate, out: Path) -> None:
    page = await browser.new_page(viewport=PDA)
    await _english(page, gate.base + "/pda")
    await page.screenshot(path=str(out / "pda-login-360x640.png"))
    await _wedge(page, "BADGE-P1")
    await expect(page.locator("#loc")).to_have_text("A-01-01")
    await _wedge(page, GTIN_1)
    await expect(page.locator("#feedback")).to_have_attribute("data-kind", "good")
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(out / "pda-1280x800.png"))
    await page.set_viewport_size(PDA)
    await _wedge(page, GTIN_LOT)  # not on the picker's list: the wrong item
    await expect(page.locator("#feedback")).to_have_attribute("data-kind", "bad")
    await page.screenshot(path=str(out / "pda-360x640.png"))
    await page.close()


async def _pda_zh(browser: Any, gate: Gate, out: Path) -> None:
    page = await browser.new_page(viewport=PDA)
    await page.goto(gate.base + "/pda")
    await _wedge(page, "BADGE-P2")  # Bo reads Chinese (master data: language "zh"), and is on break
    await expect(page.locator("h1")).to_have_text("拣货")
    await expect(page.locator("#break-banner")).to_be_visible()
    await page.click("#break")  # end the break
    await expect(page.locator("#break-banner")).to_be_hidden()
    await gate.order("DY2026-010", [(1, "SKU-2", 3)], cutoff_at=_cutoff(12))
    await expect(page.locator("#loc")).not_to_be_empty()
    await _wedge(page, GTIN_LOT)  # on nobody's list
    await expect(page.locator("#feedback")).to_have_attribute("data-kind", "bad")
    await page.screenshot(path=str(out / "pda-zh-360x640.png"))
    await page.close()


async def _pack(browser: Any, gate: Gate, out: Path, order_id: str) -> None:
    page = await browser.new_page(viewport=PDA)
    await _english(page, gate.base + "/pack/pack-1")
    await _wedge(page, "BADGE-K1")
    await expect(page.locator("#work")).to_be_visible()
    await _wedge(page, order_id)
    await expect(page.locator("#order-id")).to_have_text(order_id)
    await _wedge(page, GTIN_1)
    await expect(page.locator("#units")).to_have_text("1 of 3 units")
    await page.screenshot(path=str(out / "pack-360x640.png"))
    await _wedge(page, GTIN_1)
    await _wedge(page, GTIN_2)
    await expect(page.locator("#parcel-order")).to_have_text(order_id)
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(out / "pack-1280x800.png"))
    await page.close()


async def _password_page(browser: Any, gate: Gate, out: Path, path: str, who: str, password: str) -> None:
    page = await browser.new_page(viewport=DESKTOP)
    await _english(page, gate.base + path)
    await page.fill("#op", who)
    await page.fill("#pw", password)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#work")).to_be_visible()
    await expect(page.locator("#devices table")).to_be_visible()
    if path == "/supervisor":
        await expect(page.locator("#alarm-banner")).to_contain_text("prn-2")
    name = path.strip("/")
    await page.screenshot(path=str(out / f"{name}-1280x800.png"))
    await page.set_viewport_size(PDA)
    await page.screenshot(path=str(out / f"{name}-360x640.png"))
    await page.close()


async def shoot(out: Path) -> list[Path]:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, VirtualSerialScanner(Path(tmp) / "scan-1") as scanner:
        async with PtlSimulator([1, 2, 3], port=0) as sim, PrinterSimulator() as printer:
            cfg = web_config(Path(tmp), ptl={"buses": [{"id": "bus-a", "port": sim.port, "timeout_ms": 200}]},
                             printers=[{"id": "prn-1", "station": "pack-1", "host": "127.0.0.1",
                                        "port": printer.port},
                                       {"id": "prn-2", "station": "pack-2", "host": "127.0.0.1",
                                        "port": free_port()}],  # switched off
                             scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick"}])
            async with gateway(cfg) as gate, chromium() as browser:
                await gate.until(lambda: gate.app.registry.devices["scan-1"].online)
                for code in ("BADGE-K1", "A-01-01"):  # a packer at a pick scanner; nobody logged in
                    await scanner.scan(code)
                await scanner.send(b"NO\x07SUCH\r")
                await gate.until(lambda: gate.app.registry.devices["scan-1"].scans == 3)
                for_pack_1 = await _floor(gate)
                await _pda(browser, gate, out)
                await _pda_zh(browser, gate, out)
                await _pack(browser, gate, out, for_pack_1)
                await _password_page(browser, gate, out, "/supervisor", "s1", SUPERVISOR_PW)
                await _password_page(browser, gate, out, "/technician", "t1", TECH_PW)
    return sorted(await asyncio.to_thread(lambda: list(out.glob("*.png"))))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    for p in asyncio.run(shoot(target)):
        print(p)
