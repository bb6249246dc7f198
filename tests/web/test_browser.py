"""The pages in headless Chromium against a real gateway: a picker on the PDA, a packer at a station, the
supervisor's live dashboard, a picker refused the supervisor's actions, and a Wi-Fi drop that neither loses
nor doubles a scan."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from gateway.clock import ManualClock
from gateway.domain.api import set_hold
from tests.web.conftest import SUPERVISOR_PW, Gate, badge_client, chromium, gateway, picked_order, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
PDA = {"width": 360, "height": 640}
GTIN_1 = "4006381333931"  # SKU-1
GTIN_2 = "05012345678900"  # SKU-2


async def wedge(page: Page, text: str) -> None:
    """What a PDA's built-in scanner does: type into the focused field and press Enter."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def pda_login(page: Page, gate: Gate, badge: str = "BADGE-P1") -> None:
    await page.goto(gate.base + "/pda")
    await expect(page.locator("#badge")).to_be_focused()
    await wedge(page, badge)
    await expect(page.locator("#work")).to_be_visible()


async def test_picker_logs_in_sees_a_wrong_item_and_completes_a_task(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 2)], cutoff_at="2099-01-01T00:00:00Z")
        page = await browser.new_page(viewport=PDA)
        await pda_login(page, gate)
        # dispatch gives the waiting task to the picker who just logged in; the page shows it live
        await expect(page.locator("#loc")).to_have_text("A-01-01")
        await expect(page.locator("#qty")).to_have_text("2")
        await expect(page.locator("#next-cutoff")).to_contain_text("cutoff in")
        await expect(page.locator("#scan")).to_be_focused()

        await wedge(page, GTIN_2)  # SKU-2 is not on the pick list
        fb = page.locator("#feedback")
        await expect(fb).to_have_attribute("data-kind", "bad")
        await expect(fb.locator(".title")).to_have_text("Wrong item")
        await expect(fb.locator(".icon")).to_have_text("\u2716")
        await expect(fb.locator(".detail")).to_contain_text("not on your pick list")
        await expect(page.locator("#scan")).to_be_focused()

        await wedge(page, GTIN_1)
        await expect(fb).to_have_attribute("data-kind", "good")
        await expect(fb.locator(".icon")).to_have_text("\u2714")
        await expect(page.locator("#qty")).to_have_text("1")
        await wedge(page, GTIN_1)
        await expect(fb.locator(".detail")).to_have_text("line 1 complete")
        await expect(page.locator("#idle")).to_be_visible()
        await expect(page.locator("#undo")).to_be_enabled()

        assert gate.service.floor.orders["O-1"].state == "picked"
        assert [e["data"]["qty"] for e in gate.events("pick.line_confirmed")] == [2]
        assert gate.events("task.completed")[0]["data"]["operator_id"] == "p1"
        rejected = gate.events("scan.rejected")
        assert [e["data"]["code"] for e in rejected] == ["wrong_item"]
        assert rejected[0]["data"]["device_id"].startswith("pda-")


async def _picked_order(gate: Gate, order_id: str) -> None:
    await picked_order(gate, order_id, [(1, "SKU-1", 2), (2, "SKU-2", 1)], [GTIN_1, GTIN_1, GTIN_2])


