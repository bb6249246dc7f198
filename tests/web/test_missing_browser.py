"""A unit missing from the tote, in headless Chromium against a real gateway: the packer at pack-1 verifies one of
an order's two units, the pack page tells the station's missing code (`packing.missing_code`, configured here),
the packer scans it and the station is free while the order waits `on_hold` for a review (`pack.review_required`,
reason `items_missing`, the unit still wanted); the supervisor's page lists the review with the missing unit and
no actual weight, and approving it ships what was verified (`pack.verified` with that unit only, not weighed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from gateway.clock import ManualClock
from gateway.contract import PackVerifiedData, ReviewRequiredData
from tests.web.conftest import (
    SUPERVISOR_PW,
    Gate,
    badge_client,
    chromium,
    gateway,
    password_login,
    picked_order,
    web_config,
)

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
GTIN_1 = "4006381333931"  # SKU-1, 120 g
GTIN_2 = "05012345678900"  # SKU-2, 50 g
CODE = "NOT-IN-TOTE"  # not the default "MISSING": the page must show what the gateway is configured with
ORDER = "O-M"


async def wedge(page: Page, text: str) -> None:
    """What a station's keyboard-wedge scanner does: type into the focused field and press Enter."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def picked(gate: Gate) -> None:
    """O-M: 1 x SKU-1 and 1 x SKU-2, picked by p1 through the API the PDA page uses."""
    await picked_order(gate, ORDER, [(1, "SKU-1", 1), (2, "SKU-2", 1)], [GTIN_1, GTIN_2])


async def test_packer_reports_a_missing_unit_and_the_supervisor_ships_what_was_verified(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))  # the real date: the browser judges cookie expiry by its own clock
    cfg = web_config(tmp_path, packing={"missing_code": CODE})
    async with gateway(cfg, clock=clock) as gate, chromium() as browser:
        floor = gate.service.floor
        await picked(gate)

        # 1. The packer takes the order at pack-1 and verifies one of its two units; the page says what to scan
        #    when a unit is not there.
        pack = await browser.new_page(viewport={"width": 1280, "height": 800})
        await pack.goto(gate.base + "/pack/pack-1")
        await expect(pack.locator("#station-name")).to_have_text("pack-1")
        await wedge(pack, "BADGE-K1")
        await expect(pack.locator("#work")).to_be_visible()
        await wedge(pack, ORDER)
        await expect(pack.locator("#order-id")).to_have_text(ORDER)
        await expect(pack.locator("#units")).to_have_text("0 of 2 units")
        await wedge(pack, GTIN_1)
        await expect(pack.locator("#units")).to_have_text("1 of 2 units")
        await expect(pack.locator("#items tr.done")).to_have_count(1)
        hint = pack.locator("#missing-hint")
        await expect(hint).to_be_visible()
        await expect(hint).to_have_text(f"A unit is not there? Scan {CODE}: the order goes to a supervisor's review")
        assert floor.orders[ORDER].state == "packing" and floor.stations["pack-1"].order_id == ORDER
        # the same hint in Chinese, with the same code
        await pack.select_option("#lang", "zh")
        await expect(hint).to_have_text(f"缺少商品\uff1f请扫描 {CODE}\uff1a订单将交由主管复核")
        await pack.select_option("#lang", "en")
        await expect(hint).to_contain_text(f"Scan {CODE}:")

        # 2. SKU-2 is not in the tote: the packer scans the missing code. The station is free for the next
        #    order and says that O-M waits for a review.
        await expect(pack.locator("#scan")).to_be_focused()
        await wedge(pack, CODE)
        fb = pack.locator("#feedback")
        await expect(fb).to_have_attribute("data-kind", "warn")  # taken, but not a verified item: amber
        await expect(fb.locator(".title")).to_have_text("Sent to review")
        await expect(fb.locator(".detail")).to_contain_text(f"order {ORDER}: 1 unit(s) reported missing")
        await expect(pack.locator("#no-order")).to_be_visible()
        await expect(pack.locator("#order-box")).to_be_hidden()
        await expect(pack.locator("#items tr")).to_have_count(0)
        await expect(pack.locator("#reviews")).to_be_visible()
        await expect(pack.locator("#reviews")).to_contain_text(f"Waiting for review: {ORDER}")
        await expect(pack.locator("#scan")).to_be_focused()

        assert floor.orders[ORDER].state == "on_hold" and floor.orders[ORDER].holds == ["review"]
        assert floor.stations["pack-1"].order_id is None
        reviews = gate.events("pack.review_required")
        assert [e["order_id"] for e in reviews] == [ORDER]
        review = reviews[0]["data"]
        assert review == {"station": "pack-1", "reason": "items_missing", "expected_g": 120.0,
                          "missing": [{"sku": "SKU-2", "gtin": "05012345678900", "qty": 1}]}, review
        ReviewRequiredData.model_validate(review)
        assert [e["data"] for e in gate.events("order.state_changed") if e["order_id"] == ORDER][-1] == {
            "from": "packing", "to": "on_hold"}
        assert not gate.events("pack.verified")

        # 3. The supervisor sees the review with the missing unit instead of a deviation, and no actual weight;
        #    approving ships what was verified.
        sup = await browser.new_page(viewport={"width": 1280, "height": 800})  # its own context: its own cookies
        await password_login(sup, gate.base, "/supervisor", "s1", SUPERVISOR_PW)
        await expect(sup.locator(f'#orders tr[data-order="{ORDER}"]')).to_have_attribute("data-state", "on_hold")
        row = sup.locator(f'#reviews tr[data-review="{ORDER}"]')
        await expect(row).to_be_visible()
        cells = row.locator("td")
        await expect(cells).to_have_count(6)
        await expect(cells.nth(0)).to_have_text(ORDER)
        await expect(cells.nth(1)).to_have_text("pack-1")
        await expect(cells.nth(2)).to_have_text("120 g")
        await expect(cells.nth(3)).to_have_text("—")
        await expect(cells.nth(4)).to_contain_text("missing: 1 \u00d7 SKU-2")
        assert "%" not in (await cells.nth(4).text_content() or "")
        await row.get_by_role("button", name="Approve").click()
        await expect(sup.locator("#feedback")).to_have_attribute("data-kind", "good")
        await expect(row).to_have_count(0)
        await expect(sup.locator(f'#orders tr[data-order="{ORDER}"]')).to_have_count(0)  # packed: no longer open

        assert floor.orders[ORDER].state == "packed" and floor.orders[ORDER].review is None
        resolved = gate.events("pack.review_resolved")
        assert [(e["order_id"], e["data"]) for e in resolved] == [(ORDER, {"decision": "approve", "operator_id": "s1"})]
        verified = gate.events("pack.verified")
        assert [e["order_id"] for e in verified] == [ORDER]
        v = verified[0]["data"]
        PackVerifiedData.model_validate(v)
        assert v["items"] == [{"gtin": "04006381333931", "qty": 1}]  # only the unit verified at the station
        assert "weight_g" in v and v["weight_g"] is None  # not weighed
        assert v["station"] == "pack-1" and v["operator_id"] == "k1" and v["expected_g"] == 120.0
        assert len(v["sscc"]) == 18 and v["sscc"].isdigit()
        assert [e["data"] for e in gate.events("order.state_changed") if e["order_id"] == ORDER][-1] == {
            "from": "on_hold", "to": "packed"}
        # the pack page, still open, no longer lists a review waiting
        await expect(pack.locator("#reviews")).to_be_hidden()


