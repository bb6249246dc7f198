"""`floorgate export`: audit or events, CSV (UTF-8 with BOM) or JSON, date filters, chunked reads from a
read-only connection while the journal is open and being written."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import Config, parse_config
from gateway.domain.change import Change
from gateway.journal import Journal
from gateway.ops.export import export, parse_bound
from tests.ops.conftest import ops_cli

RAWS = ['4006381333931', 'Müller, "quoted"; semi', '\\x1d0109506000134352', '=1+2', 'emoji \U0001f4e6']


@dataclass
class Setup:
    cfg: Config
    cfg_path: Path
    journal: Journal
    clock: ManualClock
    bodies: list[str]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    """Three days of events and audit rows (5 per day); the journal stays open while the tests export."""
    cfg_path = tmp_path / "floorgate.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    cfg = parse_config({"data_dir": str(tmp_path / "data")}, "<test>")
    clock = ManualClock()  # 2026-11-23 08:00Z
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    bodies = []
    for day in range(3):
        for i, raw in enumerate(RAWS):
            c = Change(cmd_id=f"cmd-{day}-{i}")
            c.emit("scan.rejected", {"device_id": "scan-1", "operator_id": "p1", "code": "unknown_barcode",
                                     "reason": "test", "raw": raw}, order_id=f"O-{day}")
            c.audit.append({"kind": "scan", "device_id": "scan-1", "operator_id": "p1", "order_id": f"O-{day}",
                            "lot": "L1" if i == 0 else None, "raw": raw, "result": "rejected"})
            bodies += [e.body for e in await j.commit(c)]
            clock.advance(600)
        clock.advance(86400 - 5 * 600)
    yield Setup(cfg, cfg_path, j, clock, bodies)
    await j.close()


def _csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV must start with a UTF-8 BOM"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def test_parse_bound() -> None:
    assert parse_bound("2026-11-24", upper=False) == "2026-11-24T00:00:00.000Z"
    assert parse_bound("2026-11-24", upper=True) == "2026-11-25T00:00:00.000Z"  # the whole day included
    assert parse_bound("2026-11-24T10:00:00+01:00", upper=False) == "2026-11-24T09:00:00.000Z"


async def test_audit_csv_exact_and_with_bom(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "audit.csv"
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "audit", "--format", "csv", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "export audit [" in r.stderr and "15/15" in r.stderr  # progress on stderr
    rows = _csv(out)
    assert len(rows) == 15
    assert list(rows[0]) == ["id", "ts", "kind", "device_id", "operator_id", "order_id", "lot", "raw", "result",
                             "details"]
    # Byte for byte, commas, quotes and all; a formula gets its leading `'` (test_csv_cells_never_run_as_formulas).
    assert [r["raw"] for r in rows[:5]] == [*RAWS[:3], "'" + RAWS[3], RAWS[4]]
    assert rows[0]["lot"] == "L1" and rows[1]["lot"] == ""
    assert json.loads(rows[1]["details"])["raw"] == RAWS[1]
    assert out.read_bytes().count(b"\r\n") == 16


async def test_date_filters(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "day2.csv"
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "audit", "--from", "2026-11-24",
                "--to", "2026-11-24", "--format", "csv", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = _csv(out)
    assert len(rows) == 5 and {r["order_id"] for r in rows} == {"O-1"}
    assert r.stderr == ""  # --quiet
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "events", "--from", "2026-11-24T08:10:00Z",
                "--to", "2026-11-24T08:30:00Z", "--format", "json", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert [e["ts"] for e in json.loads(out.read_text())] == ["2026-11-24T08:10:00.000Z", "2026-11-24T08:20:00.000Z"]


async def test_events_json_are_the_envelopes_as_published(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "events.json"
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "events", "--format", "json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert not out.read_bytes().startswith(b"\xef\xbb\xbf")
    events = json.loads(out.read_text(encoding="utf-8"))
    assert events == [json.loads(b) for b in setup.bodies]
    csv_out = tmp_path / "events.csv"
    assert ops_cli("export", "--config", str(setup.cfg_path), "--what", "events", "--format", "csv",
                   "--out", str(csv_out), "--quiet").returncode == 0
    rows = _csv(csv_out)
    assert rows[3]["cmd_id"] == "cmd-0-3" and json.loads(rows[3]["data"])["raw"] == RAWS[3]
    assert rows[0]["journal"] == setup.journal.journal_id and rows[0]["seq"] == "1"


async def test_chunks_while_the_journal_writes(setup: Setup, tmp_path: Path) -> None:
    for i in range(30):  # the journal is open and writing; the export reads beside it
        c = Change()
        c.audit.append({"kind": "scan", "raw": f"late-{i}", "result": "ok"})
        await setup.journal.commit(c)
    out = tmp_path / "a.json"
    n = export(setup.cfg.db_path, "audit", "json", str(out), chunk=7, quiet=True)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert n == len(rows) == 45 and [r["id"] for r in rows] == list(range(1, 46))
    n = export(setup.cfg.db_path, "audit", "json", str(out), since="2026-11-25T00:00:00.000Z", chunk=2, quiet=True)
    assert n == 5 + 30


async def test_empty_result_and_stdout(setup: Setup) -> None:
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "audit", "--from", "2030-01-01",
                "--format", "json", "--out", "-", "--quiet")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'data_dir = "{tmp_path}"\n')
    r = ops_cli("export", "--config", str(cfg_path), "--what", "audit", "--format", "csv", "--out",
                str(tmp_path / "x.csv"))
    assert r.returncode == 1 and "no database here" in r.stderr
    r = ops_cli("export", "--config", str(cfg_path), "--what", "audit", "--from", "24.11.2026", "--format", "csv",
                "--out", str(tmp_path / "x.csv"))
    assert r.returncode == 1 and "not a date (YYYY-MM-DD)" in r.stderr
    r = ops_cli("export", "--config", str(cfg_path), "--what", "orders", "--format", "csv", "--out", "-")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert not (tmp_path / "x.csv").exists()
    assert "Traceback" not in r.stderr


TRIGGERS = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\t=1+2", "\r=1+2"]


async def test_csv_cells_never_run_as_formulas(setup: Setup, tmp_path: Path) -> None:
    """Every text cell from outside (scans, device, operator, order, lot, result, command id) starting with
    a formula trigger gets a leading `'`, as in the supervisor's CSV; numbers (id, seq) stay numbers, and
    JSON keeps the text exactly as stored."""
    for i, bad in enumerate(TRIGGERS):
        c = Change(cmd_id=bad)
        c.emit("scan.rejected", {"device_id": bad, "operator_id": bad, "code": "unknown_barcode", "reason": bad,
                                 "raw": bad}, order_id=bad)
        c.audit.append({"kind": bad, "device_id": bad, "operator_id": bad, "order_id": bad, "lot": bad,
                        "raw": bad, "result": bad, "n": -5 - i})
        await setup.journal.commit(c)
    out = tmp_path / "audit.csv"
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "audit", "--format", "csv", "--out", str(out),
                "--quiet")
    assert r.returncode == 0, r.stderr
    rows = _csv(out)[15:]
    assert len(rows) == len(TRIGGERS)
    for row, bad in zip(rows, TRIGGERS, strict=True):
        for col in ("kind", "device_id", "operator_id", "order_id", "lot", "raw", "result"):
            assert row[col] == "'" + bad, (col, row[col])
        assert row["id"].isdigit() and json.loads(row["details"])["raw"] == bad
    assert [json.loads(row["details"])["n"] for row in rows] == [-5 - i for i in range(len(TRIGGERS))]

    out = tmp_path / "events.csv"
    r = ops_cli("export", "--config", str(setup.cfg_path), "--what", "events", "--format", "csv", "--out", str(out),
                "--quiet")
    assert r.returncode == 0, r.stderr
    rows = _csv(out)[15:]
    for n, (row, bad) in enumerate(zip(rows, TRIGGERS, strict=True), start=16):
        assert row["order_id"] == row["cmd_id"] == "'" + bad
        assert row["seq"] == str(n) and json.loads(row["data"])["raw"] == bad

    out = tmp_path / "audit.json"
    assert ops_cli("export", "--config", str(setup.cfg_path), "--what", "audit", "--format", "json",
                   "--out", str(out), "--quiet").returncode == 0
    assert [a["raw"] for a in json.loads(out.read_text(encoding="utf-8"))[15:]] == TRIGGERS  # byte for byte


def test_export_refuses_to_replace_the_live_database(tmp_path: Path) -> None:
    """The export is renamed into place: onto the database (or its -wal) it would swap the journal for a CSV."""
    data = tmp_path / "data"
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'data_dir = "{data}"\n')
    data.mkdir()
    conn = sqlite3.connect(data / "floorgate.db")
    conn.executescript("PRAGMA journal_mode=wal; CREATE TABLE audit(id INTEGER PRIMARY KEY, ts TEXT, kind TEXT, "
                       "device_id TEXT, operator_id TEXT, order_id TEXT, lot TEXT, raw TEXT, result TEXT, "
                       "body TEXT); INSERT INTO audit(ts, kind, body) VALUES ('t', 'scan', '{}');")
    try:
        before = {p.name: p.stat().st_ino for p in data.iterdir()}
        for out in (data / "floorgate.db", data / "floorgate.db-wal", tmp_path / "." / "data" / "floorgate.db"):
            r = ops_cli("export", "--config", str(cfg_path), "--what", "audit", "--format", "csv", "--out", str(out))
            assert r.returncode == 1 and "refused" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert {p.name: p.stat().st_ino for p in data.iterdir()} == before
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (1,)
    finally:
        conn.close()
