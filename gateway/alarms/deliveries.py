"""Alarm deliveries as journal documents, and the pure rules that create, settle and prune them.

Each channel gets its own document per alarm event, committed with the journal like any other state, so a
delivery that could not go out survives an outage and a restart, and its id (the alarm event plus the
channel) makes recording the same event twice a no-op. Nothing here does I/O: the notifier runs these
functions through `FloorService.execute`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import parse_rfc3339
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import Alarm

KIND = "alarm_delivery"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
RAISED, CLEARED = "raised", "cleared"


@dataclass(slots=True)
class Delivery:
    id: str
    n: int  # recording order: a channel sends its deliveries in this order, so a clear never overtakes its raise
    channel: str
    event: str  # shared by the deliveries of one alarm event
    state: str  # the alarm's: "raised" | "cleared"
    alarm_id: str
    code: str
    severity: str
    message: str
    ts: str  # when the alarm event happened (UTC RFC 3339)
    created_at: str
    status: str = PENDING
    attempts: int = 0
    error: str | None = None  # the last failure, or why the delivery was given up
    done_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "n": self.n, "channel": self.channel, "event": self.event, "state": self.state,
            "alarm_id": self.alarm_id, "code": self.code, "severity": self.severity, "message": self.message,
            "ts": self.ts, "created_at": self.created_at, "status": self.status, "attempts": self.attempts,
        }
        if self.error is not None:
            d["error"] = self.error
        if self.done_at is not None:
            d["done_at"] = self.done_at
        return d

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Delivery:
        return cls(d["id"], int(d["n"]), d["channel"], d["event"], d["state"], d["alarm_id"], d["code"],
                   d["severity"], d["message"], d["ts"], d["created_at"], d.get("status", PENDING),
                   int(d.get("attempts", 0)), d.get("error"), d.get("done_at"))


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm raised or cleared, as the notifier saw it right after its commit."""

    state: str
    alarm: Alarm
    ts: str
    message: str


def _docs(floor: Floor) -> dict[str, dict[str, Any]]:
    return floor.extra.setdefault(KIND, {})


def deliveries(floor: Floor) -> list[Delivery]:
    """Every delivery in the journal, in recording order. Unreadable documents are skipped, not fatal."""
    out = []
    for doc in floor.extra.get(KIND, {}).values():
        try:
            out.append(Delivery.from_doc(doc))
        except (KeyError, TypeError, ValueError):
            continue
    out.sort(key=lambda d: (d.n, d.id))
    return out


def _compact(ts: str) -> str:
    return ts.replace("-", "").replace(":", "")


def _latest(ds: Iterable[Delivery]) -> dict[tuple[str, str], Delivery]:
    """The newest delivery of each (alarm, channel): where that channel stands in the alarm's episode."""
    latest: dict[tuple[str, str], Delivery] = {}
    for d in ds:
        key = (d.alarm_id, d.channel)
        cur = latest.get(key)
        if cur is None or d.n > cur.n:
            latest[key] = d
    return latest


def record_events(floor: Floor, change: Change, events: Sequence[AlarmEvent], channels: Sequence[str],
                  now: str) -> list[str]:
    """Record one pending delivery per channel for each event worth telling it; returns the new ids.

    An alarm episode runs from its raise to its clear. Within it, a raise that only changes the message
    (a storage percentage creeping up) is not sent again; a change of severity is. A clear goes to the
    channels that were told of the raise, once: its event key names the raise it ends, so the same clear
    seen twice (from the signal and from start-up reconciliation) is recorded once.
    """
    if not channels:
        return []
    docs = _docs(floor)
    existing = deliveries(floor)
    latest = _latest(existing)
    n = max((d.n for d in existing), default=0)
    new_ids: list[str] = []
    for ev in events:
        a = ev.alarm
        numbered = False
        for ch in channels:
            last = latest.get((a.alarm_id, ch))
            if ev.state == RAISED:
                if last is not None and last.state == RAISED and last.severity == a.severity:
                    continue
                event = f"{a.alarm_id}~{_compact(a.raised_at)}~{RAISED}"
            else:
                if last is None or last.state != RAISED:
                    continue
                event = f"{a.alarm_id}~{_compact(last.ts)}~{CLEARED}"
            did = f"{event}~{ch}"
            if did in docs:
                continue
            if not numbered:
                n += 1
                numbered = True
            made = Delivery(did, n, ch, event, ev.state, a.alarm_id, a.code, a.severity, ev.message, ev.ts, now)
            docs[did] = made.to_doc()
            change.save(KIND, did, made)
            latest[(a.alarm_id, ch)] = made
            new_ids.append(did)
    return new_ids


