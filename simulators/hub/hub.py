"""A hub simulator that checks everything a gateway sends.

It subscribes to a gateway's topics with a persistent session, stores every event by (journal, seq),
counts duplicates (same event_id again) and conflicts (same seq, different event_id: a real bug), closes
gaps with `sync.replay` (also a gap at the tail, seen from the status' `last_seq`), confirms what it holds
with `sync.ack`, can send any command (resending with the same cmd_id until answered), and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.contract import validate_event
from gateway.sync.mqtt import AsyncMqtt, Message, MqttSettings

log = logging.getLogger("floorgate.hubsim")


@dataclass
class JournalView:
    journal: str
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    watermark: int = 0  # every seq <= this is held
    max_seen: int = 0  # the highest seq of any event held
    announced: int = 0  # the highest last_seq the gateway announced (status, snapshot)
    unavailable_below: int = 0  # the gateway said these are gone (replay_unavailable)
    watermark_at: float = 0.0  # loop time the watermark last moved
    event_at: float = 0.0  # loop time of the last new event
    tail_at: float = 0.0  # loop time the gateway last announced a higher last_seq

    def announce(self, last_seq: int, now: float) -> None:
        """A higher last_seq restarts the tail's grace: the events up to it may be on their way (a gateway back
        from an outage announces before it drains, even with an older tail still open from before it)."""
        if last_seq > self.announced:
            self.tail_at = now
            self.announced = last_seq

    def advance(self, now: float = 0.0) -> None:
        ev = self.events
        w = self.watermark
        while w + 1 in ev:
            w += 1
        if w != self.watermark:
            self.watermark = w
            self.watermark_at = now

    def hole_end(self) -> int:
        """The last missing seq of the first hole above the watermark."""
        s = self.watermark + 1
        while s <= self.max_seen and s not in self.events:
            s += 1
        return s - 1


class HubSim:
    def __init__(self, settings: MqttSettings, site: str, gateway: str, *, ack_every_s: float = 0.5,
                 gap_grace_s: float = 0.3, tail_grace_s: float = 2.0, replay_retry_s: float = 3.0,
                 auto_replay: bool = True,
                 auto_ack: bool = True, keep_events: bool = True, validate: bool = True) -> None:
        self.prefix = f"floorgate/v1/{site}/{gateway}"
        # Not `#`: the hub's own commands (megabytes, for bulk parts) must not come back to it.
        topics = ("events/#", "status", "cmd_result", "snapshot", "telemetry")
        self.mqtt = AsyncMqtt(settings, subscriptions=[(f"{self.prefix}/{t}", 1) for t in topics], name="hubsim")
        self.mqtt.on_message = self._on_message
        self.ack_every_s = ack_every_s
        self.gap_grace_s = gap_grace_s
        self.tail_grace_s = tail_grace_s
        self.replay_retry_s = replay_retry_s
        self.auto_replay = auto_replay
        self.auto_ack = auto_ack
        self.keep_events = keep_events
        self.validate = validate  # check every event against the contract models
        self.journals: dict[str, JournalView] = {}
        self.current: str | None = None
        self.received = 0
        self.duplicates = 0
        self.conflicts: list[tuple[str, int]] = []
        self.out_of_order = 0
        self.types: Counter[str] = Counter()
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.status: dict[str, Any] | None = None
        self.snapshots: list[dict[str, Any]] = []
        self.telemetry: list[dict[str, Any]] = []
        self.replays_sent = 0
        self.acks_sent = 0
        self.invalid: list[str] = []
        self.first_event_at: float | None = None
        self._changed = asyncio.Event()
        self._result_waiters: dict[str, asyncio.Event] = {}
        self._last_replay: tuple[float, int, int] | None = None
        self._acked: dict[str, int] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    # -- receiving ------------------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        sub = msg.topic[len(self.prefix) + 1:]
        try:
            data = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError):
            self.invalid.append(f"{msg.topic}: not JSON")
            return
        if sub.startswith("events/"):
            self._on_event(data)
        elif sub == "cmd_result":
            cmd_id = data.get("cmd_id")
            key = cmd_id if isinstance(cmd_id, str) else "null"
            self.results.setdefault(key, []).append(data)
            waiter = self._result_waiters.get(key)
            if waiter is not None:
                waiter.set()
        elif sub == "status":
            self.status = data
            if data.get("journal"):
                self.current = data["journal"]
                view = self.journals.setdefault(data["journal"], JournalView(data["journal"]))
                view.announce(int(data.get("last_seq") or 0), asyncio.get_running_loop().time())
        elif sub == "snapshot":
            self.snapshots.append(data)
            snap_view = self.journals.get(str(data.get("journal")))
            if snap_view is not None:
                snap_view.announce(int(data.get("last_seq") or 0), asyncio.get_running_loop().time())
        elif sub == "telemetry":
            self.telemetry.append(data)
        self._changed.set()

    def _on_event(self, ev: dict[str, Any]) -> None:
        try:
            jid, seq, eid = ev["journal"], int(ev["seq"]), ev["event_id"]
        except (KeyError, TypeError, ValueError):
            self.invalid.append(f"event without journal/seq/event_id: {str(ev)[:200]}")
            return
        now = asyncio.get_running_loop().time()
        if self.first_event_at is None:
            self.first_event_at = now
        if self.validate:
            try:
                validate_event(ev)
            except ValidationError as e:
                self.invalid.append(f"seq {seq} {ev.get('type')}: {e.errors()[0]['loc']} {e.errors()[0]['msg']}")
        view = self.journals.get(jid)
        if view is None:
            view = self.journals[jid] = JournalView(jid, watermark_at=now, event_at=now)
        self.current = self.current or jid
        have = view.events.get(seq)
        if have is not None:
            if have.get("event_id") != eid:
                self.conflicts.append((jid, seq))
            self.duplicates += 1
            return
        if seq < view.max_seen:
            self.out_of_order += 1
        view.events[seq] = ev if self.keep_events else {"event_id": eid}
        view.max_seen = max(view.max_seen, seq)
        view.event_at = now
        self.received += 1
        self.types[ev.get("type", "?")] += 1
        if seq == view.watermark + 1:
            view.advance(now)

    def final_order_states(self) -> dict[str, str]:
        """Order states from every event held, applied in seq order."""
        states: dict[str, str] = {}
        for view in self.journals.values():
            for seq in sorted(view.events):
                ev = view.events[seq]
                oid = ev.get("order_id")
                if not oid:
                    continue
                if ev.get("type") == "order.received":
                    states[oid] = "received"
                elif ev.get("type") == "order.state_changed":
                    states[oid] = ev["data"]["to"]
        return states

    # -- gap closing and acks --------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        next_ack = loop.time() + self.ack_every_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # not wait_for: 3.11's can swallow a cancellation
                    await self._changed.wait()
            self._changed.clear()
            if not self.mqtt.connected.is_set():
                continue
            now = loop.time()
            view = self.journals.get(self.current) if self.current else None
            if view is None:
                continue
            if self.auto_replay:
                if view.max_seen > view.watermark and now - view.watermark_at >= self.gap_grace_s:
                    # A hole: events beyond it keep coming, the watermark does not move.
                    self._request_replay(view, view.watermark + 1, view.hole_end(), now)
                elif view.announced > view.max_seen and now - max(view.event_at, view.tail_at) >= self.tail_grace_s:
                    # A tail: the gateway says it has more, and nothing has come for a while since it said so
                    # (counted from the announcement too: a gateway back from an outage announces its last_seq
                    # just before it drains, and asking then replayed thousands of events twice).
                    self._request_replay(view, view.watermark + 1, view.announced, now)
            if self.auto_ack and now >= next_ack:
                next_ack = now + self.ack_every_s
                if view.watermark > self._acked.get(view.journal, 0):
                    self._acked[view.journal] = view.watermark
                    self.send("sync.ack", {"up_to_seq": view.watermark, "journal": view.journal})
                    self.acks_sent += 1

    def _request_replay(self, view: JournalView, lo: int, hi: int, now: float) -> None:
        if hi < lo:
            return
        last = self._last_replay
        if last is not None and now - last[0] < self.replay_retry_s and last[1] <= lo and hi <= last[2]:
            return
        self._last_replay = (now, lo, hi)
        cmd_id = f"replay-{uuid.uuid4()}"
        self.send("sync.replay", {"journal": view.journal, "from_seq": lo, "to_seq": hi}, cmd_id=cmd_id)
        self.replays_sent += 1
        task = asyncio.get_running_loop().create_task(self._watch_replay(view, cmd_id), name="hubsim-replay-watch")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch_replay(self, view: JournalView, cmd_id: str) -> None:
        with contextlib.suppress(TimeoutError):
            res = await self.wait_result(cmd_id, timeout=30)
            if not res.get("ok") and res.get("error", {}).get("code") == "replay_unavailable":
                earliest = int(res["error"].get("earliest_seq", 1))
                view.unavailable_below = max(view.unavailable_below, earliest)
                if view.watermark < earliest - 1:
                    view.watermark = earliest - 1
                    view.advance(asyncio.get_running_loop().time())

    # -- sending ---------------------------------------------------------------------------------------------

    def send(self, name: str, payload: dict[str, Any], cmd_id: str | None = None) -> str:
        body = dict(payload)
        body.setdefault("cmd_id", cmd_id or str(uuid.uuid4()))
        self.mqtt.publish(f"{self.prefix}/cmd/{name}", json.dumps(body), qos=1)
        return str(body["cmd_id"])

    def send_raw(self, name: str, payload: bytes) -> None:
        self.mqtt.publish(f"{self.prefix}/cmd/{name}", payload, qos=1)

    async def wait_result(self, cmd_id: str, timeout: float = 30.0, count: int = 1) -> dict[str, Any]:
        ev = self._result_waiters.setdefault(cmd_id, asyncio.Event())

        async def wait() -> dict[str, Any]:
            while len(self.results.get(cmd_id, [])) < count:
                ev.clear()
                await ev.wait()
            return self.results[cmd_id][count - 1]
        try:
            async with asyncio.timeout(timeout):
                return await wait()
        finally:
            self._result_waiters.pop(cmd_id, None)

    async def command(self, name: str, payload: dict[str, Any], *, cmd_id: str | None = None,
                      timeout: float = 60.0, resend_after: float = 5.0) -> dict[str, Any]:
        """Send a command and wait for its result, resending it with the same cmd_id until answered. A cmd_id
        answered before waits for a new answer (the gateway's answer to this repeat), not the stored one."""
        cid = cmd_id or str(uuid.uuid4())
        answered = len(self.results.get(cid, []))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.send(name, payload, cmd_id=cid)
            try:
                return await self.wait_result(cid, timeout=min(resend_after, max(deadline - loop.time(), 0.01)),
                                              count=answered + 1)
            except TimeoutError:
                if loop.time() >= deadline:
                    raise

    async def wait_until(self, predicate: Any, timeout: float = 60.0) -> None:
        async def loop_() -> None:
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()
        async with asyncio.timeout(timeout):
            await loop_()

    def holds(self, last_seq: int, journal: str | None = None) -> bool:
        view = self.journals.get(journal or self.current or "")
        return view is not None and view.watermark >= last_seq

    # -- running and reporting ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.mqtt.run(), name="hubsim-mqtt")
                tg.create_task(self._maintain(), name="hubsim-maintain")
        finally:
            for t in list(self._watchers):
                t.cancel()

    def report(self) -> dict[str, Any]:
        views = {}
        for jid, v in self.journals.items():
            seqs = v.events.keys()
            lo = min(seqs) if seqs else 0
            missing = [s for s in range(max(lo, 1), v.max_seen + 1) if s not in v.events and s >= v.unavailable_below]
            views[jid] = {"events": len(v.events), "contiguous_to": v.watermark, "max_seen": v.max_seen,
                          "gaps": len(missing), "first_missing": missing[:5]}
        return {"received": self.received, "duplicates": self.duplicates, "conflicts": len(self.conflicts),
                "out_of_order": self.out_of_order, "replays_sent": self.replays_sent, "acks_sent": self.acks_sent,
                "journals": views, "types": dict(self.types.most_common()), "invalid": self.invalid[:5]}
