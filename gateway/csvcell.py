"""One guard for every CSV Floorgate writes (the supervisor's day export, `floorgate export`): a text cell that a
spreadsheet would run as a formula gets a leading `'`. Scans, names and order ids come from outside, and a
scanned `=HYPERLINK(...)` must stay text. A leading tab or carriage return counts too: spreadsheets strip it
and read the `=` behind it."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(v: Any) -> Any:
    """A list becomes its items joined by spaces, None an empty cell; numbers pass untouched (`-3` stays a
    number: only text can run as a formula)."""
    if isinstance(v, list):
        v = " ".join(str(x) for x in v)
    if isinstance(v, str) and v[:1] in FORMULA_STARTS:
        return "'" + v
    return "" if v is None else v
