"""What a scan means (SPEC §2), decided on plain values: no device, no I/O.

The order of the questions is the contract: an exact match in master data or open orders first (so a
location code or order id that happens to look like a GTIN is still that location or order), then a
tote id, then GS1. GS1 parsing and check digits come from biip, a maintained GS1 library, so no AI
table or check-digit arithmetic is written here.

Two rejections are told apart because people act differently on them: `invalid_barcode` (a GS1/GTIN
code that is damaged or misprinted: rescan or relabel) and `unknown_barcode` (a readable code this
floor does not know: wrong label, or master data not yet synced).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.upc import Upc

from gateway.domain.floor import MasterData

MAX_SCAN_CHARS = 4096
GS = "\x1d"
INVALID_BARCODE = "invalid_barcode"
UNKNOWN_BARCODE = "unknown_barcode"
DEFAULT_TOTE_PATTERN = r"^TOTE-[A-Z0-9]{1,16}$"
# The AIM symbology identifiers whose data is a GS1 element string (SPEC §2).
GS1_SYMBOLOGIES = frozenset({"]C1", "]d2", "]Q3", "]e0"})

Kind = Literal["badge", "location", "order", "carton", "tote", "item", "sscc", "invalid", "unknown"]

_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_GS = re.compile(r"[\x00-\x1c\x1e\x1f\x7f-\x9f]")
_HRI_START = re.compile(r"\(\d{2,4}\)")
_HRI_WHOLE = re.compile(r"(?:\(\d{2,4}\)[^()]+)+")
_GTIN_LENGTHS = (8, 12, 13, 14)


@dataclass(frozen=True, slots=True)
class Barcode:
    """A scan's meaning. Fields that do not apply are None.

    `text` is what was interpreted: control characters removed (GS kept inside GS1 strings).
    `code` is the matched id for badge/location/order/carton/tote. For items, `gtin` is 14 digits and
    `sku`/`units` are filled when master data knows the GTIN (`units` > 1 for a pack GTIN).
    `expiry` is YYYY-MM-DD (GS1 day 00 = the month's last day). `ais` lists every GS1 element string.
    `reason` says, for a person, why a scan was rejected.
    """

    kind: Kind
    text: str
    symbology: str | None = None
    code: str | None = None
    operator_id: str | None = None
    order_id: str | None = None
    gtin: str | None = None
    sku: str | None = None
    units: int | None = None
    lot: str | None = None
    expiry: str | None = None
    serial: str | None = None
    sscc: str | None = None
    ais: tuple[tuple[str, str], ...] = ()
    reason: str | None = None

    @property
    def error(self) -> str | None:
        """The error code of a rejection (`invalid_barcode` / `unknown_barcode`), else None."""
        if self.kind == "invalid":
            return INVALID_BARCODE
        if self.kind == "unknown":
            return UNKNOWN_BARCODE
        return None

    @property
    def ok(self) -> bool:
        return self.kind not in ("invalid", "unknown")


def escape_raw(raw: bytes | str) -> str:
    """The `raw` audit value of SPEC: every control character, every byte that is not valid UTF-8, and
    the backslash written as `\\xNN`, everything else as itself.

    A control character is written as the bytes of its UTF-8 form (C1 controls such as U+0085 become
    `\\xc2\\x85`), so an escaped value always names bytes and a lone invalid byte `\\x85` stays distinct.
    """
    text = raw.decode("utf-8", errors="surrogateescape") if isinstance(raw, bytes) else raw
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte, carried through by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o <= 0x9F or ch == "\\" or 0xD800 <= o <= 0xDFFF:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", errors="surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def split_symbology(text: str) -> tuple[str | None, str]:
    """Split a leading AIM symbology identifier (`]C1`, ...) off text that did not come through a scanner
    driver (the PDA page), the same way the drivers do."""
    if _AIM.match(text):
        return text[:3], text[3:]
    return None, text


def strip_controls(text: str, keep_gs: bool = False) -> str:
    return (_CONTROL_BUT_GS if keep_gs else _CONTROL).sub("", text)


@lru_cache(maxsize=16)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def interpret(text: str, *, symbology: str | None = None, md: MasterData | None = None,
              open_orders: Collection[str] = (), totes: Mapping[str, str] | None = None,
              tote_pattern: str | re.Pattern[str] = DEFAULT_TOTE_PATTERN, too_long: bool = False) -> Barcode:
    """Decide what one scan is.

    `text` without its AIM identifier, which is given as `symbology`. `open_orders` holds the ids of
    orders still open on this floor; `totes` maps bound tote ids to their order ids. A tote id must
    match `tote_pattern` as a whole. `too_long` is the driver's flag for a scan past the length limit.
    """
    clean = strip_controls(text, keep_gs=True).strip(GS)
    plain = clean.replace(GS, "")
    if too_long or len(text) + len(symbology or "") > MAX_SCAN_CHARS:
        return Barcode("invalid", plain[:64], symbology,
                       reason=f"scan is longer than {MAX_SCAN_CHARS} characters; rescan the label, or check "
                              "the scanner's terminator setting")
    if not plain:
        return Barcode("unknown", "", symbology, reason="nothing but control characters was scanned")

    exact = _exact(plain, symbology, md, open_orders, totes or {})
    if exact is not None:
        return exact
    pattern = _compile(tote_pattern) if isinstance(tote_pattern, str) else tote_pattern
    if pattern.fullmatch(plain):
        return Barcode("tote", plain, symbology, code=plain, order_id=(totes or {}).get(plain))

    if symbology in GS1_SYMBOLOGIES:
        return _gs1(clean, symbology, md, strict=True)
    if plain.isascii() and plain.isdigit() and len(plain) in _GTIN_LENGTHS:
        return _bare_gtin(plain, symbology, md)
    if _HRI_START.match(clean) or (GS in clean and clean[:2].isascii() and clean[:2].isdigit()):
        return _gs1(clean, symbology, md, strict=True)
    if clean[:2] in ("00", "01") and len(clean) >= 16 and clean[:16].isascii() and clean[:16].isdigit():
        # GS1-128 read without its AIM identifier: fixed-length AIs need no GS, so this is likely GS1;
        # if it does not parse, it is simply not a GS1 code.
        return _gs1(clean, symbology, md, strict=False)
    return Barcode("unknown", plain, symbology, reason=f"{_show(plain)} is not a code known on this floor")


def _show(text: str) -> str:
    # A byte the scanner sent that was not UTF-8 arrives as U+FFFD: named, as `raw` names it, not drawn as a glyph.
    return repr(text if len(text) <= 48 else text[:45] + "...").replace("\ufffd", "\\ufffd")


def _exact(plain: str, symbology: str | None, md: MasterData | None, open_orders: Collection[str],
           totes: Mapping[str, str]) -> Barcode | None:
    if md is not None:
        operator_id = md.badges.get(plain)
        if operator_id is not None:
            return Barcode("badge", plain, symbology, code=plain, operator_id=operator_id)
        if plain in md.locations:
            return Barcode("location", plain, symbology, code=plain)
    if plain in open_orders:
        return Barcode("order", plain, symbology, code=plain, order_id=plain)
    if md is not None and plain in md.cartons:
        return Barcode("carton", plain, symbology, code=plain)
    if plain in totes:
        return Barcode("tote", plain, symbology, code=plain, order_id=totes[plain])
    return None


def _item_fields(gtin14: str, md: MasterData | None) -> tuple[str | None, int | None]:
    if md is None:
        return None, None
    known = md.gtins.get(gtin14)
    return (known[0], known[1]) if known is not None else (None, None)


def _bare_gtin(digits: str, symbology: str | None, md: MasterData | None) -> Barcode:
    try:
        if symbology == "]E0" and len(digits) == 8:  # EAN/UPC symbology with 8 digits: a UPC-E
            gtin14 = Upc.parse(digits).as_gtin_14()
        else:
            gtin14 = Gtin.parse(digits).as_gtin_14()
    except Exception as e:  # biip raises ParseError; anything else from it is still a bad code, not a crash
        return Barcode("invalid", digits, symbology, reason=f"GTIN {digits} is not valid: {e}")
    sku, units = _item_fields(gtin14, md)
    return Barcode("item", digits, symbology, gtin=gtin14, sku=sku, units=units)


def _gs1(clean: str, symbology: str | None, md: MasterData | None, strict: bool) -> Barcode:
    shown = clean.replace(GS, "<GS>")
    try:
        if _HRI_START.match(clean):
            if not _HRI_WHOLE.fullmatch("".join(clean.split())):
                raise ValueError("expected the bracketed form (AI)data(AI)data")
            msg = GS1Message.parse_hri(clean)
        else:
            msg = GS1Message.parse(clean)
    except Exception as e:  # biip's ParseError, or any other failure of a third-party parser on bad input
        if not strict:
            return Barcode("unknown", clean.replace(GS, ""), symbology,
                           reason=f"{_show(shown)} is not a code known on this floor")
        return Barcode("invalid", clean, symbology, reason=f"malformed GS1 element string {_show(shown)}: {e}")

    ais: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    fields: dict[str, str] = {}
    for es in msg.element_strings:
        ai, value = es.ai.ai, es.value
        ais.append((ai, value))
        bad = es.gtin_error or es.sscc_error or es.gln_error
        if bad:
            return Barcode("invalid", clean, symbology, ais=tuple(ais), reason=f"GS1 AI ({ai}): {bad}")
        if seen.get(ai, value) != value:
            return Barcode("invalid", clean, symbology, ais=tuple(ais),
                           reason=f"GS1 AI ({ai}) appears twice with different values")
        seen[ai] = value
        if ai == "01" and es.gtin is not None:
            fields["gtin"] = es.gtin.as_gtin_14()
        elif ai == "00" and es.sscc is not None:
            fields["sscc"] = es.sscc.value
        elif ai == "10":
            fields["lot"] = value
        elif ai == "17" and es.date is not None:
            fields["expiry"] = es.date.isoformat()
        elif ai == "21":
            fields["serial"] = value

    lot, expiry, serial, sscc = fields.get("lot"), fields.get("expiry"), fields.get("serial"), fields.get("sscc")
    if "gtin" in fields:
        sku, units = _item_fields(fields["gtin"], md)
        return Barcode("item", clean, symbology, gtin=fields["gtin"], sku=sku, units=units, lot=lot, expiry=expiry,
                       serial=serial, sscc=sscc, ais=tuple(ais))
    if sscc is not None:
        return Barcode("sscc", clean, symbology, lot=lot, expiry=expiry, serial=serial, sscc=sscc, ais=tuple(ais))
    return Barcode("unknown", clean, symbology, ais=tuple(ais),
                   reason="GS1 code without a GTIN (01) or SSCC (00): nothing on this floor uses it")
