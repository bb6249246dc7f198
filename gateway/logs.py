"""Structured logs: one JSON object per line on stdout, which journald stores as is.

Secrets registered with `redact()` are masked in every line, whatever logger wrote it, so a password that
ends up in an exception message still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from gateway.clock import rfc3339
from gateway.jsontext import dumps, json_str

_SECRETS: set[str] = set()


def redact(secret: str) -> None:
    if secret and len(secret) >= 3:
        _SECRETS.add(secret)


def scrub(text: str) -> str:
    for s in sorted(_SECRETS, key=len, reverse=True):  # longest first: one secret may contain another
        if s in text:
            text = text.replace(s, "***")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": rfc3339(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = json.dumps(out, ensure_ascii=False, default=str)
        return scrub(line) if _SECRETS else line


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("pymodbus", "uvicorn.access", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_events_logger = logging.getLogger("floorgate.events")

# Events whose line carries their data: what a technician reads in `journalctl` (which scanner went offline and
# why, which alarm, which scan was refused and its code, which hold). They are few beside the order and pick
# events, whose lines stay short: the hot path writes one per event at thousands per second.
DETAILED = ("device.", "alarm.", "scan.", "dispatch.")


def _data_member(body: str) -> str:
    """The event's data, without a scan's `raw`: a refused scan may be a badge code, which logs a person in
    on the pages (the support bundle keeps raw scans out for that reason, gateway/ops/bundle.py)."""
    try:
        data = orjson.loads(body).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    if isinstance(data, dict) and "raw" in data:
        data = {k: v for k, v in data.items() if k != "raw"}
    text = f',"data":{dumps(data)}'
    return scrub(text) if _SECRETS else text


def log_events(events: Sequence[tuple[int, str, str, str, str | None, Any, Any]]) -> None:
    """One line per committed event, from the journal's rows (seq, event_id, type, ts, order_id, ...), formatted
    without the logging machinery: this runs for every event on the journal's hot path, at thousands per
    second."""
    if not events or not _events_logger.isEnabledFor(logging.INFO):
        return
    lines = []
    for seq, _, typ, ts, order_id, _, body in events:
        oid = f',"order_id":{json_str(order_id)}' if order_id is not None else ""
        data = _data_member(body) if typ.startswith(DETAILED) else ""
        lines.append(f'{{"ts":"{ts}","level":"info","logger":"floorgate.events","msg":"event","seq":{seq},'
                     f'"type":"{typ}"{oid}{data}}}\n')
    text = "".join(lines)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and isinstance(h.formatter, JsonFormatter):
            with h.lock:  # type: ignore[union-attr]
                h.stream.write(text)
                h.flush()
