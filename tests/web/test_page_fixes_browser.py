"""Defects a tester found driving the pages in headless Chromium, each checked the way they found it: a
technician logging in on the supervisor's page (and a picker on the technician's), a scan right after the
language changed on the PDA and at a packing station, times shown in UTC instead of the browser's time zone,
action results off-screen on long pages, the home page's station pattern, untranslated words in Chinese, a
favicon 404, the backlog chart's last label past its edge, and a tick on an escalation nobody took."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from gateway.clock import ManualClock
from gateway.users import hash_password, store_password
from simulators.ptl import PtlSimulator
from simulators.scanner import VirtualSerialScanner
from tests.web.conftest import (
    SUPERVISOR_PW,
    TECH_PW,
    Gate,
    chromium,
    gateway,
    password_client,
    picked_order,
    web_config,
)

pytestmark = pytest.mark.timeout(180)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
PDA = {"width": 360, "height": 640}
GTIN_1 = "4006381333931"  # SKU-1
GTIN_2 = "05012345678900"  # SKU-2
TZ = "Asia/Shanghai"
PICKER_PW = "picker-password-1"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


async def wedge(page: Page, text: str) -> None:
    """A keyboard-wedge scanner: types into whatever has the focus and presses Enter."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def open_in(browser: Browser, gate: Gate, path: str, lang: str, **ctx: Any) -> Page:
    """A page in its own context (its own cookies) with the language chosen by hand, as a person would."""
    context = await browser.new_context(**ctx)
    page = await context.new_page()
    await page.goto(gate.base + path)
    await page.evaluate(f"localStorage.setItem('fg_lang', '{lang}'); localStorage.setItem('fg_lang_manual', '1')")
    await page.reload()
    return page


async def form_login(page: Page, operator: str, password: str) -> None:
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#op", operator)
    await page.fill("#pw", password)
    await page.click("#login button[type=submit]")


def shown(iso: str, now: datetime, short: bool = False) -> str:
    """What the pages show for a UTC timestamp in Asia/Shanghai: the time for today, else date and time."""
    tz = ZoneInfo(TZ)
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    if at.date() == now.astimezone(tz).date():
        return at.strftime("%H:%M" if short else "%H:%M:%S")
    return at.strftime("%Y-%m-%d %H:%M")


# -- 1. the role is checked when logging in, not only when the page loads --------------------------------------

