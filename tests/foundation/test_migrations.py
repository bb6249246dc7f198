"""Versioned schema migrations: a new database gets them all, an old one gets the pending ones in order (its
data and journal identity kept), a failed step changes nothing, and a database from a newer Floorgate is
refused rather than written with the wrong schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.journal import Journal, schema


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def open_journal(path: Path, clock: ManualClock) -> Journal:
    return await Journal.open(path, site="dc1", gateway="zone-a", clock=clock)


async def test_new_database_gets_every_migration(tmp_path: Path, clock: ManualClock) -> None:
    j = await open_journal(tmp_path / "fg.db", clock)
    try:
        assert j.schema_version == schema.LATEST
    finally:
        await j.close()
    assert user_version(tmp_path / "fg.db") == schema.LATEST


async def test_pending_migration_applies_to_an_old_database_and_keeps_its_data(
        tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fg.db"
    j = await open_journal(db, clock)
    change = Change()
    change.emit("alarm.raised", {"alarm_id": "a", "kind": "test", "severity": "info", "message": "m"})
    await j.submit(change)
    jid = j.journal_id
    await j.close()
    nxt = schema.LATEST + 1
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (nxt, """
CREATE TABLE later(x INTEGER);
INSERT INTO later(x) SELECT count(*) FROM events""")])
    monkeypatch.setattr(schema, "LATEST", nxt)
    j = await open_journal(db, clock)
    try:
        assert j.schema_version == nxt
        assert j.journal_id == jid and j.last_seq == 1  # the same journal, its events kept
        assert [r[0] for r in await j.read_events(1)] == [1]
    finally:
        await j.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT x FROM later").fetchall() == [(1,)]
    finally:
        conn.close()


def test_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fg.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert schema.migrate(conn) == schema.LATEST
        nxt = schema.LATEST + 1
        monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (nxt, """
CREATE TABLE half(x INTEGER);
INSERT INTO no_such_table VALUES (1)""")])
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            schema.migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
    finally:
        conn.close()


async def test_database_of_a_newer_floorgate_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    db = tmp_path / "fg.db"
    j = await open_journal(db, clock)
    await j.close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match=f"schema version {schema.LATEST + 5} is newer than this Floorgate"):
        await open_journal(db, clock)
    assert user_version(db) == schema.LATEST + 5
