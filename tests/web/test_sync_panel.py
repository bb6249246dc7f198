"""The supervisor's "Sync to hub" panel on a gateway without a hub link (`floorgate demo --no-broker`): the
backlog is still counted, from the journal's last seq and the hub's ack as stored in the journal, in the
API's snapshot and on the page in headless Chromium (it used to show "—" without a link)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.web.conftest import SUPERVISOR_PW, chromium, gateway, password_client, password_login, web_config

pytestmark = pytest.mark.timeout(120)
expect.set_options(timeout=20_000)  # a safety limit on a shared machine, not a timing assertion


def _store_hub_ack(db: Path, seq: int) -> None:
    """What the hub link stores on a `sync.ack` (meta `hub_acked_seq`), written while the gateway is stopped."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('hub_acked_seq', ?)", (str(seq),))
    finally:
        conn.close()


async def test_sync_backlog_is_shown_without_a_hub_link(tmp_path: Path) -> None:
    cfg = web_config(tmp_path)
    async with gateway(cfg) as gate:  # no MQTT link at all
        assert gate.app.link is None
        for n in range(3):
            await gate.order(f"O-{n}", [(1, "SKU-1", 1)])
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            sync = (await s.get("/api/v1/supervisor/snapshot")).json()["sync"]
            last = gate.service.journal.last_seq
            assert last >= 3
            assert sync == {"last_seq": last, "connected": False, "pending": last, "acked_seq": 0}  # never acked
        finally:
            await s.aclose()

    acked = last - 2
    await asyncio.to_thread(_store_hub_ack, cfg.db_path, acked)
    async with gateway(cfg, load=False) as gate, chromium() as browser:  # the same journal, still no link
        assert gate.app.link is None
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await password_login(page, gate.base, "/supervisor", "s1", SUPERVISOR_PW)
        cells = page.locator("#sync > span")
        await expect(cells).to_have_count(10)
        last = gate.service.journal.last_seq
        pending = last - acked
        assert pending >= 2
        await expect(cells).to_have_text(["Connected to the broker", "\u2716 no",
                                          "Events not yet acked by the hub", str(pending),
                                          "Acked up to", str(acked),
                                          "Last event", str(last),
                                          "Storage", "\u2714 ok"])
        s, _ = await password_client(gate, "s1", SUPERVISOR_PW)
        try:
            for path in ("/api/v1/supervisor/snapshot", "/api/v1/technician/devices"):
                sync = (await s.get(path)).json()["sync"]
                assert sync == {"last_seq": last, "connected": False, "pending": pending, "acked_seq": acked}, path
        finally:
            await s.aclose()