def reconcile(floor: Floor, change: Change, channels: Sequence[str], now: str) -> list[str]:
    """Close the gap a crash can leave between an alarm's commit and the commit of its deliveries.

    Every alarm that is up is treated as raised again (a no-op where its episode was recorded, and the
    way a newly configured channel learns of the alarms already up), and an episode whose alarm is gone
    without a recorded clear gets its clear. Pending deliveries for channels no longer configured are
    given up. Returns the ids of the deliveries it recorded.
    """
    docs = _docs(floor)
    for d in deliveries(floor):
        if d.status == PENDING and d.channel not in channels:
            _settle(docs, change, d, FAILED, "channel no longer configured", now)
    events = [AlarmEvent(RAISED, a, a.raised_at, a.message)
              for a in sorted(floor.alarms.values(), key=lambda a: (a.raised_at, a.alarm_id))]
    gone: dict[str, Delivery] = {}
    for (alarm_id, _), last in sorted(_latest(deliveries(floor)).items()):
        if last.state == RAISED and alarm_id not in floor.alarms and alarm_id not in gone:
            gone[alarm_id] = last
    for alarm_id, last in gone.items():
        alarm = Alarm(alarm_id, last.code, last.severity, last.message, last.ts)
        events.append(AlarmEvent(CLEARED, alarm, now, f"cleared: {last.message}"))
    return record_events(floor, change, events, channels, now)


def _settle(docs: dict[str, dict[str, Any]], change: Change, d: Delivery, status: str, error: str | None,
            now: str) -> None:
    d.status = status
    d.error = error
    d.done_at = now
    docs[d.id] = d.to_doc()
    change.save(KIND, d.id, d)


def _get(floor: Floor, delivery_id: str) -> Delivery | None:
    doc = floor.extra.get(KIND, {}).get(delivery_id)
    return Delivery.from_doc(doc) if doc is not None else None


def mark_delivered(floor: Floor, change: Change, delivery_id: str, now: str) -> None:
    d = _get(floor, delivery_id)
    if d is None:
        return
    d.attempts += 1
    _settle(_docs(floor), change, d, DELIVERED, None, now)


def mark_failed(floor: Floor, change: Change, delivery_id: str, reason: str, now: str) -> None:
    """A permanent failure: recorded with its reason and never tried again."""
    d = _get(floor, delivery_id)
    if d is None or d.status != PENDING:
        return
    d.attempts += 1
    _settle(_docs(floor), change, d, FAILED, reason, now)


def note_attempt(floor: Floor, change: Change, delivery_id: str, reason: str) -> None:
    """A failed attempt that will be retried: counted, with its reason, so a page can show why."""
    d = _get(floor, delivery_id)
    if d is None or d.status != PENDING:
        return
    d.attempts += 1
    d.error = reason
    _docs(floor)[d.id] = d.to_doc()
    change.save(KIND, d.id, d)


def _older(ts: str | None, cutoff: datetime) -> bool:
    if ts is None:
        return False
    try:
        return parse_rfc3339(ts) < cutoff
    except ValueError:
        return True


def prune(floor: Floor, change: Change, now: datetime, retention: timedelta, busy: Collection[str],
          now_text: str) -> tuple[int, int]:
    """Delete settled deliveries older than the retention; give up pending ones older than it.

    The newest raise of an alarm that is still up is kept whatever its age, so a restart does not take
    a long-standing alarm for a new one. Returns (deleted, given up).
    """
    cutoff = now - retention
    docs = _docs(floor)
    all_ds = deliveries(floor)
    keep = {last.id for (alarm_id, _), last in _latest(all_ds).items()
            if last.state == RAISED and alarm_id in floor.alarms}
    deleted = expired = 0
    readable = {d.id for d in all_ds}
    for key in [k for k in docs if k not in readable]:  # a document no version of this code can read
        del docs[key]
        change.delete(KIND, key)
        deleted += 1
    for d in all_ds:
        if d.id in busy:
            continue
        if d.status == PENDING:
            if _older(d.created_at, cutoff):
                days = retention.total_seconds() / 86400
                reason = f"not delivered within {days:g} days" + (f"; last error: {d.error}" if d.error else "")
                _settle(docs, change, d, FAILED, reason, now_text)
                expired += 1
        elif d.id not in keep and _older(d.done_at, cutoff):
            del docs[d.id]
            change.delete(KIND, d.id)
            deleted += 1
    return deleted, expired
