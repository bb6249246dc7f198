"""What a simulated scanner sends, built from a barcode as a person writes it down.

Notation for the command line and tests: `<GS>` (or `\\x1d`) is the group separator, `\\xNN` any byte,
`\\\\` a backslash. A bracketed GS1 string `(01)...(10)...` becomes the element string a GS1 symbol
carries: AIs concatenated, FNC1 (sent as GS, 0x1D) after each variable-length AI that is not last. The
AI lengths come from biip's AI table, not one written here. Check digits are left alone on purpose, so
a simulator can send a misprinted code.
"""

from __future__ import annotations

import re

from biip.gs1_application_identifiers import GS1ApplicationIdentifier

GS = "\x1d"
TERMINATOR_BYTES = {"any": b"\r\n", "crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}
_ESCAPE = re.compile(r"<GS>|\\x([0-9a-fA-F]{2})|\\\\")
_HRI = re.compile(r"\((\d{2,4})\)([^()]*)")


def unescape(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "<GS>":
            return GS
        if m.group(1):
            return chr(int(m.group(1), 16))
        return "\\"

    return _ESCAPE.sub(sub, text)


def hri_to_element_string(hri: str) -> str:
    """`(01)09506000134352(10)LOT1(17)261231` -> `0109506000134352` `10LOT1` GS `17261231`."""
    parts = _HRI.findall("".join(hri.split()))
    if not parts or "".join(f"({a}){d}" for a, d in parts) != "".join(hri.split()):
        raise ValueError(f"expected the bracketed GS1 form (AI)data(AI)data; got {hri!r}")
    out: list[str] = []
    for i, (ai, data) in enumerate(parts):
        out.append(ai + data)
        if i < len(parts) - 1 and GS1ApplicationIdentifier.extract(ai + data).separator_required:
            out.append(GS)
    return "".join(out)


def barcode_text(barcode: str, *, gs1: bool = False) -> str:
    """A barcode as written (escapes, optionally bracketed GS1) to the characters the scanner reads."""
    text = unescape(barcode)
    return hri_to_element_string(text) if gs1 and text.startswith("(") else text


def frame(text: str, terminator: str = "crlf", aim: str | None = None) -> bytes:
    """The bytes a serial scanner sends for one scan: AIM prefix, UTF-8 data, terminator."""
    if terminator not in TERMINATOR_BYTES:
        raise ValueError(f"terminator must be one of {', '.join(TERMINATOR_BYTES)}; got {terminator!r}")
    return (aim or "").encode() + text.encode("utf-8", errors="surrogateescape") + TERMINATOR_BYTES[terminator]
