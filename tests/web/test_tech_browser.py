"""The technician's page in headless Chromium against a real gateway with a simulated PTL bus (Modbus TCP)
and a virtual serial scanner (a pty): the technician logs in with a password, sees every device with its
state and error counts (a scanner pulled out and plugged back in, a module gone from the bus), lights a
module to find it on the shelf (the simulated module's firmware is told to blink white), reads another
module's identity off its registers, and sees the scanner's last raw scans."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from simulators.ptl import PtlSimulator
from simulators.scanner import VirtualSerialScanner
from tests.web.conftest import TECH_PW, Gate, chromium, gateway, password_login, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
COLUMNS = ("device", "kind", "state", "detail", "errors", "scans", "rejects")


async def _device_row(page: Page, device_id: str) -> dict[str, str]:
    cells = page.locator(f'#devices tr[data-device="{device_id}"] td')
    texts = [(t or "").strip() for t in await cells.all_text_contents()]
    return dict(zip(COLUMNS, texts, strict=True))


def _modules_up(gate: Gate, n: int) -> bool:
    assert gate.app.fleet is not None and gate.app.fleet.ptl is not None
    modules = gate.app.fleet.ptl.buses["bus-a"].snapshot()["modules"]
    return len(modules) == n and all(m["online"] for m in modules.values())


async def test_technician_sees_devices_lights_a_module_reads_its_identity_and_raw_scans(tmp_path: Path) -> None:
    with VirtualSerialScanner(tmp_path / "scan-1") as scanner:
        async with PtlSimulator([1, 3], port=0) as sim:
            sim.add_module(2, serial="SHELF-B-0042", model_name="PTL-4D rev B", model_number=4207,
                           firmware=0x0203)  # shown as firmware 2.3
            cfg = web_config(tmp_path, ptl={"buses": [{"id": "bus-a", "port": sim.port, "timeout_ms": 200}]},
                             scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick"}])
            async with gateway(cfg) as gate, chromium() as browser:
                registry = gate.app.registry
                await gate.until(lambda: registry.devices["scan-1"].online and _modules_up(gate, 3))
                # troubles for the page to count: the scanner pulled out and back in, module 3 gone
                scanner.unplug()
                await gate.until(lambda: not registry.devices["scan-1"].online)
                scanner.replug()
                await gate.until(lambda: registry.devices["scan-1"].online)
                sim.set_gone(3)
                await scanner.scan("BADGE-P1")
                await scanner.send(b"NO\x07SUCH\r\n")
                await gate.until(lambda: registry.devices["scan-1"].scans == 2)

                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await password_login(page, gate.base, "/technician", "t1", TECH_PW)
                await expect(page.locator("#who")).to_contain_text("Tom")

                # every device, with its state and error counts (the page polls every 3 s)
                rows = page.locator("#devices tr[data-device]")
                await expect(rows).to_have_count(5)
                assert await rows.evaluate_all("rs => rs.map(r => r.dataset.device)") == [
                    "bus-a", "bus-a-u001", "bus-a-u002", "bus-a-u003", "scan-1"]
                await expect(page.locator('#devices tr[data-device="bus-a-u003"] td').nth(2)).to_have_text(
                    "\u2716 offline")
                assert await _device_row(page, "scan-1") == {
                    "device": "scan-1", "kind": "scanner", "state": "\u2714 online",
                    "detail": registry.devices["scan-1"].detail, "errors": "1", "scans": "2", "rejects": "1"}
                gone = await _device_row(page, "bus-a-u003")
                assert (gone["kind"], gone["errors"]) == ("ptl", "1") and "no reply" in gone["detail"], gone
                for ok in ("bus-a", "bus-a-u001", "bus-a-u002"):
                    row = await _device_row(page, ok)
                    assert (row["state"], row["errors"]) == ("\u2714 online", "0"), row

                # light module 1 to find it: its firmware blinks white and shows its unit number
                fb = page.locator("#feedback")
                m1 = page.locator('#buses tr[data-module="bus-a-u001"]')
                assert sim.module(1).light(sim.now_ms()) == (0, 0)  # dark before
                await m1.get_by_role("button", name="Light it").click()
                await expect(fb.locator(".detail")).to_have_text("bus-a-u001 blinks white for 5 s")
                await expect(fb).to_have_attribute("data-kind", "good")
                node = sim.module(1)
                assert node.identify_until >= 0  # the identify command reached the module's registers
                assert node.light(sim.now_ms()) == (7, 1)  # white, blinking (for 5 s)
                assert node.display_text(sim.now_ms()) == "   1"
                assert sim.module(2).identify_until < 0  # only the one asked for

                # read module 2's identity off its registers
                m2 = page.locator('#buses tr[data-module="bus-a-u002"]')
                await m2.get_by_role("button", name="Read identity").click()
                await expect(fb.locator(".detail")).to_have_text(
                    "bus-a-u002: PTL-4D rev B #4207, serial SHELF-B-0042, firmware 2.3")

                # an identity read of the module that is gone fails with the reason, and says so
                m3 = page.locator('#buses tr[data-module="bus-a-u003"]')
                await m3.get_by_role("button", name="Read identity").click()
                await expect(fb).to_have_attribute("data-kind", "bad")
                await expect(fb.locator(".detail")).to_contain_text("bus-a-u003")

                # the scanner's last raw scans, newest first, with what became of them
                scans = page.locator("#scanners tbody tr")
                await expect(scans).to_have_count(2)
                await expect(scans.nth(0).locator("td").nth(1)).to_have_text("NO\\x07SUCH")
                await expect(scans.nth(0).locator("td").nth(2)).to_have_text("\u2716 Unknown barcode")
                await expect(scans.nth(1).locator("td").nth(1)).to_have_text("BADGE-P1")
                await expect(scans.nth(1).locator("td").nth(2)).to_have_text("\u2714 OK")
                await expect(page.locator("#scanners h3")).to_have_text("scan-1 \u2714 online")

                # a module reporting a fault: its alarm (which sends the technician here) is on this page
                sim.set_fault_bit(1)
                alarm = page.locator('#alarms tr[data-alarm="device_fault:bus-a-u001"]')
                await expect(alarm).to_have_count(1)
                await expect(alarm.locator("td").nth(1)).to_have_text("\u26A0 warning")
                await expect(alarm.locator("td").nth(2)).to_contain_text("run its self-test from the technician page")
                sim.set_fault_bit(1, False)
                await expect(alarm).to_have_count(0)
