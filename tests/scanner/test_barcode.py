"""Barcode interpretation (SPEC §2) on plain values: GS1 test vectors, the order of the questions, and
the `raw` escaping rule."""

from __future__ import annotations

import re

import pytest

from gateway.domain.barcode import (
    INVALID_BARCODE,
    UNKNOWN_BARCODE,
    Barcode,
    escape_raw,
    interpret,
    split_symbology,
    strip_controls,
)
from tests.scanner.conftest import master_data

GS = "\x1d"
MD = master_data()


def scan(text: str, symbology: str | None = None, **kw: object) -> Barcode:
    return interpret(text, symbology=symbology, md=MD, open_orders={"O-1", "0614141000012"},
                     totes={"TOTE-B1": "O-1"}, **kw)  # type: ignore[arg-type]


# --- GS1 element strings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("symbology", ["]C1", "]d2", "]Q3", "]e0"])
def test_gs1_symbology_gives_gtin_lot_expiry_serial(symbology: str) -> None:
    b = scan("0109506000134352" + "17261231" + "10LOT-7" + GS + "21SER9", symbology)
    assert (b.kind, b.gtin, b.lot, b.expiry, b.serial) == ("item", "09506000134352", "LOT-7", "2026-12-31", "SER9")
    assert b.sku == "SKU-LOT" and b.units == 1 and b.error is None
    assert b.ais == (("01", "09506000134352"), ("17", "261231"), ("10", "LOT-7"), ("21", "SER9"))


def test_variable_length_ai_last_needs_no_gs() -> None:
    b = scan("0109506000134352" + "10ABC123", "]C1")
    assert (b.kind, b.lot) == ("item", "ABC123")


def test_variable_length_ai_in_the_middle_ends_at_gs() -> None:
    b = scan("0109506000134352" + "10ABC" + GS + "17270228", "]C1")
    assert (b.lot, b.expiry) == ("ABC", "2027-02-28")


def test_variable_length_ai_without_gs_swallows_the_rest() -> None:
    # Without the GS, "17270228" is part of the lot (GS1's rule, not a guess): the expiry is absent.
    b = scan("0109506000134352" + "10ABC" + "17270228", "]C1")
    assert (b.kind, b.lot, b.expiry) == ("item", "ABC17270228", None)


@pytest.mark.parametrize(("yymmdd", "date"), [("261200", "2026-12-31"), ("280200", "2028-02-29"),
                                              ("270200", "2027-02-28"), ("260400", "2026-04-30")])
def test_expiry_day_00_is_the_last_day_of_the_month(yymmdd: str, date: str) -> None:
    assert scan("0109506000134352" + "17" + yymmdd, "]C1").expiry == date


def test_impossible_expiry_is_invalid() -> None:
    b = scan("0109506000134352" + "17261301", "]C1")
    assert b.kind == "invalid" and b.error == INVALID_BARCODE and "17" in (b.reason or "")
    assert scan("0109506000134352" + "10ABC" + GS + "17270231", "]C1").kind == "invalid"  # 31 February


def test_gtin_in_gs1_with_bad_check_digit_is_invalid() -> None:
    b = scan("0109506000134353" + "10ABC", "]C1")
    assert b.kind == "invalid" and "check digit" in (b.reason or "")


def test_sscc() -> None:
    b = scan("00106141411234567897", "]C1")
    assert (b.kind, b.sscc, b.gtin) == ("sscc", "106141411234567897", None)


def test_sscc_with_bad_check_digit_is_invalid() -> None:
    b = scan("00106141411234567896", "]C1")
    assert b.kind == "invalid" and "check digit" in (b.reason or "")


def test_malformed_element_string_with_gs1_symbology_is_invalid() -> None:
    for text in ("HELLO", "01123", "99", "0109506000134352" + "9Z"):
        b = scan(text, "]C1")
        assert b.kind == "invalid", text
        assert b.reason and "malformed GS1 element string" in b.reason