async def test_the_supervisor_sees_which_serial_is_missing(tmp_path: Path) -> None:
    """A serial-tracked unit reported missing: the review names its serial (the one picked and not verified), so
    the supervisor knows which unit to look for."""
    clock = ManualClock(datetime.now(UTC))
    cfg = web_config(tmp_path, packing={"missing_code": CODE})
    async with gateway(cfg, clock=clock) as gate, chromium() as browser:
        ser = "04012345000016"
        assert (await gate.cmd("masterdata.sync", {"mode": "merge", "sync_id": "ser", "part": 1, "parts": 1,
                                                   "skus": [{"sku": "SKU-SER", "gtins": [ser], "serial_tracked": True,
                                                             "unit_weight_g": 500.0}],
                                                   "locations": [{"code": "A-01-09", "zone": "zone-a",
                                                                  "sku": "SKU-SER"}]}))["ok"]
        await picked_order(gate, "O-S", [(1, "SKU-SER", 2)], [f"]C101{ser}21S-1", f"]C101{ser}21S-2"])
        packer, _ = await badge_client(gate, "BADGE-K1", "pack-1")
        try:
            for i, text in enumerate(["O-S", f"]C101{ser}21S-2", CODE]):
                r = await packer.post("/api/v1/pack/pack-1/scan", json={"action_id": f"pack-ser-{i}", "text": text})
                assert r.status_code == 200 and r.json()["ok"], (text, r.text)
        finally:
            await packer.aclose()
        review = [e["data"] for e in gate.events("pack.review_required") if e["order_id"] == "O-S"]
        assert review and review[0]["missing"] == [{"sku": "SKU-SER", "gtin": ser, "serial": "S-1", "qty": 1}], review
        sup = await browser.new_page(viewport={"width": 1280, "height": 800})
        await password_login(sup, gate.base, "/supervisor", "s1", SUPERVISOR_PW)
        cell = sup.locator('#reviews tr[data-review="O-S"] td').nth(4)
        await expect(cell).to_contain_text("missing: 1 \u00d7 SKU-SER Serial S-1")



async def test_a_review_with_nothing_verified_offers_repack_only(tmp_path: Path) -> None:
    """Every unit reported missing: approving would ship an empty parcel (the gateway refuses it), so the page
    offers only Repack; a review with units verified still offers both."""
    clock = ManualClock(datetime.now(UTC))
    cfg = web_config(tmp_path, packing={"missing_code": CODE})
    async with gateway(cfg, clock=clock) as gate, chromium() as browser:
        await picked_order(gate, "O-E", [(1, "SKU-1", 1)], ["4006381333931"])
        packer, _ = await badge_client(gate, "BADGE-K1", "pack-1")
        try:
            for i, text in enumerate(["O-E", CODE]):
                r = await packer.post("/api/v1/pack/pack-1/scan", json={"action_id": f"pack-e-{i}", "text": text})
                assert r.status_code == 200 and r.json()["ok"], (text, r.text)
        finally:
            await packer.aclose()
        sup = await browser.new_page(viewport={"width": 1280, "height": 800})
        await password_login(sup, gate.base, "/supervisor", "s1", SUPERVISOR_PW)
        row = sup.locator('#reviews tr[data-review="O-E"]')
        await expect(row.locator("button", has_text="Repack")).to_be_visible()
        await expect(row.locator("button", has_text="Approve")).to_have_count(0)
