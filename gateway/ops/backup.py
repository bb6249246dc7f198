"""`floorgate backup` (online) and `floorgate restore` (gateway stopped).

Backup: SQLite's online backup API from a separate read-only connection that holds one read transaction
for the whole copy. In WAL mode that reader never blocks the gateway's writer, and because its snapshot
does not move, the copy is consistent and never restarts however busy the gateway is. The copy is made
self-contained (rollback journal mode, no -wal file), checked with integrity_check, and renamed into
place only when good.

Restore (SPEC §1): the restored journal gets a new `journal` id and continues from the backup's last
seq, so the hub never mistakes one event for another. The backup's events keep their old id and seq; those
the hub had not acked when the backup was taken are published again, in order, before the new id's (they
were counted as acked, and never reached the hub, nor could a replay fetch them). SSCC serials jump by
`packing.sscc_restore_gap`, because SSCCs printed after the backup was taken are gone from the copy but
are still on cartons. The database it replaces is kept next to it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from gateway.clock import rfc3339
from gateway.config import Config
from gateway.journal.schema import LATEST
from gateway.ops import dbinfo
from gateway.ops.lock import LOCK_NAME, AlreadyRunning, acquire_run_lock
from gateway.ops.progress import Progress

PAGES_PER_STEP = 1024
SSCC_META_KEY = "sscc_last_serial"
# SQLite keeps a database's state in up to three more files beside it, each named after it.
SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """Nothing was written in place of the target; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    bytes: int
    pages: int
    journal_id: str
    last_seq: int
    integrity: list[str]


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_file(p: Path) -> None:
    """Create `p` empty with mode 0600 (an empty file is a valid empty database): backups hold personal
    data (operator names, password hashes)."""
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.close(fd)


def _same_place(a: Path, b: Path) -> bool:
    """Whether writing (or renaming onto) `a` would hit `b`. Files that exist are compared by device and
    inode, which sees through symlinks, hard links, relative paths and bind mounts; a file that does not
    exist yet (a -journal, a -wal between gateway runs) by its resolved directory and name."""
    with contextlib.suppress(OSError):
        if os.path.samefile(a, b):
            return True
    ra, rb = a.resolve(), b.resolve()  # follows symlinks, even one that points at a missing file
    if ra == rb:
        return True
    if ra.name != rb.name:
        return False
    try:
        return os.path.samefile(ra.parent, rb.parent)
    except OSError:
        return False


def gateway_file(db_path: Path, out: Path) -> tuple[Path, str] | None:
    """The file of the gateway (and what it is) that writing `out` would replace, or None.

    Replacing one of them under a running gateway loses data silently: the gateway keeps writing into the
    unlinked database and reuses its seq numbers after the next start (SPEC §1), a replaced -wal or -shm
    loses or corrupts committed transactions, and a replaced run lock lets a second gateway start on the
    same journal. No --force can make that right, so callers refuse.
    """
    data_dir = db_path.parent
    owned: list[tuple[Path, str]] = []
    # SQLite names its side files after the path it opened; with a symlinked database that is the target's.
    for db in dict.fromkeys((db_path, db_path.resolve())):
        owned.append((db, "the live database"))
        owned += [(db.with_name(db.name + suffix), f"the live database's {suffix} file") for suffix in SQLITE_SUFFIXES]
    owned += [(data_dir / LOCK_NAME, "the gateway's run lock"),
              (data_dir / f".{db_path.name}.restoring", "the work file of a restore")]
    for path, what in owned:
        if _same_place(out, path):
            return path, what
    if _same_place(out, data_dir):
        return data_dir, "the gateway's data directory"
    return None


def copy_database(src: sqlite3.Connection, dst_path: Path, progress: Callable[[int, int], None] | None = None,
                  pages_per_step: int = PAGES_PER_STEP) -> int:
    """Copy `src` (holding its own read transaction) into a new standalone file; returns the page count."""
    _private_file(dst_path)
    dst = sqlite3.connect(str(dst_path), isolation_level=None)
    total = 0
    try:
        def cb(status: int, remaining: int, pages: int) -> None:
            nonlocal total
            total = pages
            if progress is not None:
                progress(pages - remaining, pages)

        src.backup(dst, pages=pages_per_step, progress=cb)
        # One file, no -wal beside it: a backup must survive being copied around on its own.
        mode = dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if str(mode).lower() != "delete":
            raise BackupError(f"{dst_path}: could not switch the copy to a standalone file (mode {mode})")
    finally:
        dst.close()
    return total


def verify(path: Path) -> tuple[list[str], dict[str, str], int]:
    """(integrity_check result, meta, schema version) of a backup file, read-only."""
    conn = dbinfo.connect_ro(path)
    try:
        result = dbinfo.integrity(conn, full=True)
        meta = dbinfo.read_meta(conn)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()
    return result, meta, version


