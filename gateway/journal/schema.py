"""Versioned schema migrations, applied in order at start-up; `PRAGMA user_version` holds the version."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- The outbox: every event, in seq order, until the hub has acked it and it is older than the retention.
CREATE TABLE events(
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    order_id TEXT,
    journal TEXT NOT NULL,
    body TEXT NOT NULL
);
-- Current state of the floor's entities (orders, tasks, holds, alarms, sessions, ...), one JSON each.
CREATE TABLE docs(kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY(kind, id)) WITHOUT ROWID;
-- Master data by generation; `meta.md_gen` names the live one.
CREATE TABLE masterdata(
    gen INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY(gen, kind, id)
) WITHOUT ROWID;
-- Results of hub commands, so a repeated cmd_id is answered again and never applied twice.
CREATE TABLE commands(cmd_id TEXT PRIMARY KEY, name TEXT NOT NULL, ts TEXT NOT NULL, result TEXT NOT NULL)
    WITHOUT ROWID;
-- The audit trail: every scan, pick and pack with who, when, which device and the raw value.
CREATE TABLE audit(
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT,
    operator_id TEXT,
    order_id TEXT,
    lot TEXT,
    raw TEXT,
    result TEXT,
    body TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts);
CREATE INDEX audit_lot ON audit(lot) WHERE lot IS NOT NULL;
CREATE INDEX audit_order ON audit(order_id) WHERE order_id IS NOT NULL;
-- Parts of bulk commands, stored before the broker is acknowledged, applied in the background.
CREATE TABLE bulk_parts(
    sync_id TEXT NOT NULL, name TEXT NOT NULL, part INTEGER NOT NULL, parts INTEGER NOT NULL,
    cmd_id TEXT NOT NULL, ts TEXT NOT NULL, items INTEGER NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY(sync_id, part)
) WITHOUT ROWID;
"""),
]

LATEST = MIGRATIONS[-1][0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one transaction per version; returns the version reached."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST:
        raise RuntimeError(
            f"database schema version {version} is newer than this Floorgate ({LATEST}); "
            "run the newer Floorgate or restore a backup"
        )
    for v, sql in MIGRATIONS:
        if v <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in sql.split(";\n"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {v}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = v
    return version
