"""The shipping label's ZPL, read back with the printer simulator's ZPL reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.domain.label import (
    BAR_HEIGHT_DOTS,
    LENGTH_DOTS,
    MODULE_DOTS,
    SYMBOL_MODULES,
    WIDTH_DOTS,
    ShippingLabel,
    fh_escape,
    render_zpl,
    shipping_label_zpl,
)
from gateway.domain.sscc import SsccError
from simulators.printer import ZplLabel, parse_zpl

SSCC = "106141411234567897"


def read(label: ShippingLabel) -> ZplLabel:
    [parsed] = parse_zpl(render_zpl(label))
    return parsed


def test_label_content() -> None:
    label = read(ShippingLabel(sscc=SSCC, order_id="DY20260127000892", station="pack-1", item_count=3,
                               carton="BOX-S", weight_g=1234.5, company_prefix_len=7, sender="dc1 / zone-a",
                               printed_at=datetime(2026, 11, 23, 16, 4, tzinfo=UTC)))
    [code] = label.barcodes
    assert code.barcode == "BC" and code.barcode_params == f"N,{BAR_HEIGHT_DOTS},N,N,N"
    assert code.data == ">;>800" + SSCC  # subset C, FNC1 (GS1-128), AI 00, the SSCC
    assert label.texts == [
        "From: dc1 / zone-a", "ORDER", "DY20260127000892", "Station: pack-1", "Items: 3", "Carton: BOX-S",
        "Weight: 1.235 kg", "Packed: 2026-11-23 16:04", "SSCC", "(00) 1 0614141 123456789 7",
        "(00) 1 0614141 123456789 7",
    ]


def test_4x6_inch_at_203_dpi_utf8() -> None:
    label = read(ShippingLabel(sscc=SSCC, order_id="O-1", station="pack-1", item_count=1))
    assert (label.command("PW"), label.command("LL"), label.command("CI")) == ("812", "1218", "28")
    assert (WIDTH_DOTS, LENGTH_DOTS) == (4 * 203, 6 * 203)


def test_barcode_fits_with_quiet_zones_and_gs1_minimums() -> None:
    [code] = read(ShippingLabel(sscc=SSCC, order_id="O-1", station="pack-1", item_count=1)).barcodes
    assert code.origin is not None
    x, y = code.origin
    width = SYMBOL_MODULES * MODULE_DOTS
    assert x >= 10 * MODULE_DOTS and WIDTH_DOTS - (x + width) >= 10 * MODULE_DOTS
    assert y + BAR_HEIGHT_DOTS < LENGTH_DOTS
    assert MODULE_DOTS * 25.4 / 203 >= 0.495 and BAR_HEIGHT_DOTS * 25.4 / 203 >= 31.75  # mm


def test_optional_facts_are_left_out() -> None:
    texts = read(ShippingLabel(sscc=SSCC, order_id="O-1", station="pack-2", item_count=0)).texts
    assert not any(t.startswith(("Weight", "Carton", "From", "Packed")) for t in texts)
    assert "(00) 106141411234567897" in texts  # no prefix length: the SSCC in one block


def test_text_cannot_inject_zpl() -> None:
    evil = "O-1^XZ^XA^FDpwned~JR_\x1d\r\nÜ"
    zpl = shipping_label_zpl(ShippingLabel(sscc=SSCC, order_id=evil, station="pack-1", item_count=1,
                                           carton="^PQ99"))
    [label] = parse_zpl(zpl.encode("utf-8"))  # still exactly one label
    assert evil in label.texts and "Carton: ^PQ99" in label.texts
    assert label.command("PQ") == "1"
    assert fh_escape("a^b~c_d") == "a_5Eb_7Ec_5Fd"


@pytest.mark.parametrize(
    ("kw", "error", "says"),
    [
        ({"sscc": "106141411234567890"}, SsccError, "check digit"),
        ({"item_count": -1}, ValueError, "item count"),
        ({"weight_g": -5.0}, ValueError, "weight"),
        ({"weight_g": float("nan")}, ValueError, "weight"),
        ({"order_id": ""}, ValueError, "order id"),
    ],
)
def test_bad_label_data_is_refused(kw: dict[str, object], error: type[Exception], says: str) -> None:
    args: dict[str, object] = {"sscc": SSCC, "order_id": "O-1", "station": "pack-1", "item_count": 1, **kw}
    with pytest.raises(error, match=says):
        ShippingLabel(**args)  # type: ignore[arg-type]
