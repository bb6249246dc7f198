"""Scale reply lines to weights, with no I/O, so every format quirk is tested with plain bytes.

Two line formats are understood, in either scale mode:

* MT-SICS (Mettler-Toledo Standard Interface Command Set, level 0), the replies to `S` and `SI` and the
  lines of `SIR` / continuous output of MT-SICS scales: `S S      1.234 kg` (stable), `S D      1.230 kg`
  (dynamic), `S I` (command understood but not executable now: busy, or no stability within the scale's
  own timeout), `S +` / `S -` (overload / underload), and `ES` / `ET` / `EL` (syntax, transmission and
  logical errors). The sign may be separated from the digits by spaces, as older firmware pads it.
* The comma-separated stream of many weighing indicators (A&D's standard format, and the common
  `header,kind,value+unit` variant of many OEM indicators): `ST,GS,+001.234kg`, `US,NT,-0.500 kg`,
  `ST,+00123.45  g`. Header `ST` stable, `US` unstable, `OL` out of range (the sign of the value tells
  overload from underload; `OL,` with no value is an overload). Kind `GS`/`G` gross, `NT`/`N` net; `TR` (a tare
  report) is not a weight on the platform and is refused.

Units are converted to grams: mg, g, kg, t, ct, lb (lbs), oz. Binary "MT continuous" status-byte output
and printer-format tickets are not supported: set such a scale to MT-SICS or to the comma format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

GRAMS_PER_UNIT: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "t": Decimal(1_000_000),
    "ct": Decimal("0.2"),
    "lb": Decimal("453.59237"),
    "lbs": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}

SICS_ERRORS = {
    "ES": "syntax error (the scale did not recognise the command)",
    "ET": "transmission error (the scale received a garbled command: check baud rate and parity)",
    "EL": "logical error (the scale cannot execute the command)",
}


class ScaleError(Exception):
    """Anything that kept a weight from being read. `raw` is the line the scale sent, if any."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw


class ScaleTimeout(ScaleError):
    """No (stable) weight before the deadline: the load kept moving, or the scale did not answer."""


class ScaleOverload(ScaleError):
    """The load is above the scale's range."""


class ScaleUnderload(ScaleError):
    """The reading is below the scale's range (usually the pan is off, or zero was set with a load on)."""


class ScaleBusy(ScaleError):
    """MT-SICS `S I`: understood, but not executable now; worth asking again."""


class ScaleOffline(ScaleError):
    """The serial port is not open (unplugged, or not there yet); the driver is reopening it."""


@dataclass(frozen=True)
class Weighing:
    """One reading. `grams` is rounded to the milligram, so unit conversions compare exactly."""

    grams: float
    stable: bool
    raw: bytes
    unit: str = "g"
    net: bool | None = None


_SICS_WEIGHT = re.compile(r"^S\s+([SD])\s+([-+]?)\s*(\d+(?:[.,]\d*)?|[.,]\d+)\s*([A-Za-z]+)$")
_SICS_STATUS = re.compile(r"^S\s+([I+\-])$")
_COMMA = re.compile(
    r"^(ST|US|OL)\s*,\s*(?:(GS|NT|TR|G|N)\s*,\s*)?([-+]?)\s*(\d+(?:[.,]\d*)?|[.,]\d+)?\s*([A-Za-z]*)\s*$",
    re.IGNORECASE,
)
_COMMA_HEADER = re.compile(r"^(ST|US|OL)\s*,", re.IGNORECASE)


def to_grams(value: str, unit: str, raw: bytes = b"") -> float:
    """The value in grams, rounded to the milligram; an unknown unit names the units that work."""
    factor = GRAMS_PER_UNIT.get(unit.lower())
    if factor is None:
        known = ", ".join(GRAMS_PER_UNIT)
        raise ScaleError(f"scale reports weight in unit {unit!r}; set the scale to one of: {known}", raw)
    try:
        number = Decimal(value.replace(",", "."))
    except InvalidOperation:
        raise ScaleError(f"scale sent a weight that is not a number: {value!r}", raw) from None
    return float((number * factor).quantize(Decimal("0.001")))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ScaleError(f"scale sent bytes that are not text: {raw!r} (check baud rate and parity)", raw) from None


def parse_line(raw: bytes) -> Weighing:
    """A weight from one line (terminator removed) of either format, or the typed error it reports."""
    text = _text(raw)
    if not text:
        raise ScaleError("scale sent an empty line", raw)
    if _COMMA_HEADER.match(text):
        return _parse_comma(text, raw)
    if text.startswith("S"):
        return _parse_sics(text, raw)
    code = text[:2].upper()
    if code in SICS_ERRORS and text[2:].strip() == "":
        raise ScaleError(f"scale replied {code}: {SICS_ERRORS[code]}", raw)
    raise ScaleError(f"scale sent a line that is not a weight: {raw!r}", raw)


def _parse_sics(text: str, raw: bytes) -> Weighing:
    m = _SICS_WEIGHT.match(text)
    if m:
        flag, sign, value, unit = m.groups()
        grams = to_grams(value, unit, raw)
        return Weighing(grams=-grams if sign == "-" else grams, stable=flag == "S", raw=raw, unit=unit)
    m = _SICS_STATUS.match(text)
    if m:
        status = m.group(1)
        if status == "+":
            raise ScaleOverload("scale is overloaded (S +): take weight off the pan", raw)
        if status == "-":
            raise ScaleUnderload("scale is below its range (S -): check the pan, then zero the scale", raw)
        raise ScaleBusy("scale is busy or could not settle (S I)", raw)
    raise ScaleError(f"scale sent a line that is not an MT-SICS weight: {raw!r}", raw)


def _parse_comma(text: str, raw: bytes) -> Weighing:
    m = _COMMA.match(text)
    header = text[:2].upper()
    if header == "OL":
        negative = bool(m and m.group(3) == "-") or ",-" in text.replace(" ", "")
        if negative:
            raise ScaleUnderload("scale is below its range (OL, negative): check the pan, then zero the scale", raw)
        raise ScaleOverload("scale is overloaded (OL): take weight off the pan", raw)
    if not m or m.group(4) is None or not m.group(5):
        raise ScaleError(f"scale sent a line that is not a weight: {raw!r}", raw)
    _, kind, sign, value, unit = m.groups()
    kind = (kind or "").upper()
    if kind == "TR":
        raise ScaleError("scale sent its tare value (TR), not the weight on the pan", raw)
    grams = to_grams(value, unit, raw)
    net = None if not kind else kind in ("NT", "N")
    return Weighing(grams=-grams if sign == "-" else grams, stable=header == "ST", raw=raw, unit=unit, net=net)
