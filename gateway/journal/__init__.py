"""The SQLite journal: schema, the transactional outbox, the audit trail."""

from gateway.journal.store import (
    Journal,
    JournalDamaged,
    JournalError,
    JournalUnavailable,
    StorageFull,
    StoredEvent,
)

__all__ = ["Journal", "JournalDamaged", "JournalError", "JournalUnavailable", "StorageFull", "StoredEvent"]
