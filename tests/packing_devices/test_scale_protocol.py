"""Scale lines to weights, as plain bytes: every format and unit the driver claims, and every bad line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.scale import (
    ScaleBusy,
    ScaleError,
    ScaleOverload,
    ScaleUnderload,
    parse_line,
    to_grams,
)


@pytest.mark.parametrize(
    ("line", "grams", "stable"),
    [
        (b"S S      1.234 kg", 1234.0, True),
        (b"S D      1.230 kg", 1230.0, False),
        (b"S S     100.00 g", 100.0, True),
        (b"S S     -0.002 kg", -2.0, True),
        (b"S S    -  0.002 kg", -2.0, True),  # older firmware pads between sign and digits
        (b"S S      1,234 kg", 1234.0, True),  # decimal comma
        (b"S S        250 mg", 0.25, True),
        (b"S S      1.000 lb", 453.592, True),
        (b"S S      2.00 oz", 56.699, True),
        (b"S S      5 ct", 1.0, True),
        (b"S S      0.001 t", 1000.0, True),
        (b"  S S      1.234 kg  ", 1234.0, True),
    ],
)
def test_sics_weights(line: bytes, grams: float, stable: bool) -> None:
    w = parse_line(line)
    assert (w.grams, w.stable, w.raw) == (grams, stable, line)


@pytest.mark.parametrize(
    ("line", "grams", "stable", "net"),
    [
        (b"ST,GS,+001.234kg", 1234.0, True, False),
        (b"US,GS,+001.230kg", 1230.0, False, False),
        (b"US,NT,-0.500 kg", -500.0, False, True),
        (b"ST,+00123.45  g", 123.45, True, None),  # A&D standard format, no kind field
        (b"ST,N,+0001.50lb", 680.389, True, True),
        (b"st,gs,+001.234KG", 1234.0, True, False),
        (b"ST,GS,+ 12.5 oz", 354.369, True, False),
    ],
)
def test_comma_weights(line: bytes, grams: float, stable: bool, net: bool | None) -> None:
    w = parse_line(line)
    assert (w.grams, w.stable, w.net) == (grams, stable, net)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"S +", ScaleOverload),
        (b"S -", ScaleUnderload),
        (b"S I", ScaleBusy),
        (b"OL,GS,+9999.999kg", ScaleOverload),
        (b"OL,+9999999E+19", ScaleOverload),
        (b"OL,-9999999E+19", ScaleUnderload),
        (b"OL,GS,-9999.999kg", ScaleUnderload),
        (b"OL,", ScaleOverload),
        (b"OL", ScaleError),  # too short for the comma header: not recognised as anything
    ],
)
def test_status_lines(line: bytes, error: type[ScaleError]) -> None:
    with pytest.raises(error) as info:
        parse_line(line)
    assert info.value.raw == line


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"ES", "syntax error"),
        (b"ET", "transmission error"),
        (b"EL", "logical error"),
        (b"\x02#?\xff\xfe}", "not text"),
        (b"hello", "not a weight"),
        (b"S X 1.0 kg", "not an MT-SICS weight"),
        (b"S S      1.234 stone", "unit 'stone'"),
        (b"ST,GS,+001.234", "not a weight"),
        (b"ST,TR,+000.100kg", "tare"),
        (b"   ", "empty"),
    ],
)
def test_bad_lines_are_typed_errors_with_the_raw_line(line: bytes, says: str) -> None:
    with pytest.raises(ScaleError) as info:
        parse_line(line)
    assert type(info.value) is ScaleError
    assert says in str(info.value)
    assert info.value.raw == line


def test_to_grams_rejects_a_non_number() -> None:
    with pytest.raises(ScaleError, match="not a number"):
        to_grams("1.2.3", "kg")


@given(st.binary(max_size=80))
def test_any_bytes_give_a_weight_or_a_scale_error(line: bytes) -> None:
    try:
        w = parse_line(line)
    except ScaleError as e:
        assert e.raw == line
    else:
        assert w.raw == line


@given(st.integers(min_value=-99_999_999, max_value=99_999_999), st.sampled_from(["g", "kg", "lb", "oz"]))
def test_sics_round_trip(milli: int, unit: str) -> None:
    value = f"{milli / 1000:.3f}"
    w = parse_line(f"S S {value:>10} {unit}".encode())
    assert w.grams == to_grams(value, unit)
    assert w.unit == unit