def backup(db_path: Path, out: Path, *, force: bool = False, stream: TextIO | None = None,
           quiet: bool = False, pages_per_step: int = PAGES_PER_STEP) -> BackupResult:
    """Online backup of `db_path` to `out`; safe while the gateway writes."""
    hit = gateway_file(db_path, out)
    if hit is not None:  # checked first, so the refusal never suggests --force
        path, what = hit
        raise BackupError(f"refused: {out} is {what} ({path}); a backup written there would destroy it, "
                          f"with or without --force. Nothing was written: choose another file, e.g. "
                          f"{db_path.parent / datetime.now(UTC).strftime('backup-%Y-%m-%d.db')}")
    if out.is_dir():
        raise BackupError(f"{out} is a directory; give the backup file's name, e.g. {out / 'floorgate-backup.db'}")
    if out.exists() and not force:
        raise BackupError(f"{out} already exists; choose another name or add --force to overwrite it")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory")
    try:
        src = dbinfo.connect_ro(db_path)
    except dbinfo.DatabaseMissing as e:
        raise BackupError(str(e)) from None
    except sqlite3.Error as e:
        raise BackupError(f"cannot open {db_path}: {e}") from None
    tmp = out.with_name(f".{out.name}.partial")
    bar = Progress("backup", 0, "pages", stream=stream, quiet=quiet)
    try:
        try:
            src.execute("BEGIN")
            meta = dbinfo.read_meta(src)  # reading starts the snapshot the whole copy is taken from
            if "journal_id" not in meta:
                # (`floorgate user set-password` before the first start makes such a file.) A copy of it is no
                # backup `restore` takes: it was refused only at the restore, when it was needed.
                raise BackupError(f"{db_path} holds no journal yet (the gateway has not started on it): start the "
                                  "gateway once, then back it up; nothing was written")
            pages = copy_database(src, tmp, bar.update, pages_per_step)
            src.execute("COMMIT")
        except sqlite3.Error as e:
            raise BackupError(f"backup of {db_path} failed: {e}") from None
        except OSError as e:  # a read-only stick, /proc, a full card: said, not a traceback
            raise BackupError(f"cannot write {out}: {e.strerror or e}; nothing was written") from None
        finally:
            src.close()
        bar.finish()
        result, copied_meta, _ = verify(tmp)
        if result != ["ok"]:
            raise BackupError(f"the copy failed integrity_check ({'; '.join(result[:3])}); {out} was not written")
        try:
            _fsync_file(tmp)
            os.replace(tmp, out)
            _fsync_dir(out.parent)
        except OSError as e:
            raise BackupError(f"cannot write {out}: {e.strerror or e}; nothing was written") from None
    finally:
        with contextlib.suppress(OSError):  # not FileNotFoundError alone: on a read-only mount it hid the cause
            tmp.unlink()
    return BackupResult(out, out.stat().st_size, pages, copied_meta.get("journal_id", meta.get("journal_id", "")),
                        int(copied_meta.get("last_seq", "0")), result)


# -- restore -------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RestoreResult:
    db_path: Path
    replaced: Path | None
    old_journal_id: str
    new_journal_id: str
    start_seq: int
    sscc_last_serial: int | None
    sscc_beyond_end: bool


def _last_seq(conn: sqlite3.Connection) -> int:
    meta = dbinfo.read_meta(conn)
    row = conn.execute("SELECT max(seq) FROM events").fetchone()
    return max(int(meta.get("last_seq", "0")), int(row[0] or 0))


