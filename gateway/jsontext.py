"""Compact JSON text helpers shared by the hot paths (journal envelopes, event log lines).

`dumps` goes through orjson (a maintained Rust encoder, ~5x faster than the json module on an event's data,
which the journal serializes for every event) and falls back to the json module for what orjson refuses
(non-string keys, integers beyond 64 bits), so callers see one behaviour: compact, UTF-8, never ASCII-escaped.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return _ENCODER.encode(obj)


def json_str(text: str) -> str:
    """A JSON string literal; ids validated as plain keys need no escaping, anything else goes through json."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


# A \uD800-\uDFFF escape: legal JSON syntax, but only in a high-low pair is it Unicode text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A number too large for a float (`1e400`) is valid JSON that Python reads as infinity: the same value the
    words NaN and Infinity are refused for. orjson then stored it as null, so a carton's tare of 1e400 came
    back from the journal as None after a restart, and the carton scan failed on it."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range for a number")
    return value


def loads_strict(payload: bytes) -> Any:
    """JSON from outside (the hub's commands), as the contract defines it, not as Python's json module
    accepts it: strict UTF-8 (the json module decodes bytes with "surrogatepass"), no NaN or Infinity (nor a
    number beyond a float's range), and no lone UTF-16 surrogate escape (`"\\udc00"`). A lone surrogate becomes
    a str that no UTF-8 encoder takes, and the first commit or publish that met it failed: a cmd_id holding one
    stopped the gateway, again after every restart, as the broker redelivered the command. The json module
    rather than orjson: orjson reads an integer beyond 64 bits as a float, silently. Raises ValueError
    (UnicodeDecodeError and json.JSONDecodeError are ValueErrors) or RecursionError."""
    text = payload.decode("utf-8")
    data = json.loads(text.removeprefix("\ufeff"), parse_constant=_reject_constant, parse_float=_finite_float)
    if _SURROGATE_ESCAPE.search(text):  # rare (an emoji written as escapes): check the text really encodes
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone UTF-16 surrogate escape: not Unicode text") from None
    return data
