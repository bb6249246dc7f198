"""The journal's identity is made by whoever opens a new database first: the gateway's first start, or
`floorgate user set-password` before it. Two at once must agree on one (review: the second failed with a
UNIQUE constraint error, and set-password ended in a traceback)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.journal.schema import migrate
from gateway.journal.store import ensure_identity

NOW = "2026-01-01T00:00:00.000Z"


class Racing:
    """A connection whose first read of meta is followed, before it acts on it, by another opener's
    ensure_identity on its own connection."""

    def __init__(self, conn: sqlite3.Connection, other: sqlite3.Connection) -> None:
        self.conn, self.other, self.done = conn, other, False

    def execute(self, sql: str, *args: Any) -> Any:
        cur = self.conn.execute(sql, *args)
        if sql.startswith("SELECT key, value FROM meta") and not self.done:
            rows = cur.fetchall()
            self.done = True
            ensure_identity(self.other, "dc1", "zone-a", NOW, "other")
            return _Rows(rows)
        return cur

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.conn.executemany(sql, rows)


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchall(self) -> list[Any]:
        return self.rows


def test_two_first_openers_agree_on_one_identity(tmp_path: Path) -> None:
    db = str(tmp_path / "floorgate.db")
    a = sqlite3.connect(db, isolation_level=None, timeout=5)
    migrate(a)
    b = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        meta = ensure_identity(Racing(a, b), "dc1", "zone-a", NOW, db)  # type: ignore[arg-type]
        stored = dict(a.execute("SELECT key, value FROM meta").fetchall())
        assert meta["journal_id"] == stored["journal_id"]
        assert not a.in_transaction
    finally:
        a.close()
        b.close()
