"""The hub link of a whole gateway over a real Mosquitto (through a TCP proxy where the connection must be
cut): commands are acked to the broker only after their effect and result are committed; the Last Will says
`offline` when the connection dies abruptly; telemetry and periodic snapshots carry what SPEC §1 says.
Nothing here measures time: the timeouts are only safety limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.clock import ManualClock, rfc3339
from gateway.contract import LastWill, Snapshot, Status, Telemetry
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.sync.mqtt import AsyncMqtt, Message, MqttSettings
from simulators.proxy import TcpProxy
from simulators.ptl import PtlSimulator
from tests.brokers import Broker
from tests.conftest import LOCATIONS, OPERATORS, SKUS, order, until
from tests.sync.conftest import gateway_config, running_gateway, running_hub

SAFETY_S = 60


def md_sync(sync_id: str = "md") -> dict[str, Any]:
    return {"mode": "replace", "sync_id": sync_id, "part": 1, "parts": 1, "skus": SKUS, "locations": LOCATIONS,
            "operators": OPERATORS}


async def test_command_is_acked_to_the_broker_only_after_its_effect_and_result_commit(
        tmp_path: Path, broker: Broker) -> None:
    """The journal's writer is held while a command waits to commit, and the connection dies meanwhile: the
    broker has no ack for it, so it delivers it again on the next connection; the command is applied once
    and both deliveries get the same answer."""
    async with TcpProxy("127.0.0.1", broker.port) as proxy:
        cfg = gateway_config(tmp_path, broker, mqtt={"port": proxy.port})
        async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
            assert app.link is not None and app.journal is not None
            link, journal = app.link, app.journal
            md = await hub.command("masterdata.sync", md_sync())
            await hub.wait_result(md["cmd_id"], count=2)
            deliveries: list[Message] = []
            inner = link.mqtt.on_message

            def tap(msg: Message) -> None:
                if msg.topic.endswith("/cmd/order.upsert"):
                    deliveries.append(msg)
                inner(msg)
            link.mqtt.on_message = tap
            gate = asyncio.Event()

            async def hold(db: aiosqlite.Connection) -> None:
                await gate.wait()
            holder = asyncio.create_task(journal.run_job(hold), name="test-hold-journal")
            try:
                seq = journal.last_seq
                hub.send("order.upsert", {"order": order("O-1")}, cmd_id="up-1")
                await until(lambda: len(deliveries) == 1, "the command at the gateway")
                connects = link.mqtt.connects
                proxy.set_mode("drop")
                await until(lambda: not link.mqtt.connected.is_set(), "the gateway to lose the connection")
                proxy.set_mode("pass")
                await until(lambda: link.mqtt.connects > connects, "the reconnect")
                # Not acked while its commit was pending: the broker delivers it again.
                await until(lambda: len(deliveries) == 2, "the broker to deliver the command again")
                assert deliveries[0].payload == deliveries[1].payload
                assert deliveries[1].connection > deliveries[0].connection
                assert "up-1" not in hub.results  # nothing answered before the commit
            finally:
                gate.set()
                await holder
            await hub.wait_until(lambda: len(hub.results.get("up-1", [])) >= 2, SAFETY_S)
            first, second = hub.results["up-1"][:2]
            assert first["ok"] and first == second  # the second delivery answered from the stored result
            await journal.barrier()
            events = await journal.read_events(seq + 1)
            assert [(e.type, json.loads(e.body)["order_id"]) for e in events
                    if not e.type.startswith("device.")] == [("order.received", "O-1")]  # not the broker's
            assert app.service is not None and set(app.service.floor.orders) == {"O-1"}
            # The gateway goes on taking commands (the redelivered one was acked, so it does not block the queue).
            r = await hub.command("order.upsert", {"order": order("O-2")})
            assert r["ok"]


async def test_last_will_says_offline_when_the_connection_dies(tmp_path: Path, broker: Broker) -> None:
    async with TcpProxy("127.0.0.1", broker.port) as proxy:
        cfg = gateway_config(tmp_path, broker, mqtt={"port": proxy.port})
        async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
            assert app.journal is not None and app.link is not None
            await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "online", SAFETY_S)
            assert hub.status is not None
            Status.model_validate(hub.status)
            # The gateway's connection ends without a DISCONNECT (a cable pulled, a process killed).
            proxy.set_mode("drop")
            await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "offline", SAFETY_S)
            will = hub.status
            assert will == {"state": "offline", "site": "dc1", "gateway": "zone-a", "journal": app.journal.journal_id}
            LastWill.model_validate(will)
            # Retained: a hub that subscribes now sees it too.
            seen: list[Message] = []
            late = AsyncMqtt(MqttSettings(port=broker.port, client_id="late-hub", clean_session=True),
                             subscriptions=[(f"{cfg.topic_prefix}/status", 1)], name="late-hub")
            late.on_message = seen.append
            task = asyncio.create_task(late.run(), name="late-hub")
            try:
                await until(lambda: bool(seen), "the retained status")
                assert seen[0].retain and json.loads(seen[0].payload) == will
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            # Back: online again.
            proxy.set_mode("pass")
            await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "online", SAFETY_S)


async def test_telemetry_payload_follows_the_spec(tmp_path: Path, broker: Broker) -> None:
    async with PtlSimulator(range(1, 4), transport="tcp") as ptl:
        cfg = gateway_config(tmp_path, broker, sync={"telemetry_interval_s": 1},
                             ptl={"buses": [{"id": "bus-a", "transport": "tcp", "host": "127.0.0.1",
                                             "port": ptl.port}]},
                             scanners=[{"id": "scan-1", "port": str(tmp_path / "no-such-tty"), "station": "pick"}])
        async with running_gateway(cfg) as app, running_hub(broker.port) as hub:
            assert app.service is not None and app.journal is not None and app.link is not None
            service, journal, publisher = app.service, app.journal, app.link.publisher
            md = await hub.command("masterdata.sync", md_sync())
            await hub.wait_result(md["cmd_id"], count=2)
            at = service.at()
            await service.execute(lambda f, c: handle_scan(f, c, ScanInput("scan-1", "pick", "BADGE-P1",
                                                                          raw="BADGE-P1"), at))
            await journal.barrier()
            last = journal.last_seq  # device events may still follow
            await until(lambda: publisher.hub_acked >= last, "the hub's ack")

            def settled(t: dict[str, Any]) -> bool:
                ids = {d.get("device_id") for d in t.get("devices", [])}
                sync = t.get("sync", {})
                return ({"bus-a", "scan-1"} <= ids and any(p.get("operator_id") == "p1" for p in t.get("pickers", []))
                        and sync.get("pending") == 0 and sync.get("acked_seq", 0) >= last)
            await hub.wait_until(lambda: any(settled(t) for t in hub.telemetry), SAFETY_S)
            t = next(t for t in hub.telemetry if settled(t))
            assert t["sync"]["acked_seq"] <= journal.last_seq
            Telemetry.model_validate(t)
            assert set(t) == {"ts", "devices", "pickers", "sync"}
            for d in t["devices"]:
                assert set(d) == {"device_id", "kind", "online", "errors"}, d
                assert d["kind"] in ("scanner", "ptl", "scale", "bus", "broker", "printer")
                assert isinstance(d["online"], bool) and isinstance(d["errors"], int) and d["errors"] >= 0
            devices = {d["device_id"]: d for d in t["devices"]}
            assert devices["bus-a"]["kind"] == "bus"
            assert devices["scan-1"]["kind"] == "scanner" and devices["scan-1"]["online"] is False
            for p in t["pickers"]:
                assert set(p) == {"operator_id", "score", "breaker", "open_tasks"}, p
                assert 0 <= p["score"] <= 100 and isinstance(p["open_tasks"], int)
            assert [p["operator_id"] for p in t["pickers"]] == ["p1"]


async def test_snapshot_every_interval_on_the_injected_clock(tmp_path: Path, broker: Broker) -> None:
    clock = ManualClock()
    start = clock.now()
    cfg = gateway_config(tmp_path, broker, sync={"snapshot_interval_s": 300, "telemetry_interval_s": 10})
    async with running_gateway(cfg, clock) as app, running_hub(broker.port) as hub:
        assert app.journal is not None
        md = await hub.command("masterdata.sync", md_sync())
        await hub.wait_result(md["cmd_id"], count=2)
        for k in range(3):
            await hub.command("order.upsert", {"order": order(f"O-{k}")})
        await hub.command("order.cancel", {"order_id": "O-2", "reason": "test"})
        await app.journal.barrier()

        def telemetry_at(seconds: float) -> Callable[[], bool]:
            ts = rfc3339(start + timedelta(seconds=seconds))
            return lambda: any(t["ts"] == ts for t in hub.telemetry)

        # One second short of the interval: the periodic task has run (telemetry went out), no snapshot.
        clock.advance(299)
        await hub.wait_until(telemetry_at(299), SAFETY_S)
        clock.advance(1)
        await hub.wait_until(lambda: len(hub.snapshots) >= 1, SAFETY_S)
        # A snapshot at 299 s would have come before this one.
        assert [s["ts"] for s in hub.snapshots] == [rfc3339(start + timedelta(seconds=300))]
        snap = hub.snapshots[0]
        Snapshot.model_validate(snap)
        assert snap["journal"] == app.journal.journal_id and snap["last_seq"] == app.journal.last_seq
        assert {o["order_id"]: o["state"] for o in snap["orders"]} == {"O-0": "received", "O-1": "received"}
        assert all(o["updated_seq"] > 0 for o in snap["orders"])
        # And again one interval later.
        clock.advance(299)
        await hub.wait_until(telemetry_at(599), SAFETY_S)
        clock.advance(1)
        await hub.wait_until(lambda: len(hub.snapshots) >= 2, SAFETY_S)
        assert [s["ts"] for s in hub.snapshots] == [rfc3339(start + timedelta(seconds=s)) for s in (300, 600)]


async def test_the_status_is_published_again_a_moment_after_each_connect(tmp_path: Path, broker: Broker) -> None:
    """On a reconnect the client sends again what the broker never acknowledged, older statuses among them,
    after the new one: the retained status went back to an older last_seq (a broker stalled a minute). It is
    published once more STATUS_AGAIN_S after the connect, on the injected clock."""
    from gateway.sync.link import STATUS_AGAIN_S

    clock = ManualClock()
    cfg = gateway_config(tmp_path, broker, sync={"telemetry_interval_s": 3600})
    async with running_gateway(cfg, clock) as app:
        link = app.link
        assert link is not None
        await asyncio.wait_for(link.mqtt.connected.wait(), SAFETY_S)
        published: list[int] = []
        real = link.publish_status

        def counted() -> None:
            published.append(1)
            real()
        link.publish_status = counted  # type: ignore[method-assign]
        await asyncio.sleep(1.5)  # the periodic task runs: not yet
        assert published == []
        clock.advance(STATUS_AGAIN_S)
        await until(lambda: published == [1], "the status again", timeout=SAFETY_S)
        clock.advance(STATUS_AGAIN_S)
        await asyncio.sleep(1.5)
        assert published == [1]  # once per connect
