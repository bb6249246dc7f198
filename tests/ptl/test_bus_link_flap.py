"""A PTL TCP gateway that accepts the connection and then drops it (a serial server that is busy with another
client, a converter whose RS-485 side is down): every turn of the bus loop was one `device.online` and one
`device.offline` of kind bus in the journal (and to the hub), about 19 a second, with no backoff, because a
successful TCP connect counted as the link being up. The link is up once a transaction goes through; until
then the outage goes on, told once, with the growing wait between tries. (Found by a review of the change.)"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from gateway.app import App
from gateway.clock import SystemClock
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from tests.conftest import LOCATIONS, OPERATORS, SKUS, make_config


async def test_a_link_that_drops_every_connection_is_one_outage(tmp_path: Path) -> None:
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()  # accept, then drop: the link is never usable

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = {"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": port, "poll_ms": 20, "timeout_ms": 100}
    cfg = make_config(tmp_path, ptl={"buses": [bus]})
    app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
    task = asyncio.create_task(app.run(install_signals=False))
    try:
        async with asyncio.timeout(20):
            await app.ready.wait()
        assert app.service is not None
        c = COMMANDS["masterdata.sync"].model_validate({"cmd_id": "m1", "mode": "replace", "sync_id": "m", "part": 1,
                                                        "parts": 1, "skus": SKUS, "locations": LOCATIONS,
                                                        "operators": OPERATORS})
        at = app.service.at()
        r = await app.service.execute_command("masterdata.sync", "m1", lambda f, ch: apply_command(f, ch, c, at))
        assert r["ok"], r
        await asyncio.sleep(3.0)
        assert app.service is not None
        await app.service.journal.barrier()
        conn = sqlite3.connect(app.service.journal.path)
        rows = [json.loads(b) for (b,) in conn.execute("SELECT body FROM events ORDER BY seq")]
        conn.close()
        bus_events = [r["type"] for r in rows if r["type"].startswith("device.")
                      and r["data"].get("device_id") == "bus-a"]
        # The link never carried one transaction: it is down, and that is one change (at most a few events).
        assert bus_events == ["device.offline"], f"{len(bus_events)} bus events in 3 s: {bus_events[:8]}"
        assert accepted >= 1  # it did connect, and was not taken for up
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)
        server.close()
