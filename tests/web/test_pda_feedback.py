"""The PDA page in headless Chromium at 360x640, for what the other browser tests do not look at: the next
location and quantity in big type; feedback beyond colour (a bad scan and a good one each give their own
sound, as Web Audio tones, and vibration pattern along with the icon and the words); and a short-pick from the
page's dialog reaching the journal as `pick.line_short` (reason `pda`), with the scan field focused again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import chromium, gateway, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
GTIN_1, GTIN_2 = "4006381333931", "05012345678900"
# Records what the page asks of the speaker and the vibration motor, without changing what it does.
RECORD = """
window.__vibrations = [];
navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return true; };
window.__tones = [];
const Real = window.AudioContext;
window.AudioContext = class extends Real {
  createOscillator() {
    const o = super.createOscillator();
    const start = o.start.bind(o);
    o.start = (...a) => { window.__tones.push([o.type, o.frequency.value]); return start(...a); };
    return o;
  }
};
"""


async def wedge(page: Page, text: str) -> None:
    """What a PDA's built-in scanner does: type into the focused field and press Enter."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def cues(page: Page) -> tuple[list[Any], list[Any]]:
    got: dict[str, list[Any]] = await page.evaluate(
        "() => { const r = {v: window.__vibrations, t: window.__tones};"
        " window.__vibrations = []; window.__tones = []; return r; }")
    return got["v"], got["t"]


async def test_feedback_sounds_and_vibrates_and_a_short_pick_from_the_dialog(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 3)])
        page = await browser.new_page(viewport={"width": 360, "height": 640})
        await page.add_init_script(RECORD)
        await page.goto(gate.base + "/pda")
        await expect(page.locator("#badge")).to_be_focused()
        await wedge(page, "BADGE-P1")
        await expect(page.locator("#loc")).to_have_text("A-01-01")
        await expect(page.locator("#scan")).to_be_focused()
        # the next location and quantity are the big things on a 5-inch screen: over twice the text size
        sizes = await page.evaluate("() => ['loc', 'qty', 'scan'].map((id) => "
                                    "parseFloat(getComputedStyle(document.getElementById(id)).fontSize))")
        body = await page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
        assert min(sizes[:2]) > 2 * body and min(sizes[:2]) > sizes[2], (sizes, body)
        await cues(page)  # whatever the login gave

        fb = page.locator("#feedback")
        await wedge(page, GTIN_2)  # not on the pick list
        await expect(fb).to_have_attribute("data-kind", "bad")
        await expect(fb.locator(".icon")).to_have_text("\u2716")
        vib, tones = await cues(page)
        assert vib == [[160, 80, 160]] and tones == [["square", 300], ["square", 300]]

        await wedge(page, GTIN_1)
        await expect(fb).to_have_attribute("data-kind", "good")
        await expect(fb.locator(".icon")).to_have_text("\u2714")
        await expect(page.locator("#qty")).to_have_text("2")
        vib, tones = await cues(page)
        assert vib == [40] and tones == [["sine", 1200]]

        # one more unit found on the shelf besides the one scanned; the third is missing
        await page.click("#short")
        await expect(page.locator("#short-dialog")).to_be_visible()
        await page.fill("#short-qty", "1")
        await page.click("#short-ok")
        await expect(page.locator("#short-dialog")).to_be_hidden()
        await expect(fb).to_have_attribute("data-kind", "good")
        await expect(fb.locator(".detail")).to_have_text("line 1: 2 picked, 1 short")
        await expect(page.locator("#scan")).to_be_focused()
        await expect(page.locator("#idle")).to_be_visible()
        shorts = [e["data"] for e in gate.events("pick.line_short")]
        assert [(s["qty_picked"], s["qty_missing"], s["reason"]) for s in shorts] == [(2, 1, "pda")]
        assert gate.service.floor.orders["O-1"].state == "short_picked"
