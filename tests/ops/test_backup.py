"""Backup while the gateway runs and writes; restore only while it is stopped, with a new journal id, the
seq continued, SSCC serials skipped and the replaced database kept."""

from __future__ import annotations

import asyncio
import os
import pty
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import load_config, parse_config
from gateway.domain.alarms import raise_alarm
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal
from gateway.ops import dbinfo
from gateway.ops.backup import BackupError, backup, restore
from gateway.ops.lock import AlreadyRunning, acquire_run_lock, is_running
from gateway.service import FloorService
from tests.ops.conftest import ROOT, app_wires, floorgate_run, ops_cli, wired_gateway, write_config


def _meta(path: Path) -> dict[str, str]:
    conn = dbinfo.connect_ro(path)
    try:
        return dbinfo.read_meta(conn)
    finally:
        conn.close()


def _wait_seq(db: Path, above: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            seq = int(_meta(db).get("last_seq", "0"))
            if seq > above:
                return seq
        time.sleep(0.05)
    raise AssertionError(f"the gateway did not write past seq {above}")


def test_backup_while_running_restore_refused_then_restored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg_path = write_config(tmp_path / "floorgate.toml", data)
    db = data / "floorgate.db"
    out = tmp_path / "backup.db"
    gw = wired_gateway(cfg_path, load=True).start()
    try:
        _wait_seq(db, 200)
        r = ops_cli("backup", "--config", str(cfg_path), "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert "backup [" in r.stderr and "100%" in r.stderr  # progress on stderr
        assert "backup written" in r.stdout
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert not Path(str(out) + "-wal").exists()
        # Consistent: every event up to the copied last_seq is there, and nothing beyond it.
        conn = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            last = int(meta["last_seq"])
            n, lo, hi = conn.execute("SELECT count(*), min(seq), max(seq) FROM events").fetchone()
        finally:
            conn.close()
        assert (n, lo, hi) == (last, 1, last)
        running_id = _meta(db)["journal_id"]
        assert meta["journal_id"] == running_id
        _wait_seq(db, last + 100)  # the gateway kept writing during and after the backup

        # Page by page, so the gateway commits between the steps: still one consistent snapshot, no restart.
        fine = backup(db, tmp_path / "fine.db", quiet=True, pages_per_step=1)
        assert fine.pages > 20 and fine.integrity == ["ok"] and fine.last_seq > last
        conn = sqlite3.connect(f"file:{fine.path}?mode=ro", uri=True)
        try:
            assert conn.execute("SELECT count(*), max(seq) FROM events").fetchone() == (fine.last_seq, fine.last_seq)
        finally:
            conn.close()

        # Restore is refused while the gateway runs, and nothing changes.
        assert is_running(data)
        r = ops_cli("restore", "--config", str(cfg_path), "--from", str(out), "--yes")
        assert r.returncode == 1
        assert "refused" in r.stderr and "sudo systemctl stop floorgate" in r.stderr
        assert gw.proc is not None and f"process {gw.proc.pid}" in r.stderr
        assert _meta(db)["journal_id"] == running_id
    finally:
        assert gw.terminate() == 0
    assert not is_running(data)
    old_last = int(_meta(db)["last_seq"])
    assert old_last > last

    r = ops_cli("restore", "--config", str(cfg_path), "--from", str(out), "--yes")
    assert r.returncode == 0, r.stderr
    meta = _meta(db)
    new_id = meta["journal_id"]
    assert new_id != running_id
    assert meta["restored_from_journal_id"] == running_id
    assert meta["journal_start_seq"] == str(last + 1)
    assert meta["last_seq"] == str(last)
    assert meta["broker_acked_seq"] == meta["hub_acked_seq"] == "0"  # no hub here: everything goes out again
    assert meta["sscc_last_serial"] == str(100_000)  # no SSCC in the backup: the gap from the range start
    assert new_id in r.stdout and f"continue at seq {last + 1}" in r.stdout
    replaced = [p for p in data.iterdir() if p.name.startswith("floorgate.db.replaced-")]
    assert len(replaced) == 1 and stat.S_IMODE(replaced[0].stat().st_mode) == 0o600
    old = _meta(replaced[0])
    assert old["journal_id"] == running_id and int(old["last_seq"]) == old_last  # the WAL came along
    conn = dbinfo.connect_ro(db)
    try:
        assert dbinfo.integrity(conn, full=True) == ["ok"]
    finally:
        conn.close()

    # The gateway starts on the restored journal: new id, next event is last + 1.
    gw = wired_gateway(cfg_path).start()
    try:
        started = gw.wait_log(lambda rec: rec.get("msg") == "gateway started")
        assert started["journal"] == new_id and started["last_seq"] == last
    finally:
        assert gw.terminate() == 0


async def _small_journal(db_dir: Path, events: int = 20) -> Path:
    cfg = parse_config({"data_dir": str(db_dir)}, "<test>")
    clock = ManualClock()
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    for i in range(events):
        def op(f: Floor, c: Change, i: int = i) -> None:
            raise_alarm(f, c, f"a{i}", "test", "info", f"m{i}", clock.now())
        await s.execute(op)
    await j.close()
    return cfg.db_path


async def test_restored_journal_continues_with_sscc_gap(tmp_path: Path) -> None:
    src = await _small_journal(tmp_path / "src")
    conn = sqlite3.connect(src)
    conn.execute("INSERT INTO meta(key, value) VALUES ('sscc_last_serial', '500')")
    conn.commit()
    conn.close()
    out = tmp_path / "b.db"
    res = backup(src, out, quiet=True)
    assert res.last_seq == 20 and res.integrity == ["ok"]
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path / "gw"}"\n[packing]\nsscc_restore_gap = 1000\n')
    cfg = load_config(cfg_path)
    r = restore(cfg, out, quiet=True)
    assert r.replaced is None and r.start_seq == 21 and r.sscc_last_serial == 1500
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=ManualClock())
    try:
        assert j.journal_id == r.new_journal_id and j.start_seq == 21 and j.last_seq == 20
        assert await j.earliest_seq() == 21  # the old id's events cannot be replayed as the new id's
        change = Change()
        change.emit("alarm.raised", {"alarm_id": "x", "code": "x", "severity": "info", "message": "after restore"})
        stored = await j.commit(change)
        assert stored[0].seq == 21 and f'"journal":"{r.new_journal_id}"' in stored[0].body
    finally:
        await j.close()


async def test_restore_refused_while_locked_in_process(tmp_path: Path) -> None:
    src = await _small_journal(tmp_path / "src", 3)
    out = tmp_path / "b.db"
    backup(src, out, quiet=True)
    cfg = parse_config({"data_dir": str(tmp_path / "gw")}, "<test>")
    with acquire_run_lock(cfg.data_dir):
        with pytest.raises(AlreadyRunning, match="Stop it first"):
            restore(cfg, out, quiet=True)
        with pytest.raises(AlreadyRunning):
            acquire_run_lock(cfg.data_dir)  # one gateway per data directory
    restore(cfg, out, quiet=True)


async def test_bad_backup_files_are_refused_clearly(tmp_path: Path) -> None:
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path / "gw"}"\n')
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE meta(key TEXT, value TEXT)")
    conn.commit()
    conn.close()
    for path, words in ((tmp_path / "missing.db", "no such backup file"), (garbage, "not a Floorgate backup"),
                        (plain, "no journal id")):
        r = ops_cli("restore", "--config", str(cfg_path), "--from", str(path), "--yes")
        assert r.returncode == 1 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "gw" / "floorgate.db").exists()


