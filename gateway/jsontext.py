"""Compact JSON text helpers shared by the hot paths (journal envelopes, event log lines)."""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_str(text: str) -> str:
    """A JSON string literal; ids validated as plain keys need no escaping, anything else goes through json."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)
