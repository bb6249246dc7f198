"""Read-only queries for the supervisor: a lot recall (every pick and pack of a lot) and the day's picks and
packs as CSV. Both read the journal's read-only connection, so they never hold up a commit.

Sources: the `events` table (pick.line_confirmed, pick.line_short, pack.verified; kept until the hub acked
them and `sync.retention_h` passed) and the `audit` table (every scan with its lot, kept longer). The CSV
is UTF-8 with a BOM so that spreadsheet programs read non-ASCII text right; a text cell that a spreadsheet
would run as a formula gets a leading `'` (gateway/csvcell.py).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from typing import Any

import aiosqlite

from gateway.csvcell import cell

MAX_ROWS = 1000
PICK_TYPES = ("pick.line_confirmed", "pick.line_short")
CSV_COLUMNS = ("ts", "type", "order_id", "task_id", "line_no", "sku", "gtin", "lot", "expiry", "serials", "qty",
               "qty_missing", "location", "operator_id", "via", "station", "tote", "carton", "sscc", "weight_g",
               "expected_g", "seq")


def _day_bounds(day: date) -> tuple[str, str]:
    start = day.strftime("%Y-%m-%dT00:00:00.000Z")
    end = (day + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00.000Z") if day < date.max else "9999-12-32"
    return start, end


async def recall(db: aiosqlite.Connection, lot: str) -> dict[str, Any]:
    """Every pick and pack of `lot` still in the event log, and every scan of it in the audit trail."""
    picks, packs = [], []
    rows = await db.execute_fetchall(
        "SELECT seq, ts, type, order_id, body FROM events WHERE "
        "(type = 'pick.line_confirmed' AND json_extract(body, '$.data.lot') = ?) OR "
        "(type = 'pack.verified' AND EXISTS (SELECT 1 FROM json_each(body, '$.data.items') "
        "WHERE json_extract(value, '$.lot') = ?)) ORDER BY seq LIMIT ?", (lot, lot, MAX_ROWS))
    for seq, ts, typ, order_id, body in rows:
        data = json.loads(body).get("data", {})
        if typ == "pick.line_confirmed":
            picks.append({"seq": seq, "ts": ts, "order_id": order_id, **{k: data.get(k) for k in (
                "task_id", "line_no", "sku", "gtin", "lot", "expiry", "qty", "location", "operator_id", "via")}})
        else:
            qty = sum(int(i.get("qty", 0)) for i in data.get("items", []) if i.get("lot") == lot)
            packs.append({"seq": seq, "ts": ts, "order_id": order_id, "qty": qty, "station": data.get("station"),
                          "operator_id": data.get("operator_id"), "sscc": data.get("sscc"),
                          "tote": data.get("tote")})
    scans = []
    rows = await db.execute_fetchall(
        "SELECT ts, kind, device_id, operator_id, order_id, raw, result FROM audit WHERE lot = ? "
        "ORDER BY id DESC LIMIT ?", (lot, MAX_ROWS))
    for ts, kind, device_id, operator_id, order_id, raw, result in rows:
        scans.append({"ts": ts, "kind": kind, "device_id": device_id, "operator_id": operator_id,
                      "order_id": order_id, "raw": raw, "result": result})
    orders = sorted({str(x["order_id"]) for x in [*picks, *packs, *scans] if x.get("order_id")})
    return {"lot": lot, "orders": orders, "picks": picks, "packs": packs, "scans": scans}


async def day_csv(db: aiosqlite.Connection, day: date) -> str:
    """The day's (UTC) picks and packs, one row per confirmed lot, short line and packed item."""
    start, end = _day_bounds(day)
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    last = 0
    while True:
        rows = list(await db.execute_fetchall(
            "SELECT seq, ts, type, order_id, body FROM events WHERE seq > ? AND ts >= ? AND ts < ? AND "
            "type IN ('pick.line_confirmed', 'pick.line_short', 'pack.verified') ORDER BY seq LIMIT 5000",
            (last, start, end)))
        for seq, ts, typ, order_id, body in rows:
            data = json.loads(body).get("data", {})
            base = {"ts": ts, "type": typ, "order_id": order_id, "seq": seq}
            if typ in PICK_TYPES:
                row = {**data, **base}
                if typ == "pick.line_short":
                    row["qty"] = data.get("qty_picked")
                w.writerow([cell(row.get(c)) for c in CSV_COLUMNS])
                continue
            for item in data.get("items", []) or [{}]:
                row = {**base, **{k: data.get(k) for k in ("station", "operator_id", "tote", "carton", "sscc",
                                                            "weight_g", "expected_g")},
                       "gtin": item.get("gtin"), "lot": item.get("lot"), "serials": item.get("serial"),
                       "qty": item.get("qty")}
                w.writerow([cell(row.get(c)) for c in CSV_COLUMNS])
        if len(rows) < 5000:
            break
        last = rows[-1][0]
    return out.getvalue()
