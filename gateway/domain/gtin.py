"""GTIN normalisation on top of biip (a maintained GS1 library) so check digits are never hand-rolled."""

from __future__ import annotations

from biip.checksums import gs1_standard_check_digit


def normalize_gtin(value: str) -> str:
    """Return the GTIN as 14 digits, or raise ValueError naming what is wrong.

    Only biip's check digit is used, not `Gtin.parse`: the parse also classifies the prefix (country, RCN),
    which costs three times as much and is never used here, and a 100,000-SKU master data sync pays it per
    GTIN on the event loop. Leading zeros weigh nothing in the check digit, so the padded form checks alike.
    """
    if not value.isdecimal() or not value.isascii() or len(value) not in (8, 12, 13, 14):
        raise ValueError(f"GTIN {value!r} must be 8, 12, 13 or 14 digits")
    expected = gs1_standard_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise ValueError(f"Invalid GTIN check digit for {value!r}: expected {expected}, got {value[-1]}")
    return value.zfill(14)
