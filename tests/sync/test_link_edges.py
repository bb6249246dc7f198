"""The hub link's own troubles, after a restart and at the edges: a too-large message queued while the link was
down, a flapping run that ends while the connection lasts, a twin alarm stored before a restart, and
acknowledgements in the order messages came (review of the link's limits)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import gateway.sync.link as link_mod
from gateway.sync.mqtt import SHORT_S, AsyncMqtt, Message, MqttSettings
from tests.brokers import Broker
from tests.sync.conftest import gateway_config, running_gateway


async def test_flapping_ends_once_a_connection_lasts_not_when_it_ends(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    told: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        s = MqttSettings(host="127.0.0.1", port=broker.port, client_id="twin-id", reconnect_min_s=0.05,
                         reconnect_max_s=1.0)
        one, two = AsyncMqtt(s, name="one"), AsyncMqtt(s, name="two")
        tasks = [asyncio.create_task(one.run()), asyncio.create_task(two.run())]
        async with asyncio.timeout(60):
            while not (one.flapping or two.flapping):
                await asyncio.sleep(0.01)
        a, i_twin = (one, 1) if one.flapping else (two, 0)
        a.on_flapping.append(told.append)
        tasks[i_twin].cancel()  # the twin is stopped
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[i_twin]
        async with asyncio.timeout(60):
            while not a.connected.is_set():
                await asyncio.sleep(0.05)
        await asyncio.sleep(3 * SHORT_S)  # a connection that lasts
        assert a.connected.is_set()
        # the broker_flapping alarm (HubLink._flapping) is cleared only by on_flapping(0)
        assert not a.flapping and 0 in told, (a.flapping, told)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        broker.stop()


async def test_a_too_large_message_queued_while_disconnected_is_learned_too(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", extra="max_packet_size 300000").start()
    m = AsyncMqtt(MqttSettings(port=broker.port, client_id="gw", reconnect_min_s=0.05, reconnect_max_s=1.0),
                  name="gw")
    task = asyncio.create_task(m.run())
    try:
        await asyncio.wait_for(m.connected.wait(), 30)
        broker.kill()  # the link goes down ...
        async with asyncio.timeout(30):
            while m.connected.is_set():
                await asyncio.sleep(0.05)
        m.publish("floorgate/v1/dc1/zone-a/cmd_result", b"x" * 400_000, qos=1)  # ... a bulk set's result meanwhile
        broker.start()
        await asyncio.sleep(12)
        # paho sends it at every reconnect and the broker closes each connection: the limit is never learned
        assert m.max_payload < 400_000, (m.max_payload, m.connects, m.short_run)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def _until(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.05)
    return bool(pred())


async def test_the_twin_alarm_clears_after_a_restart_once_no_twin_is_seen(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link_mod, "TWIN_CLEAR_S", 2.0)
    broker = Broker(tmp_path / "broker").start()
    other = AsyncMqtt(MqttSettings(port=broker.port, client_id="the-twin"), name="twin")
    ot = asyncio.create_task(other.run())
    try:
        cfg = gateway_config(tmp_path, broker)
        await asyncio.wait_for(other.connected.wait(), 30)
        async with running_gateway(cfg) as app:
            assert app.service is not None and app.link is not None
            await asyncio.wait_for(app.link.mqtt.connected.wait(), 30)
            await asyncio.sleep(0.5)
            ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            other.publish(app.link.status_topic, json.dumps({
                "state": "online", "site": cfg.site, "gateway": cfg.gateway, "version": "x",
                "journal": "11111111-2222-3333-4444-555555555555", "ts": ts, "last_seq": 1}), qos=1)
            assert await _until(lambda: "twin_gateway" in app.service.floor.alarms, 10)
        # The twin is gone; the gateway restarts (e.g. the technician stopped both, started this one).
        async with running_gateway(cfg) as app:
            assert app.service is not None
            assert "twin_gateway" in app.service.floor.alarms  # persisted
            cleared = await _until(lambda: "twin_gateway" not in app.service.floor.alarms, 8)  # 4 x TWIN_CLEAR_S
            assert cleared, "the twin alarm from before the restart never clears"
    finally:
        ot.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ot
        broker.stop()


async def test_pubacks_go_in_the_order_the_publishes_came(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        cfg = gateway_config(tmp_path, broker)
        async with running_gateway(cfg) as app:
            link = app.link
            assert link is not None
            await asyncio.wait_for(link.mqtt.connected.wait(), 30)
            acked: list[int] = []

            def ack(msg: Message) -> bool:
                acked.append(msg.mid)
                return True
            link.mqtt.ack = ack  # type: ignore[method-assign]
            conn = link.mqtt.connection
            cmd = json.dumps({"cmd_id": "c-1", "order_id": "NOPE", "reason": "x"}).encode()
            link.mqtt.on_message(Message(f"{link.prefix}/cmd/order.cancel", cmd, 1, 101, False, conn))
            status = json.dumps({"state": "online", "journal": link.journal.journal_id}).encode()
            link.mqtt.on_message(Message(link.status_topic, status, 1, 102, False, conn))
            async with asyncio.timeout(10):
                while not {101, 102} <= set(acked):
                    await asyncio.sleep(0.02)
            assert [m for m in acked if m in (101, 102)] == [101, 102], acked
    finally:
        broker.stop()
