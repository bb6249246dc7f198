"""A real gateway (App: journal, floor service, dispatch ticker, devices, the web server on a free port) with
master data and orders loaded through the domain, HTTP clients logged in the way pages log in, and a
headless Chromium (Debian's, never a downloaded one) for the browser tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from gateway.app import App
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.users import hash_password, store_password
from tests.conftest import CARTONS, LOCATIONS, SKUS, make_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SUPERVISOR_PW = "sup-password-1"
TECH_PW = "tech-password-1"
OPERATORS = [
    {"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"], "zones": ["zone-a"]},
    {"operator_id": "p2", "name": "Bo", "badge": "BADGE-P2", "roles": ["picker"], "zones": ["zone-a"],
     "language": "zh"},
    {"operator_id": "k1", "name": "Kai", "badge": "BADGE-K1", "roles": ["packer"], "zones": ["zone-a"]},
    {"operator_id": "s1", "name": "Sue", "badge": "BADGE-S1", "roles": ["supervisor"], "zones": ["zone-a"]},
    # a technician whose hash comes from master data (bcrypt, as a hub might send it)
    {"operator_id": "t1", "name": "Tom", "badge": "BADGE-T1", "roles": ["technician"],
     "password_hash": bcrypt.hashpw(TECH_PW.encode(), bcrypt.gensalt(rounds=4)).decode()},
]


class Gate:
    """The running gateway and the ways a test drives it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.n = 0

    @property
    def base(self) -> str:
        assert self.app.web is not None
        return f"http://127.0.0.1:{self.app.web.port}"

    @property
    def service(self) -> Any:
        return self.app.service

    @property
    def web(self) -> Any:
        assert self.app.web is not None
        return self.app.web.asgi.state.web

    async def cmd(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"t{self.n}", **payload})
        at = self.service.at()
        result: dict[str, Any] = await self.service.execute_command(name, c.cmd_id,
                                                                    lambda f, ch: apply_command(f, ch, c, at))
        return result

    async def load(self, operators: list[dict[str, Any]] | None = None) -> None:
        r = await self.cmd("masterdata.sync", {"mode": "replace", "sync_id": f"md{self.n}", "part": 1, "parts": 1,
                                               "skus": SKUS, "locations": LOCATIONS,
                                               "operators": operators or OPERATORS, "cartons": CARTONS})
        assert r["ok"] and not r["rejected"], r
        await asyncio.to_thread(store_password, self.app.cfg.db_path, "s1", hash_password(SUPERVISOR_PW),
                                site=self.app.cfg.site, gateway=self.app.cfg.gateway)

    async def order(self, order_id: str, lines: list[tuple[int, str, int]], **prio: Any) -> dict[str, Any]:
        return await self.cmd("order.upsert", {"order": {
            "order_id": order_id, "channel": "web", "priority": prio,
            "lines": [{"line_no": n, "sku": s, "qty": q} for n, s, q in lines]}})

    def events(self, type_: str) -> list[dict[str, Any]]:
        import json
        import sqlite3

        conn = sqlite3.connect(self.app.cfg.db_path)
        try:
            rows = conn.execute("SELECT body FROM events WHERE type = ? ORDER BY seq", (type_,)).fetchall()
        finally:
            conn.close()
        return [json.loads(b) for (b,) in rows]

    async def until(self, pred: Any, timeout: float = 20.0) -> None:
        """Wait for a condition the gateway reaches by itself (a dispatch decision); a safety limit only."""
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.02)


def web_config(tmp_path: Path, **over: Any) -> Config:
    return make_config(tmp_path / "gw", **over)


@contextlib.asynccontextmanager
async def gateway(cfg: Config, *, mqtt: bool = False, load: bool = True,
                  clock: Clock | None = None) -> AsyncIterator[Gate]:
    """`clock`: a ManualClock for rules that need time to pass (start it at the real time: the browser
    judges cookie expiry by its own clock)."""
    app = App(cfg, clock or SystemClock(), connect_mqtt=mqtt, daily_checks=False)
    task = asyncio.create_task(app.run(install_signals=False), name="test-web-gateway")
    try:
        async with asyncio.timeout(30):
            await app.ready.wait()
            while app.web is None or not app.web.started:
                await asyncio.sleep(0.01)
        gate = Gate(app)
        if load:
            await gate.load()
        yield gate
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)


async def badge_client(gate: Gate, badge: str, station: str = "pick") -> tuple[httpx.AsyncClient, dict[str, Any]]:
    c = httpx.AsyncClient(base_url=gate.base, timeout=20)
    r = await c.post("/api/v1/auth/badge", json={"badge": badge, "station": station})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c, r.json()


async def picked_order(gate: Gate, order_id: str, lines: list[tuple[int, str, int]], codes: list[str]) -> None:
    """An order picked by p1 through the API the PDA page uses (`codes`: one scan per unit, in pick order)."""
    await gate.order(order_id, lines)
    c, _ = await badge_client(gate, "BADGE-P1")
    try:
        await gate.until(lambda: gate.service.floor.orders[order_id].state == "assigned")
        for i, code in enumerate(codes):
            r = await c.post("/api/v1/pda/scan", json={"action_id": f"pick-{order_id}-{i}", "text": code})
            assert r.json()["ok"], r.text
    finally:
        await c.aclose()
    assert gate.service.floor.orders[order_id].state == "picked"


async def password_client(gate: Gate, operator_id: str, password: str) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    c = httpx.AsyncClient(base_url=gate.base, timeout=20)
    r = await c.post("/api/v1/auth/login", json={"operator_id": operator_id, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c, r.json()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def password_login(page: Any, base: str, path: str, operator: str, password: str) -> None:
    """Open a password page (supervisor, technician) in English and log in through its form."""
    from playwright.async_api import expect

    await page.goto(base + path)
    await page.evaluate("localStorage.setItem('fg_lang', 'en')")
    await page.reload()
    await page.fill("#op", operator)
    await page.fill("#pw", password)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#work")).to_be_visible()


_ids = iter(range(1, 10**9))


def action_id() -> str:
    return f"test-action-{next(_ids):06d}"
