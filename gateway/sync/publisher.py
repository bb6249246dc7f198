"""The outbox publisher: every committed event goes to the broker, first in `seq` order, QoS 1.

An event counts as taken by the broker only on its PUBACK (never on "queued in the client"). The hub's
`sync.ack` is the end-to-end confirmation; until then, and for the retention after, events stay in the
journal and any range can be published again (`sync.replay`).

The number of unacknowledged publishes is bounded (`mqtt.inflight`), so a backlog of 100,000 events after
an outage flows out at the broker's pace without piling up in paho's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from gateway.journal import Journal, StoredEvent
from gateway.sync.mqtt import AsyncMqtt

log = logging.getLogger("floorgate.publisher")

CACHE_MAX = 20_000  # recent events kept in memory so a live gateway never reads back what it just wrote
READ_CHUNK = 1000


class OutboxPublisher:
    def __init__(self, journal: Journal, mqtt: AsyncMqtt, prefix: str, window: int) -> None:
        self.journal = journal
        self.mqtt = mqtt
        self.prefix = prefix
        self.window = window
        self.next_seq = 1
        self.broker_acked = 0  # every seq <= this has had its PUBACK
        self.hub_acked = 0
        self.published = 0
        self.republished = 0
        self._acked_above: set[int] = set()
        self._inflight: dict[int, int] = {}  # mid -> seq (negative seq: a replay)
        self._cache: list[StoredEvent] = []
        self._cache_first = 0
        self._replays: deque[tuple[int, int]] = deque()
        self._wake = asyncio.Event()
        self._saved_broker_acked = 0
        journal.on_commit(self._on_commit)
        mqtt.on_puback = self._on_puback

    async def start(self) -> None:
        meta = await self.journal.read_meta()
        self.broker_acked = min(int(meta.get("broker_acked_seq", "0")), self.journal.last_seq)
        self.hub_acked = int(meta.get("hub_acked_seq", "0"))
        self._saved_broker_acked = self.broker_acked
        self.next_seq = max(self.broker_acked + 1, self.journal.start_seq)

    @property
    def pending(self) -> int:
        """Events the hub has not confirmed yet."""
        return max(self.journal.last_seq - self.hub_acked, 0)

    # -- inputs ---------------------------------------------------------------------------------------

    def _on_commit(self, events: list[StoredEvent]) -> None:
        if not events:
            return
        if not self._cache or events[0].seq != self._cache[-1].seq + 1:
            self._cache = list(events)
            self._cache_first = events[0].seq
        else:
            self._cache.extend(events)
            if len(self._cache) > 2 * CACHE_MAX:
                drop = len(self._cache) - CACHE_MAX
                del self._cache[:drop]
                self._cache_first += drop
        self._wake.set()

    def _on_puback(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return  # a result or status message, not an event
        self._wake.set()
        if seq < 0:
            return
        if seq == self.broker_acked + 1:
            self.broker_acked = seq
            above = self._acked_above
            while above and self.broker_acked + 1 in above:
                above.remove(self.broker_acked + 1)
                self.broker_acked += 1
        elif seq > self.broker_acked:
            self._acked_above.add(seq)

    def replay(self, from_seq: int, to_seq: int) -> None:
        self._replays.append((from_seq, to_seq))
        self._wake.set()

    def hub_ack(self, up_to_seq: int) -> bool:
        if up_to_seq <= self.hub_acked:
            return False
        self.hub_acked = min(up_to_seq, self.journal.last_seq)
        return True

    # -- the loop -------------------------------------------------------------------------------------

    def _from_cache(self, seq: int, n: int) -> list[StoredEvent]:
        i = seq - self._cache_first
        if not self._cache or i < 0 or i >= len(self._cache):
            return []
        return self._cache[i:i + n]

    def _publish(self, ev: StoredEvent, replay: bool) -> bool:
        mid = self.mqtt.publish(f"{self.prefix}/events/{ev.type}", ev.body, qos=1)
        if mid is None:
            return False
        self._inflight[mid] = -ev.seq if replay else ev.seq
        return True

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if not self.mqtt.connected.is_set():
                await self.mqtt.connected.wait()
                continue
            room = self.window - len(self._inflight)
            if room <= 0:
                await self._wake.wait()
                continue
            if self.next_seq <= self.journal.last_seq:
                batch = self._from_cache(self.next_seq, room)
                if not batch:
                    batch = await self.journal.read_events(self.next_seq, self.journal.last_seq, min(room, READ_CHUNK))
                for ev in batch:
                    if not self._publish(ev, replay=False):
                        break
                    self.next_seq = ev.seq + 1
                    self.published += 1
                await asyncio.sleep(0)  # let commands and PUBACKs in between chunks
                continue
            if self._replays:
                await self._replay_chunk(room)
                continue
            await self._wake.wait()

    async def _replay_chunk(self, room: int) -> None:
        lo, hi = self._replays[0]
        batch = await self.journal.read_events(lo, hi, min(room, READ_CHUNK))
        sent = 0
        for ev in batch:
            if not self._publish(ev, replay=True):
                break
            sent += 1
            self.republished += 1
        if sent == len(batch) and (not batch or batch[-1].seq >= hi or len(batch) < min(room, READ_CHUNK)):
            self._replays.popleft()
        elif batch and sent:
            self._replays[0] = (batch[sent - 1].seq + 1, hi)
        await asyncio.sleep(0)

    async def save_progress(self) -> None:
        """Persist the PUBACK watermark now and then: after a restart, publishing resumes there."""
        if self.broker_acked != self._saved_broker_acked:
            acked = self.broker_acked
            await self.journal.set_meta("broker_acked_seq", str(acked))
            self._saved_broker_acked = acked
