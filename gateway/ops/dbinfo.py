"""Read-only looks into the journal database that are safe while the gateway runs.

Every connection here is opened `mode=ro` with `query_only`: in WAL mode a reader never blocks the
gateway's writer, and it cannot change anything even by mistake.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

TABLES = ("events", "docs", "masterdata", "commands", "audit", "bulk_parts")


class DatabaseMissing(Exception):
    pass


def connect_ro(path: str | Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    p = Path(path)
    if not p.exists():
        raise DatabaseMissing(f"{p}: no database here (the gateway creates it at its first start)")
    conn = sqlite3.connect(f"file:{quote(str(p.resolve()))}?mode=ro", uri=True, timeout=timeout_s,
                           isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA query_only=1")
    return conn


def integrity(conn: sqlite3.Connection, full: bool = False, max_errors: int = 10) -> list[str]:
    """`quick_check` (or the slower `integrity_check`): ['ok'] or up to `max_errors` problems."""
    pragma = "integrity_check" if full else "quick_check"
    return [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}({int(max_errors)})").fetchall()]


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}
    except sqlite3.OperationalError:
        return {}


def file_sizes(path: str | Path) -> dict[str, int]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            out["db" + suffix.replace("-", "_")] = os.stat(str(path) + suffix).st_size
    return out


def journal_stats(path: str | Path, check: bool = True) -> dict[str, Any]:
    """What a support engineer wants first: identity, seqs, backlog, sizes, row counts, integrity."""
    conn = connect_ro(path)
    try:
        conn.execute("BEGIN")  # one snapshot for all the numbers below
        meta = read_meta(conn)
        counts: dict[str, int | None] = {}
        for t in TABLES:
            try:
                counts[t] = int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            except sqlite3.OperationalError:
                counts[t] = None
        row = conn.execute("SELECT min(seq), max(seq) FROM events").fetchone()
        last_seq = max(int(meta.get("last_seq", "0")), int(row[1] or 0))
        broker_acked = int(meta.get("broker_acked_seq", "0"))
        hub_acked = int(meta.get("hub_acked_seq", "0"))
        pages, free, size = conn.execute(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()").fetchone()
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        out: dict[str, Any] = {
            "path": str(path),
            "schema_version": version,
            "meta": meta,
            "journal_id": meta.get("journal_id"),
            "journal_start_seq": int(meta.get("journal_start_seq", "1")),
            "last_seq": last_seq,
            "first_stored_seq": row[0],
            "broker_acked_seq": broker_acked,
            "hub_acked_seq": hub_acked,
            "pending_broker": max(last_seq - broker_acked, 0),
            "pending_hub": max(last_seq - hub_acked, 0),
            "rows": counts,
            "page_size": size,
            "page_count": pages,
            "freelist_count": free,
            "used_bytes": (pages - free) * size,
            "files": file_sizes(path),
        }
        conn.execute("COMMIT")
        if check:
            out["quick_check"] = integrity(conn)
        return out
    finally:
        conn.close()
