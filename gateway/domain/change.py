"""One unit of work: the state a domain call changed plus the events it emitted.

The journal commits a `Change` in one transaction (the transactional outbox). Device signals ride along and
are executed only after that commit, so nothing shown to a person can be lost in a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Doc(Protocol):
    def to_doc(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class EventDraft:
    type: str
    data: dict[str, Any]
    order_id: str | None = None
    seq: int = 0  # set when the journal sequences the change


@dataclass(slots=True)
class Change:
    cmd_id: str | None = None
    events: list[EventDraft] = field(default_factory=list)
    docs: dict[tuple[str, str], Doc | None] = field(default_factory=dict)
    # A document, None to delete, or its JSON text already (bulk staging serializes a chunk at a time).
    masterdata: list[tuple[int, str, str, dict[str, Any] | str | None]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    signals: list[Any] = field(default_factory=list)
    result: tuple[str, str, dict[str, Any]] | None = None  # (cmd_id, name, result) to store for dedup
    bulk_parts: list[tuple[str, str, int, int, str, int, bytes | str]] = field(default_factory=list)
    # (sync_id, name, part, parts, cmd_id, items, payload as stored): a bulk command's part, applied later
    background: bool = False  # bulk work: see gateway/journal/store.py _Rows.relaxed
    # Rows nobody reads before a later change makes them live (a replace's staged generation): the journal may
    # commit them after changes submitted later (gateway/journal/store.py Journal._write_split).
    unseen: bool = False

    def emit(self, type: str, data: dict[str, Any], order_id: str | None = None) -> EventDraft:
        ev = EventDraft(type, data, order_id)
        self.events.append(ev)
        return ev

    def save(self, kind: str, key: str, doc: Doc) -> None:
        """Mark an entity changed; it is serialized when the change is submitted, not now."""
        self.docs[(kind, key)] = doc

    def delete(self, kind: str, key: str) -> None:
        self.docs[(kind, key)] = None

    def signal(self, signal: Any) -> None:
        self.signals.append(signal)

    def absorb(self, other: Change) -> None:
        """Take everything `other` recorded, after what this change already holds."""
        self.events.extend(other.events)
        self.docs.update(other.docs)
        self.masterdata.extend(other.masterdata)
        self.meta.update(other.meta)
        self.audit.extend(other.audit)
        self.signals.extend(other.signals)
        self.bulk_parts.extend(other.bulk_parts)

    @property
    def changed_state(self) -> bool:
        return bool(self.events or self.docs or self.masterdata or self.meta or self.bulk_parts)

    def sequence(self, first_seq: int) -> None:
        """Number the events from `first_seq`; an order's `updated_seq` follows its last event."""
        for i, ev in enumerate(self.events):
            ev.seq = first_seq + i
            if ev.order_id is not None:
                order = self.docs.get(("order", ev.order_id))
                if order is not None and hasattr(order, "updated_seq"):
                    order.updated_seq = ev.seq

    @property
    def empty(self) -> bool:
        return not (self.events or self.docs or self.masterdata or self.meta or self.audit or self.result
                    or self.bulk_parts)
