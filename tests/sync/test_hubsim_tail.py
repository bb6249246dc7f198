"""The hub simulator asks for a tail (`sync.replay` up to the announced `last_seq`) only once nothing has come for
`tail_grace_s` since the announcement: a gateway back from an outage announces its last_seq in its status just
before it drains, and a hub that asked at once (its grace counted from its last event, long ago) had every event
of the drain sent twice (bench.sync_drain: 4,000 of 50,000)."""

from __future__ import annotations

import asyncio
import json

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Broker
from tests.sync.conftest import running_hub

PREFIX = "floorgate/v1/dc1/zone-a"
JOURNAL = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def event(seq: int) -> bytes:
    return json.dumps({"v": 1, "journal": JOURNAL, "event_id": f"e-{seq}", "seq": seq, "type": "test.event",
                       "ts": "2026-12-07T12:00:00.000Z", "site": "dc1", "gateway": "zone-a", "data": {}}).encode()


async def test_an_announced_tail_that_then_arrives_is_not_asked_for(broker: Broker) -> None:
    gw = paho.Client(CallbackAPIVersion.VERSION2, client_id="fake-gateway")
    gw.connect("127.0.0.1", broker.port)
    gw.loop_start()
    try:
        async with running_hub(broker.port, validate=False, tail_grace_s=30.0) as hub:
            status = {"state": "online", "journal": JOURNAL, "last_seq": 50, "ts": "2026-12-07T12:00:00.000Z"}
            gw.publish(f"{PREFIX}/status", json.dumps(status), qos=1).wait_for_publish(10)
            await hub.wait_until(lambda: hub.current == JOURNAL, 30)
            await asyncio.sleep(0.5)  # several turns of the hub's upkeep (every 0.1 s) with the tail announced
            assert hub.replays_sent == 0, "asked for the tail at once"
            for seq in range(1, 51):
                gw.publish(f"{PREFIX}/events/test.event", event(seq), qos=1)
            await hub.wait_until(lambda: hub.holds(50, JOURNAL), 30)
            assert hub.replays_sent == 0 and hub.duplicates == 0
    finally:
        gw.loop_stop()
        gw.disconnect()


def test_a_higher_announcement_restarts_the_grace_of_a_tail_already_open() -> None:
    """A tail left open from before an outage (a status slightly ahead of the events in flight when the broker
    died) must not make the hub ask at once when the gateway, back, announces its whole backlog."""
    from simulators.hub.hub import JournalView

    view = JournalView(JOURNAL)
    view.announce(10, now=100.0)
    view.max_seen = 8  # two events of that tail never came
    view.announce(5_000, now=400.0)
    assert (view.announced, view.tail_at) == (5_000, 400.0)
    view.announce(4_000, now=500.0)  # an older status, redelivered: changes nothing
    assert (view.announced, view.tail_at) == (5_000, 400.0)