async def test_a_login_without_the_pages_role_stays_on_the_form(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await asyncio.to_thread(store_password, gate.app.cfg.db_path, "p1", hash_password(PICKER_PW),
                                site=gate.app.cfg.site, gateway=gate.app.cfg.gateway)
        # a technician on the supervisor's page: told so, still on the form, no live stream asked for
        sup = await open_in(browser, gate, "/supervisor", "en")
        asked: list[str] = []
        sup.on("request", lambda r: asked.append(r.url) if "/api/v1/supervisor/" in r.url else None)
        await form_login(sup, "t1", TECH_PW)
        fb = sup.locator("#login-feedback")
        await expect(fb.locator(".title")).to_have_text("Not allowed: supervisors only")
        await expect(fb).to_have_attribute("data-kind", "bad")
        await expect(sup.locator("#login")).to_be_visible()
        await expect(sup.locator("#work")).to_be_hidden()
        await expect(sup.locator("#logout")).to_be_hidden()
        assert asked == []
        # translated; a wrong password says so rather than "not logged in"
        await sup.select_option("#lang", "zh")
        await form_login(sup, "t1", TECH_PW)
        await expect(fb.locator(".title")).to_have_text("无权限\uff1a仅限主管")
        await form_login(sup, "s1", "not-the-password")
        await expect(fb.locator(".title")).to_have_text("员工编号或密码错误")
        await sup.select_option("#lang", "en")
        await form_login(sup, "s1", "not-the-password")
        await expect(fb.locator(".title")).to_have_text("Wrong operator ID or password")
        await sup.reload()  # the technician's session is still there: the page says why it shows the form
        await expect(fb.locator(".title")).to_have_text("Not allowed: supervisors only")
        await expect(sup.locator("#work")).to_be_hidden()
        assert asked == []
        # the supervisor then logs in on the same page and gets the dashboard
        await form_login(sup, "s1", SUPERVISOR_PW)
        await expect(sup.locator("#work")).to_be_visible()
        await expect(fb).to_be_hidden()

        # the technician's page: a picker's badge session (from the PDA, same browser) is not let in, and says why;
        # the login route itself refuses a picker's password; a supervisor is let in
        tech = await open_in(browser, gate, "/technician", "en")
        r = await tech.request.post(gate.base + "/api/v1/auth/badge", data={"badge": "BADGE-P1", "station": "pick"})
        assert r.status == 200, await r.text()
        polled: list[str] = []
        tech.on("request", lambda r: polled.append(r.url) if "/api/v1/technician/" in r.url else None)
        await tech.reload()
        tfb = tech.locator("#login-feedback")
        await expect(tfb.locator(".title")).to_have_text("Not allowed: technicians and supervisors only")
        await expect(tech.locator("#work")).to_be_hidden()
        await form_login(tech, "p1", PICKER_PW)
        await expect(tfb.locator(".title")).to_have_text("Not allowed")
        await expect(tfb.locator(".detail")).to_contain_text("no supervisor or technician role")
        await expect(tech.locator("#work")).to_be_hidden()
        assert polled == []
        await form_login(tech, "s1", SUPERVISOR_PW)
        await expect(tech.locator("#work")).to_be_visible()
        await expect(tech.locator("#who")).to_have_text("Sue")


# -- 2. the scan field gets the focus back after the language select --------------------------------------------

async def test_a_scan_right_after_changing_the_language_is_not_lost(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await picked_order(gate, "O-7", [(1, "SKU-2", 1)], [GTIN_2])  # for the packing station below
        await gate.order("O-1", [(1, "SKU-1", 2)])
        pda = await open_in(browser, gate, "/pda", "en", viewport=PDA, has_touch=True, is_mobile=True)
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P1")
        await expect(pda.locator("#loc")).to_have_text("A-01-01")
        await pda.tap("#lang")
        await pda.select_option("#lang", "zh")
        await expect(pda.locator("h1")).to_have_text("拣货")
        await expect(pda.locator("#scan")).to_be_focused()
        await wedge(pda, GTIN_2)
        fb = pda.locator("#feedback")
        await expect(fb.locator(".title")).to_have_text("拣错商品")
        # a control that has the focus without being changed: what the scanner types still reaches the field
        await pda.focus("#lang")
        await wedge(pda, GTIN_1)
        await expect(fb).to_have_attribute("data-kind", "good")
        await expect(pda.locator("#qty")).to_have_text("1")
        await expect(pda.locator("#lang")).to_have_value("zh")
        # and on the login form: the badge field
        await pda.click("#logout")
        await expect(pda.locator("#badge")).to_be_focused()
        await pda.tap("#lang")
        await pda.select_option("#lang", "en")
        await expect(pda.locator("#badge")).to_be_focused()

        pack = await open_in(browser, gate, "/pack/pack-1", "en", viewport=PDA, has_touch=True, is_mobile=True)
        await expect(pack.locator("#badge")).to_be_focused()
        await wedge(pack, "BADGE-K1")
        await expect(pack.locator("#work")).to_be_visible()
        await pack.tap("#lang")
        await pack.select_option("#lang", "zh")
        await expect(pack.locator("#scan")).to_be_focused()
        await wedge(pack, "O-7")
        await expect(pack.locator("#order-id")).to_have_text("O-7")
        await expect(pack.locator("#units")).to_have_text("0 / 1 件")


# -- 3, 6, 8, 9: the supervisor's dashboard in the browser's time zone and in Chinese --------------------------

async def test_dashboard_shows_local_time_chinese_words_and_an_escalation_without_a_tick(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))  # the real date: the browser judges cookie expiry by its own clock
    async with gateway(web_config(tmp_path), clock=clock) as gate, chromium() as browser:
        for i in range(12):  # a backlog with a two-digit count for the chart's last label
            await gate.order(f"O-{i:02d}", [(1, "SKU-1", 1)])
        # nobody is logged in to pick: after 30 min the task of O-00 is escalated with nobody chosen
        clock.advance(31 * 60)
        assert gate.app.ticker is not None
        await gate.app.ticker.tick()
        task = gate.service.floor.tasks["O-00~zone-a"]
        assert task.decision is not None and task.decision["kind"] == "escalated", task.decision
        decided_at = task.decision["at"]

        page = await open_in(browser, gate, "/supervisor", "zh", viewport={"width": 1280, "height": 800},
                             timezone_id=TZ)
        await form_login(page, "s1", SUPERVISOR_PW)
        await expect(page.locator("#work")).to_be_visible()
        await expect(page).to_have_title("Floorgate · 主管")

        # the hold form in Chinese, and the hold's time in local time with the UTC value kept in its title
        await expect(page.locator('#hold-scope option[value="order"]')).to_have_text("订单")
        await page.fill("#hold-id", "O-01")
        await page.click("#hold-form button")
        hold = page.locator('#holds [data-hold="order:O-01"]')
        await expect(hold).to_be_visible()
        at = gate.service.floor.holds["order:O-01"].to_doc()["at"]
        assert at.endswith("Z"), at
        await expect(hold.locator("time")).to_have_attribute("title", at + " (UTC)")
        await expect(hold.locator("time")).to_have_text(shown(at, clock.now()))
        await expect(hold.locator(".tag")).to_have_text("\u2016 订单 O-01")
        await expect(page.locator('#orders tr[data-order="O-01"] .tag')).to_have_text("\u2016 调度暂停")

        # the escalated task: translated state, a warning mark and not a tick, the decision's time local
        row = page.locator('#tasks tr[data-task="O-00~zone-a"]')
        await expect(row.locator("td").nth(3)).to_have_text("待分配")
        summary = row.locator("details.decision summary")
        await expect(summary).to_contain_text("\u26a0")
        assert "\u2714" not in (await summary.text_content() or "")
        decided = row.locator("details.decision time")
        await expect(decided).to_have_attribute("title", decided_at + " (UTC)")
        await expect(decided).to_have_text(shown(decided_at, clock.now()))

        # the escalation's alarm: raised_at local
        alarm = page.locator("#alarms time").first
        await expect(alarm).to_be_attached()
        raised = (await alarm.get_attribute("datetime")) or ""
        await expect(alarm).to_have_text(shown(raised, clock.now()))

        # the storage tag, the chart: its last label in local time and inside the chart
        await expect(page.locator("#sync .tag.good")).to_have_text("\u2714 正常")
        last = page.locator("#trend svg text").last
        await expect(last).to_contain_text(" \u00b7 12")
        label_at = (await last.get_attribute("data-at")) or ""
        await expect(last).to_have_text(shown(label_at, clock.now(), short=True) + " \u00b7 12")
        box = await last.evaluate("t => { const b = t.getBBox(); return [b.x, b.x + b.width]; }")
        assert box[0] >= 0 and box[1] <= 600, box

        # the CSV's day says it is a UTC day, and is today's UTC date by the gateway's clock (what the route takes)
        await expect(page.locator('label[for="export-day"]')).to_have_text("日期\uff08UTC\uff09")
        await expect(page.locator("#export-day")).to_have_value(clock.now().strftime("%Y-%m-%d"))

        # no UTC timestamp left anywhere on the dashboard
        text = await page.locator("#work").inner_text()
        assert not ISO_UTC.search(text), ISO_UTC.findall(text)


# -- 4. the answer to an action is shown where the person is ---------------------------------------------------

async def test_supervisor_action_results_show_in_the_viewport(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await picked_order(gate, "O-2", [(1, "SKU-1", 1)], [GTIN_1])
        page = await open_in(browser, gate, "/supervisor", "en", viewport=PDA)
        await form_login(page, "s1", SUPERVISOR_PW)
        undo = page.locator("#undo").get_by_role("button", name="Undo")
        await expect(undo).to_have_count(1)
        await undo.click()  # far down the page on a small screen
        fb = page.locator("#feedback")
        await expect(fb).to_have_attribute("data-kind", "good")
        await expect(fb).to_be_in_viewport()
        assert gate.service.floor.orders["O-2"].lines[0].picked == 0
        await fb.get_by_role("button", name="Close").click()
        await expect(fb).to_be_hidden()

        # a refusal: clearly marked (icon, words, an alert) and in view too
        await page.locator("#hold-id").scroll_into_view_if_needed()
        await page.fill("#hold-id", "NO-SUCH-ORDER")
        await page.click("#hold-form button")
        await expect(fb).to_have_attribute("data-kind", "bad")
        await expect(fb).to_have_attribute("role", "alert")
        await expect(fb.locator(".icon")).to_have_text("\u2716")
        await expect(fb.locator(".title")).to_have_text("Not found")
        await expect(fb.locator(".detail")).to_contain_text("NO-SUCH-ORDER")
        await expect(fb).to_be_in_viewport()
        await page.locator("#export-link").scroll_into_view_if_needed()  # the end of the page
        await expect(fb).to_be_in_viewport()


# -- 3, 4, 6: the technician's page in Chinese, in the browser's time zone, a self-test's answer in view --------

async def test_technician_page_in_chinese_local_time_and_a_self_test_in_view(tmp_path: Path) -> None:
    with VirtualSerialScanner(tmp_path / "scan-1") as scanner:
        async with PtlSimulator([1, 2], port=0) as sim:
            cfg = web_config(tmp_path, ptl={"buses": [{"id": "bus-a", "port": sim.port, "timeout_ms": 200}]},
                             scanners=[{"id": "scan-1", "port": scanner.path, "station": "pick"}])
            async with gateway(cfg) as gate, chromium() as browser:
                registry = gate.app.registry
                await gate.until(lambda: registry.devices["scan-1"].online and "bus-a-u002" in registry.devices
                                 and registry.devices["bus-a-u002"].online)
                await scanner.scan("BADGE-NOPE")
                await gate.until(lambda: registry.devices["scan-1"].scans == 1)

                page = await open_in(browser, gate, "/technician", "zh", viewport=PDA, timezone_id=TZ)
                await form_login(page, "t1", TECH_PW)
                await expect(page.locator("#work")).to_be_visible()
                await expect(page).to_have_title("Floorgate · 技术员")
                bus = page.locator('#devices tr[data-device="bus-a"] td')
                await expect(bus.nth(1)).to_have_text("总线")
                await expect(bus.nth(3)).to_have_text("链路正常")
                module = page.locator('#devices tr[data-device="bus-a-u001"] td')
                await expect(module.nth(1)).to_have_text("亮灯模块")
                await expect(module.nth(3)).to_have_text("应答正常")
                await expect(page.locator('#devices tr[data-device="scan-1"] td').nth(1)).to_have_text("扫描枪")
                await expect(page.locator('#buses tr[data-module="bus-a-u001"] td').nth(2)).to_have_text("熄灭")

                when = page.locator("#scanners tbody tr time").first
                await expect(when).to_be_attached()
                ts = (await when.get_attribute("datetime")) or ""
                assert ts.endswith("Z"), ts
                await expect(when).to_have_attribute("title", ts + " (UTC)")
                await expect(when).to_have_text(shown(ts, datetime.now(UTC)))

                await page.locator('#buses tr[data-module="bus-a-u002"]').get_by_role("button", name="自检").click()
                fb = page.locator("#feedback")
                await expect(fb).to_have_attribute("data-kind", "good")
                await expect(fb.locator(".detail")).to_contain_text("bus-a-u002")
                await expect(fb).to_be_in_viewport()


# -- 5, 7: the home page's station field, and no favicon 404 on any page ---------------------------------------

async def test_station_field_validates_and_no_page_asks_for_a_missing_favicon(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        page = await browser.new_page(viewport=PDA)
        console: list[str] = []
        failed: list[tuple[int, str]] = []
        page.on("console", lambda m: console.append(m.text))
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)

        await page.goto(gate.base + "/")
        field = page.locator("#pack-station")
        await page.fill("#pack-station", "Pack 1")
        await page.click("#pack-form button")
        await expect(page.locator("#pack-station:invalid")).to_have_count(1)
        assert page.url == gate.base + "/"
        await page.fill("#pack-station", "pack-2")
        await expect(page.locator("#pack-station:invalid")).to_have_count(0)
        await page.click("#pack-form button")
        await page.wait_for_url(gate.base + "/pack/pack-2")
        await expect(page.locator("#station-name")).to_have_text("pack-2")
        assert await field.count() == 0
        assert not [m for m in console if "pattern" in m.lower()], console

        for path in ("/pda", "/supervisor", "/technician", "/"):
            await page.goto(gate.base + path)
            await expect(page.locator("header.bar h1")).to_be_visible()
            await expect(page.locator("#lang")).to_be_visible()
        # the browser's own favicon request is not a page request (no "request" event): its 404 shows only in
        # the console, as "Failed to load resource: ... 404"
        assert not [m for m in console if "404" in m], console
        # the only refusal is the API's documented answer to "who am I" without a session
        assert {(s, u.removeprefix(gate.base)) for s, u in failed} <= {(401, "/api/v1/auth/me")}, failed


# -- another picker's badge on the PDA: the page carries on as them --------------------------------------------

async def test_another_badge_scanned_on_the_pda_carries_the_page_on_as_that_picker(tmp_path: Path) -> None:
    """p2 was logged in on a device no page showed (the page dropped to the badge screen), and could be given
    work nobody saw. SPEC §6: a second badge replaces the operator; the page now shows p2."""
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        pda = await open_in(browser, gate, "/pda", "en", viewport=PDA, has_touch=True, is_mobile=True)
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P1")
        await expect(pda.locator("#work")).to_be_visible()
        await expect(pda.locator("#who")).to_have_text("Ana")
        await gate.order("O-1", [(1, "SKU-1", 2)])
        await wedge(pda, "BADGE-P2")
        await wedge(pda, GTIN_1)  # at once: sent right after the switch, with the new session's CSRF token
        await expect(pda.locator("#who")).to_have_text("Bo")
        await expect(pda.locator("#work")).to_be_visible()
        await expect(pda.locator("#login")).to_be_hidden()
        await expect(pda.locator("#scan")).to_be_focused()
        pickers = [s.operator_id for s in gate.service.floor.sessions.values() if s.station == "pick"]
        assert pickers == ["p2"]
        fb = pda.locator("#feedback")
        await expect(fb).not_to_contain_text("CSRF")  # the scan after the badge was not refused


async def test_a_language_chosen_by_hand_ends_with_the_session_on_a_shared_pda(tmp_path: Path) -> None:
    """One picker switched the PDA to Chinese by hand and logged out; the next (master data: English) got
    Chinese. The hand-chosen language is now the session's, and the next login gets their own."""
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        context = await browser.new_context(viewport=PDA, has_touch=True, is_mobile=True)
        pda = await context.new_page()
        await pda.goto(gate.base + "/pda")
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P2")  # p2 reads Chinese (master data)
        await expect(pda.locator("#work")).to_be_visible()
        await expect(pda.locator("#lang")).to_have_value("zh")
        await pda.select_option("#lang", "en")  # by hand
        await expect(pda.locator("#lang")).to_have_value("en")
        await pda.click("#logout")
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P2")  # the next session: master data's language again
        await expect(pda.locator("#work")).to_be_visible()
        await expect(pda.locator("#lang")).to_have_value("zh")
        # The same when the next picker takes over by scanning their badge, with no logout in between: the
        # hand-chosen language stayed with the PDA, for every picker after.
        await pda.select_option("#lang", "en")  # by hand, p2's choice
        await expect(pda.locator("#lang")).to_have_value("en")
        await pda.locator("#scan").focus()
        await wedge(pda, "BADGE-P1")
        await expect(pda.locator("#who")).to_have_text("Ana")
        await wedge(pda, "BADGE-P2")  # a new session of p2: master data's language
        await expect(pda.locator("#who")).to_have_text("Bo")
        await expect(pda.locator("#lang")).to_have_value("zh")


async def test_the_pda_says_what_to_put_back_when_an_order_is_cancelled_mid_pick(tmp_path: Path) -> None:
    """The hub cancelled a half-picked order: its lines vanished from the PDA with no word about the unit in the
    tote. The PDA now says which units to put back, until the picker's next scan."""
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 2)])
        pda = await open_in(browser, gate, "/pda", "en", viewport=PDA, has_touch=True, is_mobile=True)
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P1")
        await expect(pda.locator("#loc")).to_have_text("A-01-01")
        await wedge(pda, GTIN_1)
        await expect(pda.locator("#progress")).to_contain_text("1")
        assert (await gate.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"}))["ok"]
        banner = pda.locator("#put-back")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("Order O-1 was cancelled")
        await expect(banner).to_contain_text("1 \u00d7 SKU-1 \u2192 A-01-01")
        await expect(pda.locator("#idle")).to_be_visible()  # no lines left


async def test_the_pda_says_when_a_supervisor_undid_a_line(tmp_path: Path) -> None:
    """The line reappeared under the picker's own green "OK" of a moment ago, with no word of the undo."""
    async with gateway(web_config(tmp_path)) as gate, chromium() as browser:
        await gate.order("O-1", [(1, "SKU-1", 1), (2, "SKU-2", 1)])
        pda = await open_in(browser, gate, "/pda", "en", viewport=PDA, has_touch=True, is_mobile=True)
        await expect(pda.locator("#badge")).to_be_focused()
        await wedge(pda, "BADGE-P1")
        await expect(pda.locator("#loc")).to_have_text("A-01-01")
        await wedge(pda, GTIN_1)
        await expect(pda.locator("#loc")).to_have_text("A-01-02")  # line 1 done
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            r = await s.post("/api/v1/supervisor/undo", json={"action_id": "undo-by-s1-0001", "task_id": "O-1~zone-a",
                                                            "line_no": 1})
            assert r.status_code == 200 and r.json()["ok"], r.text
        finally:
            await s.aclose()
        banner = pda.locator("#put-back")
        await expect(banner).to_contain_text("s1 undid line 1 of order O-1")
        await expect(banner).to_contain_text("1 \u00d7 SKU-1")
