"""The supervisor's dashboard in headless Chromium, for two things of issue #8 the other browser tests do not
look at: the backlog chart (open orders over time, drawn from the gateway's samples) and an escalation (a
task not started within 30 min, with nobody to take it over) shown on the task with its level, as an icon
and a number rather than a colour. Time moves only on the gateway's own clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.clock import ManualClock
from tests.web.conftest import SUPERVISOR_PW, badge_client, chromium, gateway, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion
TASK = "O-1~zone-a"


async def test_dashboard_draws_the_backlog_and_shows_an_escalated_task(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))  # the real date: the browser judges cookie expiry by its own clock
    async with gateway(web_config(tmp_path), clock=clock) as gate, chromium() as browser:
        p1, _ = await badge_client(gate, "BADGE-P1")
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(gate.base + "/supervisor")
            await page.fill("#op", "s1")
            await page.fill("#pw", SUPERVISOR_PW)
            await page.click("#login button[type=submit]")
            await expect(page.locator("#work")).to_be_visible()
            chart = page.locator("#trend svg")
            await expect(chart).to_have_attribute("aria-label", "Backlog: open orders: 0")

            await gate.order("O-1", [(1, "SKU-1", 1)])
            await gate.until(lambda: gate.service.floor.tasks.get(TASK) is not None
                             and gate.service.floor.tasks[TASK].operator_id == "p1")
            row = page.locator(f'#tasks tr[data-task="{TASK}"]')
            await expect(row).to_be_visible()
            assert (await row.locator("td").nth(5).text_content() or "").strip() == "0"

            clock.advance(31 * 60)  # p1 never starts it; nobody else is logged in to take it over
            assert gate.app.ticker is not None
            await gate.app.ticker.tick()
            escalated = [e["data"] for e in gate.events("task.escalated")]
            assert [(e["task_id"], e["level"]) for e in escalated] == [(TASK, 2)]
            await expect(row.locator("td").nth(5)).to_have_text("\u26a0 2")
            # the backlog went from 0 to 1 open order: a second point, the latest value in the chart's label
            await expect(chart).to_have_attribute("aria-label", "Backlog: open orders: 1")
            points = await chart.locator("polyline").get_attribute("points") or ""
            assert len(points.split()) >= 2, points
        finally:
            await p1.aclose()
