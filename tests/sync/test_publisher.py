"""The outbox publisher against a real Mosquitto, with a TCP proxy between them to cut, stall and restore the
connection: an event counts as taken by the broker only on its PUBACK; an event whose PUBACK did not come
before the connection died is published again and the in-flight window empties; a pruned range is stepped
over without a busy loop. Nothing here measures time: the timeouts are only safety limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal
from gateway.service import FloorService
from gateway.sync.mqtt import AsyncMqtt, MqttSettings
from gateway.sync.publisher import OutboxPublisher
from simulators.hub import HubSim
from simulators.proxy import TcpProxy
from tests.brokers import Broker
from tests.conftest import until
from tests.sync.conftest import running_hub

PREFIX = "floorgate/v1/dc1/zone-a"
HOUR = 3600.0
SAFETY_S = 60


def burst_event(i: int) -> Callable[[Floor, Change], None]:
    def op(floor: Floor, change: Change) -> None:
        change.emit("test.burst", {"i": i})
    return op


async def emit(service: FloorService, n: int) -> None:
    for i in range(n):
        await service.execute(burst_event(i))


@contextlib.asynccontextmanager
async def publishing(journal: Journal, port: int, window: int = 20) -> AsyncIterator[OutboxPublisher]:
    """The gateway's MQTT client (fixed client id, persistent session) and its outbox publisher."""
    mqtt = AsyncMqtt(MqttSettings(port=port, client_id="floorgate-dc1-zone-a", inflight=window, clean_session=False,
                                  manual_ack=True), name="gw")
    pub = OutboxPublisher(journal, mqtt, PREFIX, window)
    await pub.start()
    tasks = [asyncio.create_task(mqtt.run(), name="gw-mqtt"), asyncio.create_task(pub.run(), name="gw-publisher")]
    try:
        async with asyncio.timeout(SAFETY_S):
            await mqtt.connected.wait()
        yield pub
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def held(hub: HubSim, journal: Journal) -> list[int]:
    view = hub.journals.get(journal.journal_id)
    return sorted(view.events) if view else []


def quiet_hub(port: int) -> Any:
    """A hub that only listens: no replays and no acks, so whatever it holds the publisher sent by itself."""
    return running_hub(port, auto_replay=False, auto_ack=False)


async def test_event_counts_as_broker_acked_only_on_its_puback(broker: Broker, service: FloorService,
                                                              journal: Journal) -> None:
    async with TcpProxy("127.0.0.1", broker.port) as proxy, quiet_hub(broker.port) as hub, \
            publishing(journal, proxy.port, window=50) as pub:
        await emit(service, 10)
        await until(lambda: pub.broker_acked == 10, "the first PUBACKs")
        # A PUBACK may come before the broker has delivered the event to the hub: wait for those as well.
        await hub.wait_until(lambda: hub.holds(10, journal.journal_id), SAFETY_S)
        await pub.save_progress()
        # The link stalls: the client still believes it is connected and hands events to paho, no PUBACK comes.
        proxy.set_mode("blackhole")
        await emit(service, 20)
        await until(lambda: pub.published == 30, "events handed to the MQTT client")
        assert pub.mqtt.connected.is_set() and pub.in_flight == 20
        assert pub.broker_acked == 10  # queued in paho, written to the socket: not taken by the broker
        await pub.save_progress()
        assert (await journal.read_meta())["broker_acked_seq"] == "10"
        assert max(held(hub, journal)) == 10
        # The link heals: the broker takes them, its PUBACKs move the watermark.
        proxy.set_mode("pass")
        await until(lambda: pub.broker_acked == 30, "the PUBACKs of the stalled events")
        assert pub.in_flight == 0
        await pub.save_progress()
        assert (await journal.read_meta())["broker_acked_seq"] == "30"
        await hub.wait_until(lambda: hub.holds(30, journal.journal_id), SAFETY_S)


