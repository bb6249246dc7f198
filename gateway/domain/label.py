"""The parcel's shipping label: a GS1-128 SSCC barcode and the packing facts, in ZPL II, as plain text.

ZPL choices, for a 4 x 6 inch label on a 203 dpi (8 dots/mm) printer, the common warehouse label:
* `^CI28`: field data is UTF-8, so order ids in any script arrive intact (glyphs depend on the font).
* `^PW812` / `^LL1218`: 4 x 6 inch at 203 dpi; `^LH0,0` so positions do not depend on printer setup.
* The barcode is `^BCN,h,N,N,N` (Code 128, no printer interpretation line, no UCC check digit, mode N)
  with data `>;>8` + `00` + SSCC: `>;` starts in subset C (digit pairs, the shortest symbol for 20
  digits) and `>8` is FNC1 in first position, which is what makes Code 128 a GS1-128 symbol. Mode N with
  explicit start codes behaves the same on all ZPL firmware; mode D (automatic GS1) needs newer firmware.
* X-dimension 4 dots = 0.50 mm and bar height 260 dots = 32.5 mm: GS1's logistic label minimums (0.495 mm,
  31.75 mm). The symbol is 156 modules (start C, FNC1, 10 digit pairs, check, stop) = 624 dots, centred,
  leaving 94 dots (more than the 10X quiet zone) each side.
* The human-readable line is printed by us, `(00) 1 0614141 123456789 7`, because the printer's own
  interpretation line would show the start-code characters.
* Every text field is sent with `^FH` and `^`, `~`, `_` and control characters written as `_XX` hex, so
  no order id or carton code can inject ZPL commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from gateway.domain.sscc import element_string, hri, parse_sscc

DPI = 203
WIDTH_DOTS = 812  # 4 in
LENGTH_DOTS = 1218  # 6 in
MODULE_DOTS = 4  # X-dimension 0.50 mm at 203 dpi
BAR_HEIGHT_DOTS = 260  # 32.5 mm
SYMBOL_MODULES = 156  # start C + FNC1 + 10 pairs + check (11 modules each) + stop (13)
MARGIN = 40
TEXT_WIDTH = WIDTH_DOTS - 2 * MARGIN


@dataclass(frozen=True)
class ShippingLabel:
    sscc: str
    order_id: str
    station: str
    item_count: int
    carton: str | None = None
    weight_g: float | None = None
    company_prefix_len: int | None = None  # groups the human-readable SSCC; None prints it in one block
    sender: str | None = None  # e.g. "dc1 / zone-a"
    printed_at: datetime | None = None

    def __post_init__(self) -> None:
        parse_sscc(self.sscc)
        if self.item_count < 0:
            raise ValueError(f"item count must be >= 0, got {self.item_count}")
        if self.weight_g is not None and not self.weight_g >= 0:
            raise ValueError(f"weight must be >= 0 g, got {self.weight_g}")
        if not self.order_id:
            raise ValueError("a shipping label needs an order id")


def _kg(grams: float) -> str:
    return str((Decimal(repr(grams)) / 1000).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def fh_escape(text: str) -> str:
    """Text for a `^FH^FD` field: ZPL's command characters and controls as `_XX` (UTF-8 bytes, hex)."""
    out = []
    for ch in text:
        if ch in "^~_" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("".join(f"_{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _text(x: int, y: int, size: int, text: str, *, lines: int = 1, align: str = "L", width: int = TEXT_WIDTH) -> str:
    return f"^FO{x},{y}^A0N,{size},{size}^FB{width},{lines},0,{align}^FH^FD{fh_escape(text)}^FS"


def shipping_label_zpl(label: ShippingLabel) -> str:
    """One ZPL II format (`^XA`..`^XZ`) for the label."""
    sscc = parse_sscc(label.sscc)
    readable = hri(sscc, label.company_prefix_len)
    facts = [f"Station: {label.station}", f"Items: {label.item_count}"]
    if label.carton:
        facts.append(f"Carton: {label.carton}")
    if label.weight_g is not None:
        facts.append(f"Weight: {_kg(label.weight_g)} kg")
    if label.printed_at is not None:
        facts.append(f"Packed: {label.printed_at.strftime('%Y-%m-%d %H:%M')}")

    out = ["^XA", "^CI28", f"^PW{WIDTH_DOTS}", f"^LL{LENGTH_DOTS}", "^LH0,0"]
    y = MARGIN
    if label.sender:
        out.append(_text(MARGIN, y, 30, f"From: {label.sender}"))
        y += 50
    out.append(_text(MARGIN, y, 30, "ORDER"))
    out.append(_text(MARGIN, y + 40, 64, label.order_id, lines=2))
    y += 40 + 2 * 70
    for fact in facts:
        out.append(_text(MARGIN, y, 36, fact))
        y += 50

    top = 700
    x = (WIDTH_DOTS - SYMBOL_MODULES * MODULE_DOTS) // 2
    out += [
        f"^FO0,{top}^GB{WIDTH_DOTS},4,4^FS",
        _text(MARGIN, top + 24, 30, "SSCC"),
        _text(MARGIN, top + 64, 44, readable),
        f"^FO{x},{top + 130}^BY{MODULE_DOTS},3,{BAR_HEIGHT_DOTS}"
        f"^BCN,{BAR_HEIGHT_DOTS},N,N,N^FD>;>8{element_string(sscc)}^FS",
        _text(0, top + 130 + BAR_HEIGHT_DOTS + 20, 36, readable, align="C", width=WIDTH_DOTS),
        "^PQ1",
        "^XZ",
    ]
    return "\n".join(out) + "\n"


def render_zpl(label: ShippingLabel) -> bytes:
    """The job's bytes for a raw-port printer (UTF-8, matching `^CI28`)."""
    return shipping_label_zpl(label).encode("utf-8")