async def test_backup_refuses_to_overwrite_and_names_a_missing_database(tmp_path: Path) -> None:
    src = await _small_journal(tmp_path / "src", 2)
    out = tmp_path / "b.db"
    backup(src, out, quiet=True)
    with pytest.raises(BackupError, match="--force"):
        backup(src, out, quiet=True)
    backup(src, out, force=True, quiet=True)
    with pytest.raises(BackupError, match="no database here"):
        backup(tmp_path / "nothing" / "floorgate.db", tmp_path / "c.db", quiet=True)
    # A place no file can be made (as a read-only stick): the reason, not a traceback (as root, /proc is one).
    with pytest.raises(BackupError, match=r"cannot write /proc/floorgate-backup.db: .*nothing was written"):
        backup(src, Path("/proc/floorgate-backup.db"), quiet=True)


async def test_restore_refuses_another_gateways_backup(tmp_path: Path) -> None:
    """Found by restoring zone-b's backup on zone-a's box: it succeeded, zone-b's orders ran on zone-a, and its
    unacked events went out on zone-a's topics with "gateway": "zone-b" in their envelopes."""
    src = await _small_journal(tmp_path / "src", 2)  # dc1/zone-a
    out = tmp_path / "b.db"
    backup(src, out, quiet=True)
    other = parse_config({"data_dir": str(tmp_path / "gw"), "gateway": "zone-b"}, "<test>")
    with pytest.raises(BackupError, match=r"backup of gateway dc1/zone-a, and this config is dc1/zone-b"):
        restore(other, out, quiet=True)
    assert not other.db_path.exists()
    same = parse_config({"data_dir": str(tmp_path / "gw")}, "<test>")
    assert restore(same, out, quiet=True).new_journal_id


