"""GTIN normalisation on top of biip (a maintained GS1 library) so check digits are never hand-rolled."""

from __future__ import annotations

from biip import ParseError
from biip.gtin import Gtin


def normalize_gtin(value: str) -> str:
    """Return the GTIN as 14 digits, or raise ValueError naming what is wrong."""
    if not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise ValueError(f"GTIN {value!r} must be 8, 12, 13 or 14 digits")
    try:
        return str(Gtin.parse(value).as_gtin_14())
    except ParseError as e:
        raise ValueError(str(e)) from None
