"""The outbox publisher: every committed event goes to the broker, first in `seq` order, QoS 1.

An event counts as taken by the broker only on its PUBACK (never on "queued in the client"). The hub's
`sync.ack` is the end-to-end confirmation; until then, and for the retention after, events stay in the
journal and any range can be published again (`sync.replay`).

The number of unacknowledged publishes is bounded (`mqtt.inflight`), so a backlog of 100,000 events after
an outage flows out at the broker's pace without piling up in paho's memory.

The in-flight window is kept honest across connections: paho keeps an unacknowledged QoS 1 message and
sends it again (same mid) when the connection returns, so its PUBACK still comes; on every connect, any
in-flight event paho no longer holds (its PUBACK can never come) leaves the window and is published again.

An event over the broker's message limit (`TooLarge`) is held back: it counts as past the broker, so the
events after it go on (published, it would only get the connection closed, and the link stopped for all of
them), and `on_held_back` raises the alarm; it stays in the journal, and once the limit is raised (the broker's
and `mqtt.max_payload_bytes`) the hub's `sync.replay` of the gap brings it.

A range that is no longer stored when its turn comes (pruned: only events the hub has acked are pruned)
is stepped over and counts as past the broker, so the publisher neither spins on it nor holds its
watermark below it.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
import sqlite3
from collections import deque
from collections.abc import Callable

from gateway.journal import Journal, JournalError, StoredEvent
from gateway.sync.mqtt import AsyncMqtt, TooLarge

log = logging.getLogger("floorgate.publisher")

CACHE_MAX = 20_000  # recent events kept in memory so a live gateway never reads back what it just wrote
READ_CHUNK = 1000
REFUSED_RETRY_S = 0.1  # paho refused a publish (not a lost connection): try again after this long, not at once


class OutboxPublisher:
    def __init__(self, journal: Journal, mqtt: AsyncMqtt, prefix: str, window: int) -> None:
        self.journal = journal
        self.mqtt = mqtt
        self.prefix = prefix
        self.window = window
        self.next_seq = 1
        self.broker_acked = 0  # every seq <= this has had its PUBACK (or is pruned: the hub holds it)
        self.hub_acked = 0
        self.published = 0
        self.republished = 0
        self.resent = 0  # events published again because their PUBACK could no longer come
        self.skipped = 0  # seqs found pruned when their turn came
        self.iterations = 0  # turns of the run loop: an idle publisher makes none
        self._acked_above: set[int] = set()
        self._holes: list[tuple[int, int]] = []  # pruned ranges above the watermark, sorted
        self._inflight: dict[int, tuple[int, int]] = {}  # mid -> (seq, connection); negative seq: a replay
        self._resend: list[int] = []  # heap of seqs to publish again
        self._cache: list[StoredEvent] = []
        self._cache_first = 0
        self._replays: deque[tuple[int, int]] = deque()
        self._wake = asyncio.Event()
        self._saved_broker_acked = 0
        self._save_failing = False
        self.held_back: dict[int, int] = {}  # seq -> size of the events over the broker's limit
        self.on_held_back: Callable[[StoredEvent, TooLarge], None] = lambda ev, e: None
        journal.on_commit(self._on_commit)
        mqtt.on_puback = self._on_puback
        mqtt.on_connect.append(self._on_connect)

    async def start(self) -> None:
        meta = await self.journal.read_meta()
        self.hub_acked = int(meta.get("hub_acked_seq", "0"))
        # What the hub holds has been past the broker (and may be pruned already): it is not published again.
        saved = max(int(meta.get("broker_acked_seq", "0")), self.hub_acked)
        self.broker_acked = min(saved, self.journal.last_seq)
        self._saved_broker_acked = int(meta.get("broker_acked_seq", "0"))
        # From the first the broker has not taken: below start_seq too, where a restored backup's events (their
        # old journal id in their envelopes) the hub never got wait to go out again (gateway/ops/backup.py).
        self.next_seq = self.broker_acked + 1

    @property
    def pending(self) -> int:
        """Events the hub has not confirmed yet."""
        return max(self.journal.last_seq - self.hub_acked, 0)

    @property
    def in_flight(self) -> int:
        """Publishes (events and replays) waiting for their PUBACK."""
        return len(self._inflight)

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
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # a result or status message, not an event
        self._wake.set()
        seq = entry[0]
        if seq < 0:
            return
        if seq == self.broker_acked + 1:
            self.broker_acked = seq
            self._advance()
        elif seq > self.broker_acked:
            self._acked_above.add(seq)

    def _on_connect(self, session_present: bool) -> None:
        """Called by the client inside its CONNACK handling, before it sends its unacknowledged messages
        again: an in-flight event it no longer holds would keep its slot in the window forever."""
        held = self.mqtt.unacked_mids()
        if held is None or not self._inflight:
            return
        lost = [mid for mid in self._inflight if mid not in held]
        if not lost:
            return
        for mid in lost:
            seq = self._inflight.pop(mid)[0]
            if seq < 0:
                self._replays.append((-seq, -seq))
            elif seq > self.broker_acked and seq not in self._acked_above:
                heapq.heappush(self._resend, seq)
        log.warning("in-flight events lost by the MQTT client; publishing them again",
                    extra={"fields": {"events": len(lost), "connection": self.mqtt.connection}})
        self._wake.set()

    def replay(self, from_seq: int, to_seq: int) -> None:
        self._replays.append((from_seq, to_seq))
        self._wake.set()

    def hub_ack(self, up_to_seq: int) -> bool:
        if up_to_seq <= self.hub_acked:
            return False
        self.hub_acked = min(up_to_seq, self.journal.last_seq)
        if self.hub_acked > self.broker_acked:  # the hub holds them, so the broker took them
            self.broker_acked = self.hub_acked
            self._acked_above = {s for s in self._acked_above if s > self.broker_acked}
            self._advance()
        return True

    # -- the watermark --------------------------------------------------------------------------------

    def _advance(self) -> None:
        w = self.broker_acked
        above, holes = self._acked_above, self._holes
        while True:
            if holes and holes[0][0] <= w + 1:
                w = max(w, holes.pop(0)[1])
            elif w + 1 in above:
                above.remove(w + 1)
                w += 1
            else:
                break
        self.broker_acked = w

    def _skip(self, lo: int, hi: int) -> None:
        """Seqs lo..hi are not stored any more: pruned, which only happens to what the hub has acked."""
        if hi < lo:
            return
        self.skipped += hi - lo + 1
        self.next_seq = max(self.next_seq, hi + 1)
        if hi > self.broker_acked:
            bisect.insort(self._holes, (lo, hi))
            self._advance()
        log.info("pruned events stepped over", extra={"fields": {"from_seq": lo, "to_seq": hi}})

    # -- the loop -------------------------------------------------------------------------------------

    def _from_cache(self, seq: int, n: int) -> list[StoredEvent]:
        i = seq - self._cache_first
        if not self._cache or i < 0 or i >= len(self._cache):
            return []
        return self._cache[i:i + n]

    def _publish(self, ev: StoredEvent, replay: bool) -> bool:
        try:
            mid = self.mqtt.publish(f"{self.prefix}/events/{ev.type}", ev.body, qos=1)
        except TooLarge as e:
            self._hold_back(ev, e, replay)
            return True
        if mid is None:
            return False
        self._inflight[mid] = (-ev.seq if replay else ev.seq, self.mqtt.connection)
        return True

    def _hold_back(self, ev: StoredEvent, e: TooLarge, replay: bool) -> None:
        first = ev.seq not in self.held_back
        self.held_back[ev.seq] = e.size
        if not replay:  # past the broker for the watermark: the events after it are not held up
            if ev.seq == self.broker_acked + 1:
                self.broker_acked = ev.seq
                self._advance()
            elif ev.seq > self.broker_acked:
                self._acked_above.add(ev.seq)
        if first:
            log.error("event held back: over the broker's message limit", extra={"fields": {
                "seq": ev.seq, "type": ev.type, "bytes": e.size, "limit": e.limit}})
        self.on_held_back(ev, e)

    async def run(self) -> None:
        while True:
            self.iterations += 1
            self._wake.clear()
            if not self.mqtt.connected.is_set():
                await self.mqtt.connected.wait()
                continue
            room = self.window - len(self._inflight)
            if room <= 0:
                await self._wake.wait()
                continue
            if self._resend:
                sent = await self._resend_chunk(room)
            elif self.next_seq <= self.journal.last_seq:
                sent = await self._next_chunk(room)
            elif self._replays:
                sent = await self._replay_chunk(room)
            else:
                await self._wake.wait()
                continue
            # Let commands and PUBACKs in between chunks; a refused publish waits a little instead of spinning.
            await asyncio.sleep(0 if sent else REFUSED_RETRY_S)

    async def _next_chunk(self, room: int) -> bool:
        """Publish the next events in seq order; False if paho refused the first one."""
        last = self.journal.last_seq
        batch = self._from_cache(self.next_seq, room)
        if not batch:
            batch = await self.journal.read_events(self.next_seq, last, min(room, READ_CHUNK))
            if not batch:  # nothing stored up to `last`: all of it pruned
                self._skip(self.next_seq, last)
                return True
        for i, ev in enumerate(batch):
            if ev.seq > self.next_seq:
                self._skip(self.next_seq, ev.seq - 1)
            if not self._publish(ev, replay=False):
                return i > 0
            self.next_seq = ev.seq + 1
            self.published += 1
        return True

    async def _resend_chunk(self, room: int) -> bool:
        """Publish again the events whose PUBACK can no longer come, a contiguous run at a time."""
        seqs: list[int] = []
        while self._resend and len(seqs) < room:
            s = self._resend[0]
            if s <= self.broker_acked or s in self._acked_above or (seqs and s == seqs[-1]):
                heapq.heappop(self._resend)
                continue
            if seqs and s != seqs[-1] + 1:
                break
            seqs.append(heapq.heappop(self._resend))
        if not seqs:
            return True
        batch = await self.journal.read_events(seqs[0], seqs[-1], len(seqs))
        stored = {ev.seq for ev in batch}
        for s in seqs:
            if s not in stored:
                self._skip(s, s)
        for i, ev in enumerate(batch):
            if not self._publish(ev, replay=False):
                for rest in batch[i:]:
                    heapq.heappush(self._resend, rest.seq)
                return i > 0
            self.resent += 1
        return True

    async def _replay_chunk(self, room: int) -> bool:
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
        return sent > 0 or not batch

    async def save_progress(self) -> None:
        """Persist the PUBACK watermark now and then: after a restart, publishing resumes there. Bookkeeping,
        not state: on a full disk it is kept for later (a watermark saved late only means events sent again,
        which the hub drops by their ids). The error once left the hub link's task and stopped the gateway."""
        if self.broker_acked != self._saved_broker_acked:
            acked = self.broker_acked
            try:
                await self.journal.set_meta("broker_acked_seq", str(acked))
            except (sqlite3.Error, JournalError) as e:
                if not self._save_failing:
                    log.warning("publish watermark not saved; trying again", extra={"fields": {"error": str(e)}})
                self._save_failing = True
                return
            if self._save_failing:
                log.info("publish watermark saved again")
            self._save_failing = False
            self._saved_broker_acked = acked