async def test_a_renamed_gateway_restores_its_own_backup(tmp_path: Path) -> None:
    """From a review: the journal kept the name it was created under, so a gateway renamed in its config could
    not restore its own later backups ("a backup of gateway dc1/zone-a"). The journal now follows the config."""
    data = tmp_path / "gw"
    old = parse_config({"data_dir": str(data), "gateway": "zone-a"}, "<test>")
    renamed = parse_config({"data_dir": str(data), "gateway": "zone-a1"}, "<test>")
    clock = ManualClock()
    for cfg in (old, renamed):  # ran as zone-a, then renamed (same box, same data_dir, same journal)
        j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
        await j.close()
    assert _meta(renamed.db_path)["gateway"] == "zone-a1"
    out = tmp_path / "b.db"
    backup(renamed.db_path, out, quiet=True)
    assert restore(renamed, out, quiet=True).new_journal_id


def test_a_database_with_no_journal_yet_is_not_backed_up(tmp_path: Path) -> None:
    """A database with the schema but no journal id (an older `floorgate user set-password` before the first
    start made one): its "backup" was written (rc 0) and then refused by restore, when it was needed."""
    from gateway.journal.schema import migrate

    db = tmp_path / "gw" / "floorgate.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn)
    conn.close()
    with pytest.raises(BackupError, match="holds no journal yet"):
        backup(db, tmp_path / "b.db", quiet=True)
    assert not (tmp_path / "b.db").exists()


async def test_a_password_set_before_the_first_start_makes_the_journal(tmp_path: Path) -> None:
    """`floorgate user set-password` before the first start gives the database its journal id and names, as
    the gateway would: its backup is one `restore` takes, and the gateway then opens the same journal."""
    from gateway.users import hash_password, store_password

    cfg = parse_config({"site": "dc1", "gateway": "zone-a", "data_dir": str(tmp_path / "gw")}, "<test>")
    store_password(cfg.db_path, "s1", hash_password("a long enough password"), site=cfg.site, gateway=cfg.gateway)
    meta = _meta(cfg.db_path)
    assert (meta["site"], meta["gateway"]) == ("dc1", "zone-a") and meta["journal_id"]
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=ManualClock())
    assert j.journal_id == meta["journal_id"]
    await j.close()
    out = tmp_path / "b.db"
    backup(cfg.db_path, out, quiet=True)
    assert restore(cfg, out, quiet=True).old_journal_id == meta["journal_id"]


async def test_restore_over_a_damaged_database_moves_it_aside(tmp_path: Path) -> None:
    src = await _small_journal(tmp_path / "src", 2)
    out = tmp_path / "b.db"
    backup(src, out, quiet=True)
    cfg = parse_config({"data_dir": str(tmp_path / "gw")}, "<test>")
    cfg.db_path.parent.mkdir()
    cfg.db_path.write_bytes(b"\x00garbage" * 1000)
    r = restore(cfg, out, quiet=True)
    assert r.replaced is not None and r.replaced.read_bytes() == b"\x00garbage" * 1000
    assert _meta(cfg.db_path)["journal_id"] == r.new_journal_id


def test_restore_refused_while_floorgate_run_runs(tmp_path: Path) -> None:
    """The real `floorgate run`: refused through the run lock once App takes it, and before that through
    SQLite (the running gateway has the database open)."""
    data = tmp_path / "data"
    cfg_path = write_config(tmp_path / "floorgate.toml", data)
    gw = floorgate_run(cfg_path).start()
    try:
        if app_wires("acquire_run_lock"):
            assert is_running(data)
        journal_id = _meta(data / "floorgate.db")["journal_id"]
        out = tmp_path / "b.db"
        assert ops_cli("backup", "--config", str(cfg_path), "--out", str(out), "--quiet").returncode == 0
        r = ops_cli("restore", "--config", str(cfg_path), "--from", str(out), "--yes")
        assert r.returncode == 1 and "refused" in r.stderr and "Stop it first" in r.stderr
        assert _meta(data / "floorgate.db")["journal_id"] == journal_id
    finally:
        assert gw.terminate() == 0
    assert not is_running(data)


