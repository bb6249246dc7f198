"""The PDA page's Short dialog and logout, in headless Chromium, where the page's view moves on or the Wi-Fi
drops while the picker is in the middle of something:
- the Short dialog short-picked `view.next` as it was when the dialog closed, not the line it showed (the hub
  cancelled that order meanwhile, and the next order's line went `short_picked`);
- a scan made while the dialog was open went into its quantity field and was lost;
- logging out while scans waited for the Wi-Fi dropped them, and left the picker logged in at the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, Route, expect

from tests.web.conftest import chromium, gateway, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
GTIN_1 = "4006381333931"


async def wedge(page: Page, text: str) -> None:
    """What a PDA's built-in scanner does: type into the focused field and press Enter."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def logged_in(page: Page, base: str) -> None:
    await page.goto(base + "/pda")
    await page.evaluate("localStorage.setItem('fg_lang', 'en')")
    await page.reload()
    await expect(page.locator("#badge")).to_be_focused()
    await wedge(page, "BADGE-P1")


async def test_the_short_dialog_shorts_the_line_it_showed_and_a_scan_into_it_is_a_scan(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 3)], value_cents=9000)
        await gate.order("O-2", [(1, "SKU-2", 2)], value_cents=100)
        page = await browser.new_page(viewport={"width": 360, "height": 640})
        await logged_in(page, gate.base)
        await gate.until(lambda: all(gate.service.floor.orders[o].state == "assigned" for o in ("O-1", "O-2")))
        await expect(page.locator("#next-order")).to_contain_text("O-1")
        # A scan while the dialog is open: sent as a scan, the dialog closed without a short.
        await page.click("#short")
        await expect(page.locator("#short-dialog")).to_be_visible()
        await wedge(page, GTIN_1)
        await expect(page.locator("#short-dialog")).to_be_hidden()
        await gate.until(lambda: gate.service.floor.orders["O-1"].line(1).picked == 1)
        await expect(page.locator("#feedback")).to_contain_text("SKU-1: 1 of 3")  # the scan's answer
        assert gate.events("pick.line_short") == []
        await expect(page.locator("#progress")).to_contain_text("1 of 3")
        # The dialog open for O-1 line 1; the hub cancels O-1; the picker presses Short.
        await page.click("#short")
        await expect(page.locator("#short-line")).to_contain_text("SKU-1")
        assert (await gate.cmd("order.cancel", {"order_id": "O-1", "reason": "customer called"}))["ok"]
        await expect(page.locator("#next-order")).to_contain_text("O-2")
        await page.click("#short-ok")
        await expect(page.locator("#feedback")).to_have_attribute("data-kind", "bad")  # O-1's line is gone
        assert gate.service.floor.orders["O-2"].state == "assigned"
        assert [e["order_id"] for e in gate.events("pick.line_short")] == []


async def test_logout_waits_for_the_scans_and_for_the_gateway(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 3)])
        page = await browser.new_page(viewport={"width": 360, "height": 640})
        await logged_in(page, gate.base)
        await expect(page.locator("#loc")).to_have_text("A-01-01")

        async def dropped(route: Route) -> None:
            await route.abort()
        await page.route("**/api/v1/**", dropped)  # the Wi-Fi drops
        await wedge(page, GTIN_1)
        await wedge(page, GTIN_1)
        await expect(page.locator("#pending")).to_contain_text("2 waiting")
        await page.click("#logout")
        await expect(page.locator("#feedback")).to_contain_text("2 action(s) not sent yet")
        assert await page.locator("#work").is_visible()  # still logged in, the scans still queued
        await page.unroute("**/api/v1/**")  # the Wi-Fi is back: the scans go out
        await gate.until(lambda: gate.service.floor.orders["O-1"].line(1).picked == 2)
        await expect(page.locator("#pending")).to_have_text("")
        await page.route("**/api/v1/auth/logout", dropped)  # a logout the gateway cannot be told of
        await page.click("#logout")
        await expect(page.locator("#feedback")).to_contain_text("No connection to the gateway")
        assert await page.locator("#work").is_visible()
        await page.unroute("**/api/v1/auth/logout")
        await page.click("#logout")
        await expect(page.locator("#badge")).to_be_visible()
        await gate.until(lambda: not gate.service.floor.sessions)
        assert len(gate.events("operator.logout")) == 1