def test_gs1_without_gtin_or_sscc_is_unknown() -> None:
    b = scan("400PO-1234", "]C1")
    assert b.kind == "unknown" and b.error == UNKNOWN_BARCODE and b.ais == (("400", "PO-1234"),)


def test_same_ai_twice_with_different_values_is_invalid() -> None:
    assert scan("0109506000134352" + "10A" + GS + "10B", "]C1").kind == "invalid"


def test_leading_and_trailing_gs_are_not_separators() -> None:
    b = scan(GS + "0109506000134352" + "10ABC" + GS, "]C1")
    assert (b.kind, b.lot) == ("item", "ABC")


# --- without a GS1 symbology identifier -------------------------------------------------------------------

@pytest.mark.parametrize(("digits", "gtin14"), [
    ("96385074", "00000096385074"),  # GTIN-8
    ("012345678905", "00012345678905"),  # GTIN-12 (UPC-A)
    ("5901234123457", "05901234123457"),  # GTIN-13
    ("15012345678907", "15012345678907"),  # GTIN-14
])
def test_bare_gtins_are_normalised_to_14_digits(digits: str, gtin14: str) -> None:
    for symbology in (None, "]E0", "]E4", "]I1"):
        if symbology == "]E0" and len(digits) == 8:
            continue  # 8 digits from an EAN/UPC symbology is a UPC-E, see below
        b = scan(digits, symbology)
        assert (b.kind, b.gtin) == ("item", gtin14)


def test_pack_gtin_carries_its_quantity() -> None:
    b = scan("15012345678907")
    assert (b.sku, b.units) == ("SKU-2", 6)


def test_unknown_but_valid_gtin_is_an_item_without_sku() -> None:
    b = scan("5901234123457")
    assert (b.kind, b.gtin, b.sku, b.units) == ("item", "05901234123457", None, None)


@pytest.mark.parametrize("digits", ["96385075", "012345678906", "4006381333932", "15012345678908"])
def test_bare_gtin_with_bad_check_digit_is_invalid(digits: str) -> None:
    b = scan(digits)
    assert b.kind == "invalid" and "check digit" in (b.reason or "")


def test_upc_e_from_ean_upc_symbology() -> None:
    assert scan("01234565", "]E0").gtin == "00012345000065"


def test_gs1_string_with_gs_separators_without_aim() -> None:
    b = scan("0109506000134352" + "10ABC" + GS + "21X1")
    assert (b.kind, b.gtin, b.lot, b.serial) == ("item", "09506000134352", "ABC", "X1")


def test_gs1_fixed_length_string_without_aim_and_without_gs() -> None:
    b = scan("0109506000134352" + "17261231" + "10ABC")
    assert (b.kind, b.expiry, b.lot) == ("item", "2026-12-31", "ABC")
    assert scan("00106141411234567897").kind == "sscc"


def test_bracketed_human_readable_form() -> None:
    b = scan("(01)09506000134352(17)261200(10)ABC(21)S1")
    assert (b.kind, b.gtin, b.expiry, b.lot, b.serial) == ("item", "09506000134352", "2026-12-31", "ABC", "S1")
    assert scan("(01) 09506000134352 (10) ABC").lot == "ABC"
    assert scan("(00)106141411234567897").kind == "sscc"


@pytest.mark.parametrize("text", ["(01)09506000134353", "(01)123", "(01)09506000134352(99", "(01)x(10)A",
                                  "(9999)X"])
def test_bad_bracketed_form_is_invalid(text: str) -> None:
    b = scan(text)
    assert b.kind == "invalid" and b.reason


def test_gs_string_that_is_not_gs1_is_invalid() -> None:
    assert scan("12AB" + GS + "CD").kind == "invalid"


@pytest.mark.parametrize("text", ["HELLO", "O-2", "12345", "123456789012345678901", "01ABC", "(A)", "ÄÖÜ", "01"])
def test_anything_else_is_unknown(text: str) -> None:
    b = scan(text)
    assert b.kind == "unknown" and b.error == UNKNOWN_BARCODE and b.reason