def _inodes(paths: list[Path]) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            out[p.name] = None
        else:
            out[p.name] = (st.st_dev, st.st_ino)
    return out


def _deleted_db_fds(pid: int) -> list[str]:
    """What the process has open of a floorgate.db that is no longer in its directory (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.is_dir():
        return []
    found = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "floorgate.db" in target and target.endswith("(deleted)"):
            found.append(target)
    return found


def test_backup_refuses_the_running_gateways_own_files(tmp_path: Path) -> None:
    """`--out` the live database (or a side file SQLite keeps beside it, or the run lock) is refused even
    with --force: replacing it under a running gateway loses events and reuses their seq numbers."""
    data = tmp_path / "data"
    cfg_path = write_config(tmp_path / "floorgate.toml", data)
    db = data / "floorgate.db"
    side = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal"), data / "floorgate.lock"]
    gw = wired_gateway(cfg_path, load=True).start()
    try:
        seq = _wait_seq(db, 50)
        journal_id = _meta(db)["journal_id"]
        before = _inodes(side)
        assert before["floorgate.db-wal"] is not None and before["floorgate.lock"] is not None
        # The CLI as the tester ran it: the absolute path, and a relative one (ops_cli runs in the repo root).
        for out in (str(db), os.path.relpath(db, ROOT)):
            r = ops_cli("backup", "--config", str(cfg_path), "--out", out, "--force")
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert "refused" in r.stderr and "the live database" in r.stderr and "--force" in r.stderr
            assert "backup written" not in r.stdout and "Traceback" not in r.stderr
        # Each side file, the lock, a path through `..`, and a symlinked directory into the data dir.
        (tmp_path / "data-link").symlink_to(data, target_is_directory=True)
        for out_path in (*side[1:], data / ".." / "data" / "floorgate.db", tmp_path / "data-link" / "floorgate.db",
                         tmp_path / "data-link" / "floorgate.db-wal"):
            with pytest.raises(BackupError, match="refused") as e:
                backup(db, out_path, force=True, quiet=True)
            assert "Nothing was written" in str(e.value)
        assert _inodes(side) == before  # the same files, and no -journal made
        assert not [p for p in data.iterdir() if p.name.endswith(".partial")]
        assert gw.proc is not None and _deleted_db_fds(gw.proc.pid) == []
        # The gateway keeps committing into the file that stays: the events after the refusal are on disk.
        later = _wait_seq(db, seq + 100)
    finally:
        assert gw.terminate() == 0
    gw = wired_gateway(cfg_path).start()
    try:
        started = gw.wait_log(lambda rec: rec.get("msg") == "gateway started")
        assert started["journal"] == journal_id and started["last_seq"] >= later
    finally:
        assert gw.terminate() == 0


def test_backup_refuses_a_symlink_to_the_live_database(tmp_path: Path) -> None:
    db = asyncio.run(_small_journal(tmp_path / "data", 3))
    ino = db.stat().st_ino
    link = tmp_path / "backup.db"
    link.symlink_to(db)
    for force in (False, True):
        with pytest.raises(BackupError, match=r"refused: .* is the live database"):
            backup(db, link, force=force, quiet=True)
    assert link.is_symlink() and db.stat().st_ino == ino
    # A dangling symlink to where SQLite would make the -journal, and a hard link: the same file too.
    (tmp_path / "j.db").symlink_to(Path(f"{db}-journal"))
    with pytest.raises(BackupError, match="-journal file"):
        backup(db, tmp_path / "j.db", force=True, quiet=True)
    os.link(db, tmp_path / "hard.db")
    with pytest.raises(BackupError, match="the live database"):
        backup(db, tmp_path / "hard.db", force=True, quiet=True)
    assert not Path(f"{db}-journal").exists() and db.stat().st_ino == ino
    assert backup(db, tmp_path / "data" / "ok.db", quiet=True).last_seq == 3  # the data dir itself is fine


def _restore_on_a_terminal(cfg_path: Path, source: Path, answer: str) -> tuple[int, str]:
    """`floorgate restore` without --yes with a pseudo-terminal as stdin, answering `answer`."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.ops.cli", "restore", "--config", str(cfg_path),
                                 "--from", str(source), "--quiet"], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        os.close(slave)
        slave = -1
        os.write(master, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=120)
        return proc.returncode, out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_restore_without_yes_needs_a_terminal_and_a_yes(tmp_path: Path) -> None:
    """A restore replaces the journal: `echo n | floorgate restore` (stdin no terminal) must not restore."""
    db = asyncio.run(_small_journal(tmp_path / "data", 3))
    out = tmp_path / "b.db"
    backup(db, out, quiet=True)
    cfg_path = write_config(tmp_path / "floorgate.toml", tmp_path / "data")
    journal_id = _meta(db)["journal_id"]
    for stdin in ("n\n", "y\n", ""):
        r = ops_cli("restore", "--config", str(cfg_path), "--from", str(out), stdin=stdin)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "no terminal to ask for confirmation: use --yes" in r.stderr and "nothing done" in r.stderr
        assert "restored" not in r.stdout
    assert _meta(db)["journal_id"] == journal_id
    assert not [p for p in db.parent.iterdir() if ".replaced-" in p.name]

    rc, text = _restore_on_a_terminal(cfg_path, out, "n")
    assert rc == 1 and "[y/N]" in text and "nothing done" in text, text
    assert _meta(db)["journal_id"] == journal_id
    rc, text = _restore_on_a_terminal(cfg_path, out, "y")
    assert rc == 0 and "restored" in text, text
    assert _meta(db)["journal_id"] != journal_id