def _rekey(path: Path, cfg: Config, source: Path, now: datetime) -> tuple[str, str, int, int | None]:
    """Give the restored copy its new identity, in one transaction. Returns (old id, new id, start seq, sscc)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        meta = dbinfo.read_meta(conn)
        old = meta.get("journal_id", "")
        last = _last_seq(conn)
        new = str(uuid.uuid4())
        gap = cfg.packing.sscc_restore_gap
        sscc: int | None = None
        if SSCC_META_KEY in meta:
            sscc = int(meta[SSCC_META_KEY]) + gap
        elif gap:
            # No SSCC recorded in the backup: some may have been printed after it, from the start of the range.
            sscc = cfg.packing.sscc_serial_start - 1 + gap
        values = {
            "journal_id": new,
            "journal_start_seq": str(last + 1),
            "last_seq": str(last),
            # As the backup had them: what the hub had not confirmed then goes out again (old id, old seq)
            "broker_acked_seq": str(min(int(meta.get("broker_acked_seq", "0")), last)),
            "hub_acked_seq": str(min(int(meta.get("hub_acked_seq", "0")), last)),
            "restored_at": rfc3339(now),
            "restored_from": str(source),
            "restored_from_journal_id": old,
        }
        if sscc is not None:
            values[SSCC_META_KEY] = str(sscc)
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items()))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return old, new, last + 1, sscc


def _chown_like(path: Path, ref: Path) -> None:
    """Run as root, a restored file must still belong to the service user that owns the data directory."""
    if os.geteuid() == 0:
        st = ref.stat()
        with contextlib.suppress(OSError):
            os.chown(path, st.st_uid, st.st_gid)


def _keep_replaced(db: Path, replaced: Path) -> None:
    """Keep the database being replaced as one standalone file; if SQLite cannot read it (the damage that
    made someone restore), move its files aside as they are."""
    try:
        cur = sqlite3.connect(str(db), isolation_level=None)
        try:
            cur.execute("BEGIN")
            cur.execute("SELECT count(*) FROM sqlite_master").fetchone()
            copy_database(cur, replaced)
            cur.execute("COMMIT")
        finally:
            cur.close()
    except (sqlite3.Error, BackupError):
        with contextlib.suppress(FileNotFoundError):
            replaced.unlink()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(str(db) + suffix, str(replaced) + suffix)


def _assert_not_in_use(db: Path) -> None:
    """A second guard besides the run lock: a process that has the database open (a gateway older than the
    lock, a `sqlite3` session) keeps SQLite from granting an exclusive lock."""
    if not db.exists():
        return
    conn = sqlite3.connect(str(db), timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise AlreadyRunning(db, None) from None
    except sqlite3.DatabaseError:
        pass  # damaged: the restore moves it aside as it is
    finally:
        conn.close()


def restore(cfg: Config, source: Path, *, stream: TextIO | None = None, quiet: bool = False,
            now: datetime | None = None) -> RestoreResult:
    """Replace the journal database with `source`; refuses while a gateway holds the run lock."""
    now = now or datetime.now(UTC)
    if not source.is_file():
        raise BackupError(f"{source}: no such backup file")
    try:
        check, meta, version = verify(source)
    except (sqlite3.Error, dbinfo.DatabaseMissing) as e:
        raise BackupError(f"{source} is not a Floorgate backup (not a readable SQLite database: {e})") from None
    if "journal_id" not in meta:
        raise BackupError(f"{source} is not a Floorgate backup (no journal id in its meta table)")
    if version > LATEST:
        raise BackupError(f"{source} has schema version {version}, newer than this Floorgate ({LATEST}): "
                          "restore it with the Floorgate version that made it")
    if check != ["ok"]:
        raise BackupError(f"{source} fails integrity_check ({'; '.join(check[:3])}): choose another backup")
    theirs, ours = (meta.get("site"), meta.get("gateway")), (cfg.site, cfg.gateway)
    if all(theirs) and theirs != ours:
        # Another gateway's orders and master data would run here, and its unacked events would go out on this
        # gateway's topics with the other's name in their envelopes.
        raise BackupError(f"{source} is a backup of gateway {theirs[0]}/{theirs[1]}, and this config is "
                          f"{ours[0]}/{ours[1]}: restore it on that gateway, or, if this box takes its place, "
                          f"set site = \"{theirs[0]}\" and gateway = \"{theirs[1]}\" in the config first")
    data_dir = Path(cfg.data_dir)
    db = cfg.db_path
    with acquire_run_lock(data_dir):  # AlreadyRunning propagates: the gateway must be stopped
        _assert_not_in_use(db)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        tmp = db.with_name(f".{db.name}.restoring")
        replaced: Path | None = None
        try:
            src = dbinfo.connect_ro(source)
            try:
                src.execute("BEGIN")
                dbinfo.read_meta(src)
                copy_database(src, tmp, Progress("restore", 0, "pages", stream=stream, quiet=quiet).update)
                src.execute("COMMIT")
            finally:
                src.close()
            old, new, start, sscc = _rekey(tmp, cfg, source, now)
            result, _, _ = verify(tmp)
            if result != ["ok"]:
                raise BackupError(f"the restored copy failed integrity_check ({'; '.join(result[:3])}); "
                                  "nothing was replaced")
            if db.exists():
                # Through SQLite, not a file copy: a WAL left by a crash holds committed data that must come along.
                replaced = db.with_name(f"{db.name}.replaced-{stamp}")
                _keep_replaced(db, replaced)
                _chown_like(replaced, data_dir)
            _fsync_file(tmp)
            _chown_like(tmp, data_dir)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(db) + suffix)
            os.replace(tmp, db)
            _fsync_dir(data_dir)
        except sqlite3.Error as e:
            raise BackupError(f"restore failed, nothing was replaced: {e}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    end = cfg.packing.sscc_serial_end
    return RestoreResult(db, replaced, old, new, start, sscc, sscc is not None and sscc >= end)


def print_restore(r: RestoreResult, out: TextIO = sys.stdout) -> None:
    print(f"restored {r.db_path}", file=out)
    print(f"  journal: {r.old_journal_id} -> {r.new_journal_id} (new id, as SPEC §1 requires)", file=out)
    print(f"  events continue at seq {r.start_seq}; the backup's events the hub had not acked are sent again "
          f"under their old journal id", file=out)
    if r.sscc_last_serial is not None:
        print(f"  SSCC serials continue after {r.sscc_last_serial}", file=out)
    if r.sscc_beyond_end:
        print("  WARNING: that is at or past packing.sscc_serial_end: give this gateway a new SSCC range",
              file=out)
    if r.replaced is not None:
        print(f"  the replaced database was kept as {r.replaced}", file=out)
    print("start the gateway: sudo systemctl start floorgate", file=out)