@pytest.mark.parametrize("client_lost_them", [False, True], ids=["client-resends", "client-lost-them"])
async def test_events_without_puback_are_published_again_after_the_connection_died(
        broker: Broker, service: FloorService, journal: Journal, client_lost_them: bool) -> None:
    """The window fills with events whose PUBACK never comes, then the connection dies. After the reconnect
    they are published again (by paho from its session, or, when paho no longer holds them, by the
    publisher), the window empties and the events behind them flow."""
    window = 20
    async with TcpProxy("127.0.0.1", broker.port) as proxy, quiet_hub(broker.port) as hub, \
            publishing(journal, proxy.port, window=window) as pub:
        mqtt = pub.mqtt
        await emit(service, 10)
        await until(lambda: pub.broker_acked == 10, "the first PUBACKs")
        proxy.set_mode("blackhole")
        await emit(service, 40)
        await until(lambda: pub.in_flight == window, "a full window")
        assert pub.published == 10 + window and pub.broker_acked == 10
        # The connection dies; what the proxy held for the broker is lost with it.
        connects = mqtt.connects
        proxy.set_mode("drop")
        await until(lambda: not mqtt.connected.is_set(), "the client to see the connection gone")
        if client_lost_them:
            mqtt.client.drop_out_messages()  # paho forgets its unacknowledged messages (public paho API)
        proxy.set_mode("pass")
        await until(lambda: mqtt.connects > connects, "the reconnect")
        await until(lambda: pub.broker_acked == 50, "every event acked by the broker")
        assert pub.in_flight == 0 and pub._acked_above == set()
        assert pub.resent == (window if client_lost_them else 0)
        await hub.wait_until(lambda: hub.holds(50, journal.journal_id), SAFETY_S)
        assert hub.conflicts == [] and hub.replays_sent == 0
        # And the window keeps working.
        await emit(service, 5)
        await until(lambda: pub.broker_acked == 55, "later events acked")
        assert pub.in_flight == 0


@pytest.mark.parametrize("pruned_to", [40, 100], ids=["head-pruned", "all-pruned"])
async def test_pruned_range_is_stepped_over_without_spinning(broker: Broker, service: FloorService, journal: Journal,
                                                             clock: ManualClock, pruned_to: int) -> None:
    """Events 1..pruned_to are gone from the journal while the publisher still stands before them (here they
    were pruned behind its back: nothing in the journal's bookkeeping says they were published)."""
    await emit(service, 100)
    clock.advance(73 * HOUR)
    assert await service.prune_events(pruned_to) == pruned_to
    async with quiet_hub(broker.port) as hub, publishing(journal, broker.port, window=50) as pub:
        assert pub.next_seq == 1
        await until(lambda: pub.next_seq == 101, "the publisher to pass the stored events")
        await until(lambda: pub.broker_acked == 100, "the watermark to pass the pruned range")
        assert pub.skipped == pruned_to and pub.published == 100 - pruned_to
        assert pub._acked_above == set()
        turns = pub.iterations
        assert turns < 40, turns  # a busy loop makes thousands of turns
        # It waits for work rather than turning: an event committed now is published.
        await emit(service, 1)
        await until(lambda: pub.broker_acked == 101, "the new event acked")
        await hub.wait_until(lambda: 101 in held(hub, journal), SAFETY_S)
        assert pub.iterations - turns < 10, pub.iterations - turns
        assert held(hub, journal) == list(range(pruned_to + 1, 102))


async def test_restart_after_prune_resumes_behind_what_the_hub_holds(broker: Broker, service: FloorService,
                                                                     journal: Journal, clock: ManualClock) -> None:
    """The broker watermark is saved now and then: a crash may leave it behind what the hub acked and the
    gateway pruned. After the restart publishing resumes behind the hub's ack, not in the pruned range."""
    await emit(service, 100)
    await journal.set_meta("hub_acked_seq", "100")
    await journal.set_meta("broker_acked_seq", "20")  # the last save before the crash
    clock.advance(73 * HOUR)
    assert await service.prune_events(100) == 100
    async with quiet_hub(broker.port) as hub, publishing(journal, broker.port) as pub:
        assert pub.broker_acked == 100 and pub.next_seq == 101
        await pub.save_progress()
        assert (await journal.read_meta())["broker_acked_seq"] == "100"
        await emit(service, 3)
        await until(lambda: pub.broker_acked == 103, "the new events acked")
        await hub.wait_until(lambda: held(hub, journal) == [101, 102, 103], SAFETY_S)
        assert pub.skipped == 0 and pub.published == 3
