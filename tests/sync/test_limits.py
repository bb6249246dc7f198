"""What the broker will not take, and a broker that keeps closing the connection.

A message over the broker's message limit got the connection closed, and paho sent it again at every
reconnect: the hub link went down twice a second for good, and no later result or event went out (a bulk set's
`done` result listing 5,000 rejected items, or the snapshot of many open orders). A second gateway with the
same site and gateway took the one client id from this one ten times a second; both journals filled with broker
offline/online events, and nothing said why."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.domain.change import Change
from gateway.domain.floor import Floor
from tests.brokers import Broker
from tests.conftest import LOCATIONS, OPERATORS, SKUS, order
from tests.sync.conftest import gateway_config, running_gateway, running_hub

MASTERDATA = {"mode": "replace", "sync_id": "md", "part": 1, "parts": 1, "skus": SKUS, "locations": LOCATIONS,
              "operators": OPERATORS}


async def until(pred: object, what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_a_broker_with_a_lower_limit_than_configured_keeps_the_link(tmp_path: Path) -> None:
    """The broker's limit (300 KB) is below mqtt.max_payload_bytes (16 MB by default): the result of 5,000
    rejected items (about 500 KB) got the connection closed, again and again. Now the gateway learns the limit
    from the closed connection, says so in an alarm, sends the result with as many of its rejected items as
    fit, and everything after it goes on."""
    broker = Broker(tmp_path / "broker", extra="max_packet_size 300000").start()
    try:
        cfg = gateway_config(tmp_path, broker)
        async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
            assert app.service is not None and app.link is not None
            assert (await hub.command("masterdata.sync", MASTERDATA))["ok"]
            bad = [{"sku": f"BAD-{i}", "gtins": ["04006381333931"]} for i in range(5000)]  # SKU-1's GTIN
            cid = hub.send("masterdata.sync", {"mode": "merge", "sync_id": "bad", "part": 1, "parts": 1,
                                               "skus": bad})
            done = await hub.wait_result(cid, timeout=60, count=2)
            assert done["status"] == "done" and done["rejected_truncated"] is True
            assert done["rejected_count"] == 5000 and 0 < len(done["rejected"]) < 5000
            assert "mqtt_message_limit" in app.service.floor.alarms
            later = await hub.command("order.upsert", {"order": order("AFTER-1")}, timeout=30)
            assert later["ok"]
            assert app.link.mqtt.max_payload < 300_000
    finally:
        broker.stop()


async def test_what_is_over_the_configured_limit_is_held_back_shortened_or_left_out(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        cfg = gateway_config(tmp_path, broker, mqtt={"max_payload_bytes": 2000})
        async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
            assert app.service is not None and app.link is not None and app.journal is not None
            link = app.link

            def big(floor: Floor, change: Change) -> None:
                change.emit("test.big", {"pad": "x" * 5000})

            def small(floor: Floor, change: Change) -> None:
                change.emit("test.small", {"i": 1})
            await app.service.execute(small)
            await app.service.execute(big)
            held = app.journal.last_seq
            await app.service.execute(small)
            last = app.journal.last_seq
            # The event after it goes out: the big one is held back (in the journal), with an alarm.
            journal = app.journal.journal_id
            await hub.wait_until(lambda: journal in hub.journals and last in hub.journals[journal].events, 30)
            assert held not in hub.journals[journal].events
            assert held in link.publisher.held_back
            await until(lambda: "event_too_large" in app.service.floor.alarms, "the alarm")
            assert f"seq {held}" in app.service.floor.alarms["event_too_large"].message
            # A replay of it is not claimed as sent (it was answered ok, count 1, and never came): counted out, named.
            res = await hub.command("sync.replay", {"journal": journal, "from_seq": held, "to_seq": held})
            assert res["ok"] and res["count"] == 0 and res["held_back"] == [held], res
            # A snapshot over the limit is not sent in part: it is left out, and an alarm says so.
            assert (await hub.command("masterdata.sync", MASTERDATA))["ok"]
            for k in range(40):
                assert (await hub.command("order.upsert", {"order": order(f"O-{k}")}))["ok"]
            await hub.command("sync.snapshot", {})
            await until(lambda: "snapshot_too_large" in app.service.floor.alarms, "the snapshot alarm")
            assert link.mqtt.connected.is_set()
    finally:
        broker.stop()


async def test_a_twin_gateway_is_named_and_its_reconnects_slow_down(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        one = gateway_config(tmp_path / "one", broker)
        two = gateway_config(tmp_path / "two", broker)
        async with running_gateway(one) as a:
            assert a.service is not None and a.link is not None
            await asyncio.wait_for(a.link.mqtt.connected.wait(), 30)
            async with running_gateway(two) as b:
                assert b.service is not None and b.link is not None and b.journal is not None
                apps = (a, b)
                # The twins share one session (one client id): whichever takes it next finds the other's status
                # waiting there, so at least one of them names the other.
                await until(lambda: any("twin_gateway" in x.service.floor.alarms for x in apps),  # type: ignore[union-attr]
                            "the twin alarm", timeout=60)
                named = [x for x in apps if "twin_gateway" in x.service.floor.alarms]  # type: ignore[union-attr]
                other = {id(a): b, id(b): a}[id(named[0])]
                assert other.journal is not None
                assert other.journal.journal_id in named[0].service.floor.alarms["twin_gateway"].message  # type: ignore[union-attr]
                await until(lambda: any("broker_flapping" in x.service.floor.alarms for x in apps),  # type: ignore[union-attr]
                            "the flapping alarm", timeout=60)
                connects = a.link.mqtt.connects + b.link.mqtt.connects
                await asyncio.sleep(5)  # reconnects slow down (before: ten a second each)
                assert a.link.mqtt.connects + b.link.mqtt.connects - connects < 20
                for x in apps:  # a broker closing the link within the grace is no outage: no flood of events
                    assert x.journal is not None
                    kinds = [e.type for e in await x.journal.read_events(1, limit=10_000)]
                    assert kinds.count("device.offline") <= 2, kinds
    finally:
        broker.stop()


def test_a_result_is_shortened_to_the_most_rejected_items_that_fit() -> None:
    from gateway.jsontext import dumps
    from gateway.sync.intake import shortened

    rejected = [{"list": "skus", "part": 1, "index": i, "reason": "GTIN 4006381333931 taken"} for i in range(1000)]
    result = {"cmd_id": "c1", "ok": True, "status": "done", "sync_id": "s", "applied": 0, "rejected": rejected}
    short = shortened(result, 10_000)
    assert len(dumps(short).encode()) <= 10_000
    longer = {**short, "rejected": rejected[:len(short["rejected"]) + 1]}
    assert len(dumps(longer).encode()) > 10_000  # the most that fit
    assert short["rejected_count"] == 1000 and short["rejected_truncated"] is True
    assert short["rejected"] == rejected[:len(short["rejected"])]
    assert shortened({"cmd_id": "c2", "ok": True}, 10) == {"cmd_id": "c2", "ok": True}


async def test_reconnects_slow_down_only_while_the_broker_keeps_closing_connections_it_took() -> None:
    from gateway.sync.mqtt import FLAP_AFTER, FLAP_MAX_S, AsyncMqtt, MqttSettings

    told: list[int] = []
    m = AsyncMqtt(MqttSettings(client_id="t", reconnect_min_s=0.05, reconnect_max_s=1.0))
    m.on_flapping.append(told.append)
    waits = [m._after_connection(0.01) for _ in range(FLAP_AFTER + 6)]
    assert waits[:FLAP_AFTER - 1] == [0.05] * (FLAP_AFTER - 1)  # a few short ones: a broker restarting
    assert waits[FLAP_AFTER - 1:] == sorted(waits[FLAP_AFTER - 1:]) and waits[-1] == FLAP_MAX_S
    assert told[0] == FLAP_AFTER and 0 not in told
    assert m._after_connection(60.0) == 0.05 and told[-1] == 0  # a connection that lasts: the end of it
    # (A broker that goes down refuses the next connect, which ends a run: tests/sync/test_delivery.py kills
    # the broker three times in a burst, and no alarm may come of it.)