async def test_packer_verifies_an_order(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await _picked_order(gate, "O-7")
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(gate.base + "/pack/pack-1")
        await expect(page.locator("#station-name")).to_have_text("pack-1")
        await wedge(page, "BADGE-K1")
        await expect(page.locator("#work")).to_be_visible()
        await wedge(page, "O-7")
        await expect(page.locator("#order-id")).to_have_text("O-7")
        await expect(page.locator("#units")).to_have_text("0 of 3 units")
        rows = page.locator("#items tr")
        await expect(rows).to_have_count(2)

        await wedge(page, "09506000134352")  # SKU-LOT: known, but not in this order
        fb = page.locator("#feedback")
        await expect(fb).to_have_attribute("data-kind", "bad")
        await expect(fb.locator(".title")).to_have_text("Not in this order")
        await expect(fb.locator(".detail")).to_contain_text("put it aside")

        await wedge(page, GTIN_1)
        await expect(page.locator("#units")).to_have_text("1 of 3 units")
        await wedge(page, GTIN_1)
        await expect(page.locator("#items tr.done")).to_have_count(1)
        await expect(page.locator("#items tr.done td").first).to_contain_text("complete")
        await wedge(page, GTIN_2)
        await expect(fb.locator(".detail")).to_contain_text("packed, SSCC")
        await expect(page.locator("#parcel-order")).to_have_text("O-7")
        sscc = (await page.locator("#parcel-sscc").text_content() or "").strip()
        assert len(sscc) == 18 and sscc.isdigit()
        verified = gate.events("pack.verified")
        assert [(e["order_id"], e["data"]["sscc"]) for e in verified] == [("O-7", sscc)]
        assert gate.service.floor.orders["O-7"].state == "packed"


async def _supervisor_login(page: Page, gate: Gate) -> None:
    await page.goto(gate.base + "/supervisor")
    await page.fill("#op", "s1")
    await page.fill("#pw", SUPERVISOR_PW)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#work")).to_be_visible()


async def test_dashboard_updates_live_when_an_order_changes_state(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await _supervisor_login(page, gate)
        received = page.locator('#states .row[data-state="received"] .n')
        held = page.locator('#states .row[data-state="on_hold"] .n')
        await expect(received).to_have_text("0")
        await page.evaluate("window.__notReloaded = true")

        await gate.order("O-9", [(1, "SKU-1", 1)])  # from the hub's side, not from this page
        await expect(received).to_have_text("1")
        await expect(page.locator('#orders tr[data-order="O-9"]')).to_have_attribute("data-state", "received")
        # the task waits: the dashboard says why nobody got it
        await expect(page.locator("#tasks")).to_contain_text("no eligible picker in zone zone-a")

        await page.fill("#hold-id", "O-9")
        await page.click("#hold-form button")
        await expect(held).to_have_text("1")
        await expect(page.locator('#holds [data-hold="order:O-9"]')).to_be_visible()
        await page.click('#holds [data-hold="order:O-9"] button')
        await expect(held).to_have_text("0")
        await expect(received).to_have_text("1")
        assert await page.evaluate("window.__notReloaded") is True
        assert [e["data"]["by"] for e in gate.events("dispatch.held")] == ["s1"]


async def test_dashboard_shows_the_stored_decision_and_a_banner_for_a_device_offline_too_long(
        tmp_path: Path) -> None:
    """Why a picker got or did not get a task is the decision as made (p2 was held then, not any more); a
    scanner gone for longer than `device_offline_alarm_min` (10) raises an alarm, shown above the dashboard.
    Time moves only on the gateway's own clock."""
    clock = ManualClock(datetime.now(UTC))  # the real date: the browser judges cookie expiry by its own clock
    cfg = web_config(tmp_path, scanners=[{"id": "scan-9", "port": str(tmp_path / "no-such-scanner")}])
    async with gateway(cfg, clock=clock) as gate, chromium() as browser:
        p1, _ = await badge_client(gate, "BADGE-P1")
        p2, _ = await badge_client(gate, "BADGE-P2")
        floor = gate.service.floor
        try:
            await gate.service.execute(lambda f, c: set_hold(f, c, "operator", "p2", "s1", gate.service.at(), True))
            await gate.order("O-5", [(1, "SKU-1", 1)])
            await gate.until(lambda: "O-5~zone-a" in floor.tasks and floor.tasks["O-5~zone-a"].operator_id == "p1")
            await gate.service.execute(lambda f, c: set_hold(f, c, "operator", "p2", "s1", gate.service.at(), False))
            reason = gate.events("task.assigned")[-1]["data"]["reason"]

            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await _supervisor_login(page, gate)
            row = page.locator('#tasks tr[data-task="O-5~zone-a"]')
            await expect(row.locator("details.decision summary")).to_contain_text(reason)
            await row.locator("details.decision summary").click()
            await expect(row.locator('details.decision tr[data-candidate="p2"]')).to_contain_text("held")
            await expect(row.locator('details.decision tr[data-candidate="p1"]')).to_contain_text("chosen")
            await expect(page.locator('#pickers tr[data-picker="p2"]')).to_contain_text("not given O-5~zone-a held")

            # p1 picks it, so that the minutes moved below are not minutes of a picker sitting on a task.
            assert (await p1.post("/api/v1/pda/scan", json={"action_id": "pick-o5-0001", "text": GTIN_1})).json()["ok"]
            await gate.until(lambda: floor.tasks["O-5~zone-a"].state == "completed")

            await gate.until(lambda: "scan-9" in floor.devices and not floor.devices["scan-9"].online)
            await expect(page.locator("#devices")).to_contain_text("scan-9")
            await expect(page.locator("#alarm-banner")).to_be_hidden()
            clock.advance(9 * 60)
            assert gate.app.ticker is not None
            await gate.app.ticker.tick()
            assert "device_offline:scan-9" not in floor.alarms
            clock.advance(2 * 60)
            await gate.until(lambda: "device_offline:scan-9" in floor.alarms)  # the gateway's own ticker
            banner = page.locator("#alarm-banner")
            await expect(banner).to_be_visible()
            await expect(banner).to_contain_text("Active alarms: 1")
            await expect(banner.locator('[data-alarm="device_offline:scan-9"]')).to_contain_text(
                "scanner scan-9 has been offline for 11 min")
            raised = [e["data"] for e in gate.events("alarm.raised")]
            assert [(a["alarm_id"], a["code"]) for a in raised] == [("device_offline:scan-9", "device_offline")]
        finally:
            for c in (p1, p2):
                await c.aclose()


async def test_picker_session_is_refused_the_supervisors_actions(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-3", [(1, "SKU-1", 1)])
        page = await browser.new_page(viewport=PDA)
        await pda_login(page, gate)
        result: dict[str, Any] = await page.evaluate("""async () => {
            const me = await (await fetch('/api/v1/auth/me')).json();
            const post = (path, body) => fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json',
                'X-CSRF-Token': me.csrf}, body: JSON.stringify(body)});
            const hold = await post('/api/v1/supervisor/hold', {action_id: 'try-hold-0001', scope: 'order', id: 'O-3'});
            const snap = await fetch('/api/v1/supervisor/snapshot');
            const tech = await post('/api/v1/technician/modules/bus-a-u001/identify', {});
            return {hold: hold.status, holdBody: await hold.json(), snap: snap.status, tech: tech.status};
        }""")
        assert result["hold"] == 403 and result["snap"] == 403 and result["tech"] == 403
        assert "supervisor" in result["holdBody"]["error"]["message"]
        assert "O-3" not in {h.split(":", 1)[1] for h in gate.service.floor.holds}
        # the dashboard itself asks for a supervisor's password
        await page.goto(gate.base + "/supervisor")
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.locator("#work")).to_be_hidden()


async def test_wifi_drop_neither_loses_nor_doubles_a_scan(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-4", [(1, "SKU-1", 3)])
        context = await browser.new_context(viewport=PDA)
        page = await context.new_page()
        await pda_login(page, gate)
        await expect(page.locator("#qty")).to_have_text("3")

        dropped: list[str] = []

        async def drop_answer(route: Route) -> None:
            if not dropped:  # the request reaches the gateway, the answer is lost on the way back
                await route.fetch()
                dropped.append(route.request.post_data or "")
                await route.abort("internetdisconnected")
            else:
                await route.continue_()
        await page.route("**/api/v1/pda/scan", drop_answer)
        await wedge(page, GTIN_1)
        fb = page.locator("#feedback")
        await expect(fb.locator(".detail")).to_contain_text("already done")
        await expect(page.locator("#qty")).to_have_text("2")
        await page.unroute("**/api/v1/pda/scan")

        await context.set_offline(True)  # Wi-Fi gone: the scan waits on the PDA
        await wedge(page, GTIN_1)
        await expect(page.locator("#pending")).to_contain_text("waiting")
        await context.set_offline(False)
        await expect(page.locator("#pending")).to_have_text("")
        await expect(page.locator("#qty")).to_have_text("1")

        scans = [r for r in gate.web.actions.service.floor.extra["web_action"].values()]
        assert len(scans) == 2
        assert gate.web.actions.replayed == 1
        line = gate.service.floor.orders["O-4"].lines[0]
        assert line.picked == 2  # two scans applied, the retried one once
        await context.close()


async def test_language_follows_the_operator_and_the_switch_on_the_page(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        page = await browser.new_page(viewport=PDA)
        await pda_login(page, gate, "BADGE-P2")  # Bo's master data says "zh"
        await expect(page.locator("h1")).to_have_text("拣货")
        await expect(page.locator("#idle")).to_have_text("暂无任务\uff1a等待分配…")
        await page.select_option("#lang", "en")
        await expect(page.locator("h1")).to_have_text("Picking")
        await expect(page.locator("#idle")).to_have_text("No task right now: waiting for work…")
        # kept for the session on the gateway too (the page tells it in the background)
        await page.wait_for_function("async () => (await (await fetch('/api/v1/auth/me')).json()).language === 'en'",
                                     polling=100)