# --- exact matches come first ------------------------------------------------------------------------------

def test_exact_matches() -> None:
    assert (scan("BADGE-P1").kind, scan("BADGE-P1").operator_id) == ("badge", "p1")
    assert (scan("A-01-01").kind, scan("A-01-01").code) == ("location", "A-01-01")
    assert (scan("O-1").kind, scan("O-1").order_id) == ("order", "O-1")
    assert scan("BOX-S").kind == "carton"


def test_exact_match_beats_gtin() -> None:
    # A location labelled with a GTIN-looking code, and an order id that is a valid GTIN-13.
    assert scan("4006381333931").kind == "location"
    assert scan("0614141000012").kind == "order"


def test_match_works_through_a_gs1_symbology_identifier() -> None:
    assert scan("BADGE-P1", "]C1").kind == "badge"


def test_totes() -> None:
    bound = scan("TOTE-B1")
    assert (bound.kind, bound.code, bound.order_id) == ("tote", "TOTE-B1", "O-1")
    free = scan("TOTE-A7")
    assert (free.kind, free.code, free.order_id) == ("tote", "TOTE-A7", None)
    assert scan("tote-a7").kind == "unknown"
    assert scan("XTOTE-A7").kind == "unknown"


def test_tote_pattern_is_configurable_and_matches_the_whole_scan() -> None:
    assert scan("BIN42", tote_pattern=r"BIN\d+").kind == "tote"
    assert scan("BIN42X", tote_pattern=r"BIN\d+").kind == "unknown"
    assert scan("BIN42", tote_pattern=re.compile(r"^BIN\d+$")).kind == "tote"


# --- control characters and length ------------------------------------------------------------------------

def test_control_characters_are_stripped_before_interpretation() -> None:
    assert scan("BADGE-P1\x00\x07").kind == "badge"
    assert scan("\x02A-01-01\x03").kind == "location"
    assert scan("\x85O-1").kind == "order"
    assert scan("59012341\r23457\n").gtin == "05901234123457"
    assert strip_controls("a\x1db\x01", keep_gs=True) == "a\x1db"


def test_only_control_characters_is_unknown() -> None:
    b = scan("\x01\x02" + GS)
    assert b.kind == "unknown" and b.reason


def test_longer_than_4096_is_invalid() -> None:
    assert scan("A" * 4096).kind == "unknown"
    long = scan("A" * 4097)
    assert long.kind == "invalid" and long.error == INVALID_BARCODE and "4096" in (long.reason or "")
    assert scan("A" * 4094, "]C1").kind == "invalid"  # the AIM prefix counts: 4097 characters were scanned
    assert scan("", too_long=True).kind == "invalid"


def test_split_symbology() -> None:
    assert split_symbology("]C1010950") == ("]C1", "010950")
    assert split_symbology("]e0x") == ("]e0", "x")
    assert split_symbology("]1x") == (None, "]1x")
    assert split_symbology("ABC") == (None, "ABC")


# --- raw escaping ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "escaped"), [
    (b"ABC-123", "ABC-123"),
    (b"]C101" + b"\x1d" + b"10A", "]C101\\x1d10A"),
    (b"a\\b", "a\\x5cb"),
    (b"\r\n\t\x00\x7f", "\\x0d\\x0a\\x09\\x00\\x7f"),
    ("Grüße €".encode(), "Grüße €"),
    (b"\xff\xfe ok \xc3", "\\xff\\xfe ok \\xc3"),
    (b"\xc2\x85", "\\xc2\\x85"),  # U+0085 is a (C1) control character
    ("x\x1dy\\", "x\\x1dy\\x5c"),
    ("\x9b", "\\xc2\\x9b"),
])
def test_escape_raw(raw: bytes | str, escaped: str) -> None:
    assert escape_raw(raw) == escaped