async def test_events_the_hub_had_not_acked_go_out_again_after_a_restore(tmp_path: Path) -> None:
    """A backup taken while the uplink was down (the hub had acked up to 14 of 20): after the restore those
    six were counted as published and acked, under no id anyone could replay, and were pruned in time. They
    now go out again, under their old journal id and seq, before the new id's events."""
    from tests.brokers import Broker
    from tests.sync.conftest import gateway_config, running_gateway, running_hub

    src = await _small_journal(tmp_path / "src")
    conn = sqlite3.connect(src)
    old_id = dict(conn.execute("SELECT key, value FROM meta").fetchall())["journal_id"]
    conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                     [("hub_acked_seq", "14"), ("broker_acked_seq", "14")])
    conn.commit()
    conn.close()
    out = tmp_path / "b.db"
    backup(src, out, quiet=True)
    broker = Broker(tmp_path / "broker").start()
    try:
        cfg = gateway_config(tmp_path, broker)
        r = restore(cfg, out, quiet=True)
        assert r.start_seq == 21
        async with running_hub(broker.port) as hub, running_gateway(cfg) as app:
            assert app.service is not None
            now = ManualClock().now()
            await app.service.execute(lambda f, c: raise_alarm(f, c, "after", "test", "info", "after", now))
            await hub.wait_until(lambda: old_id in hub.journals and r.new_journal_id in hub.journals
                                 and 21 in hub.journals[r.new_journal_id].events)
            await hub.wait_until(lambda: sorted(hub.journals[old_id].events) == list(range(15, 21)))
            assert all(e["journal"] == old_id for e in hub.journals[old_id].events.values())
            assert hub.conflicts == [] and hub.invalid == []
            # The broker took some and lost them (SPEC: it may): the hub asks for them under the old id. It was
            # refused under either id ("not this gateway's journal"; "no longer stored"), and the gap stayed.
            again = await hub.command("sync.replay", {"journal": old_id, "from_seq": 16, "to_seq": 30})
            assert again["ok"] and (again["from_seq"], again["to_seq"], again["count"]) == (16, 20, 5), again
            wrong = await hub.command("sync.replay", {"journal": r.new_journal_id, "from_seq": 16})
            assert wrong["error"]["code"] == "replay_unavailable" and wrong["error"]["earliest_seq"] == 21
            assert wrong["error"]["journal"] == old_id
            other = await hub.command("sync.replay", {"journal": "another", "from_seq": 1})
            assert other["error"]["code"] == "replay_unavailable"
    finally:
        broker.stop()
