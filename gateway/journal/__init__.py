"""The SQLite journal: schema, the transactional outbox, the audit trail."""

from gateway.journal.store import Journal, JournalError, JournalUnavailable, StorageFull, StoredEvent

__all__ = ["Journal", "JournalError", "JournalUnavailable", "StorageFull", "StoredEvent"]
