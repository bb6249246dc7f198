"""`floorgate export`: the audit trail or the event log as CSV or JSON, safe while the gateway runs.

Rows are read in chunks by key from a read-only connection, each chunk its own short read, so a long
export neither holds the WAL open nor slows the gateway's commits. CSV is UTF-8 with a BOM, because that
is what makes Excel (where audit exports usually end up) read umlauts and the like correctly. JSON has
stored text exactly as stored: an audit file must show what was scanned, byte for byte. CSV does too,
except that a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`
(gateway/csvcell.py, as in the supervisor's CSV), because a spreadsheet would run it as a formula: a
scanned `=HYPERLINK(...)` must stay text.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from gateway.clock import parse_rfc3339, rfc3339
from gateway.csvcell import cell
from gateway.ops import dbinfo
from gateway.ops.backup import gateway_file
from gateway.ops.progress import Progress

CHUNK = 5000
AUDIT_COLUMNS = ("id", "ts", "kind", "device_id", "operator_id", "order_id", "lot", "raw", "result")
EVENT_COLUMNS = ("seq", "journal", "event_id", "type", "ts", "order_id", "cmd_id", "data")


class ExportError(Exception):
    pass


def parse_bound(text: str, upper: bool) -> str:
    """A date (`YYYY-MM-DD`, the whole day) or an RFC 3339 time, as the stored `ts` text to compare with.

    The lower bound is inclusive, the upper exclusive; an upper date includes that whole day.
    """
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d")
            if upper:
                day += timedelta(days=1)
            return day.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return rfc3339(parse_rfc3339(text))
    except ValueError:
        raise ExportError(f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time "
                          "(2026-11-23T16:04:05Z)") from None


def _where(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if since:
        clauses.append("ts >= ?")
        args.append(since)
    if until:
        clauses.append("ts < ?")
        args.append(until)
    return (" AND ".join(clauses) or "1"), args


def _rows(conn: sqlite3.Connection, what: str, since: str | None, until: str | None,
          chunk: int) -> Iterator[tuple[Any, ...]]:
    key = "id" if what == "audit" else "seq"
    cols = ("id, ts, kind, device_id, operator_id, order_id, lot, raw, result, body" if what == "audit"
            else "seq, journal, event_id, type, ts, order_id, body")
    where, args = _where(since, until)
    last = -1
    while True:
        rows = conn.execute(f"SELECT {cols} FROM {what} WHERE {key} > ? AND {where} ORDER BY {key} LIMIT ?",
                            [last, *args, chunk]).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
        if len(rows) < chunk:
            return


def _csv_row(what: str, row: tuple[Any, ...]) -> list[Any]:
    if what == "audit":
        cells = list(row)  # the columns, then `details`: the whole audit record as stored
    else:
        seq, journal, event_id, typ, ts, order_id, body = row
        env = json.loads(body)
        data = json.dumps(env.get("data", {}), ensure_ascii=False, separators=(",", ":"))
        cells = [seq, journal, event_id, typ, ts, order_id or "", env.get("cmd_id", ""), data]
    # Every cell: scans, names, order ids, reasons and command ids all come from outside.
    return [cell(v) for v in cells]


def _json_text(what: str, row: tuple[Any, ...]) -> str:
    if what == "events":
        return str(row[-1])  # the envelope exactly as it was published
    body = json.loads(row[9])
    return json.dumps({"id": row[0], **body}, ensure_ascii=False, separators=(",", ":"))


def write_export(db_path: Path, what: str, fmt: str, out: TextIO, *, since: str | None = None,
                 until: str | None = None, progress: Progress | None = None, chunk: int = CHUNK) -> int:
    if what not in ("audit", "events"):
        raise ExportError(f"--what must be audit or events, not {what!r}")
    if fmt not in ("csv", "json"):
        raise ExportError(f"--format must be csv or json, not {fmt!r}")
    try:
        conn = dbinfo.connect_ro(db_path)
    except dbinfo.DatabaseMissing as e:
        raise ExportError(str(e)) from None
    n = 0
    try:
        if progress is not None:
            where, args = _where(since, until)
            progress.update(0, int(conn.execute(f"SELECT count(*) FROM {what} WHERE {where}", args).fetchone()[0]))
        if fmt == "csv":
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow([*AUDIT_COLUMNS, "details"] if what == "audit" else EVENT_COLUMNS)
            for row in _rows(conn, what, since, until, chunk):
                w.writerow(_csv_row(what, row))
                n += 1
                if progress is not None and n % 1000 == 0:
                    progress.update(n)
        else:
            out.write("[")
            for row in _rows(conn, what, since, until, chunk):
                out.write(("\n" if n == 0 else ",\n") + _json_text(what, row))
                n += 1
                if progress is not None and n % 1000 == 0:
                    progress.update(n)
            out.write("\n]\n" if n else "]\n")
    except sqlite3.Error as e:
        raise ExportError(f"reading {db_path} failed: {e}") from None
    finally:
        conn.close()
    if progress is not None:
        progress.update(n, n)
        progress.finish()
    return n


def export(db_path: Path, what: str, fmt: str, out_path: str, *, since: str | None = None,
           until: str | None = None, stream: TextIO | None = None, quiet: bool = False,
           chunk: int = CHUNK) -> int:
    """Export to a file (written aside and renamed when complete) or to stdout with `-`."""
    bar = Progress(f"export {what}", 0, "rows", stream=stream, quiet=quiet)
    if out_path == "-":
        return write_export(db_path, what, fmt, sys.stdout, since=since, until=until, progress=bar, chunk=chunk)
    out = Path(out_path)
    hit = gateway_file(db_path, out)
    if hit is not None:  # the file is renamed into place: that would swap the gateway's file for the export
        path, what_file = hit
        raise ExportError(f"refused: {out} is {what_file} ({path}); an export written there would destroy it. "
                          "Nothing was written: choose another file")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory")
    tmp = out.with_name(f".{out.name}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as f:
            n = write_export(db_path, what, fmt, f, since=since, until=until, progress=bar, chunk=chunk)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return n
