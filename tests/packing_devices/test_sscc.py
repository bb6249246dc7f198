"""SSCC-18 numbers: published vectors, layout, the gateway's serial range, and the human-readable forms.
Every SSCC is checked by biip (a maintained GS1 library) and, independently, by the mod-10 rule written
out here, so neither can be wrong alone."""

from __future__ import annotations

import pytest
from biip.gs1_messages import GS1Message
from biip.sscc import Sscc
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import DEMO_SSCC_PREFIX, PackingConfig
from gateway.domain.sscc import (
    SsccError,
    SsccRangeExhausted,
    SsccSeries,
    check_digit,
    element_string,
    hri,
    make_sscc,
    parse_sscc,
)


def mod10(payload: str) -> int:
    """GS1 General Specifications 7.9.1, written out: weights 3,1,3,... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def assert_valid(sscc: str) -> None:
    assert len(sscc) == 18 and sscc.isdigit()
    assert Sscc.parse(sscc).value == sscc
    assert GS1Message.parse_hri(f"(00){sscc}").element_strings[0].sscc is not None
    assert int(sscc[-1]) == mod10(sscc[:17])


# Published SSCCs: GS1 General Specifications' example (00)106141411234567897; biip's documented example;
# the SSCC of GS1's "how to calculate a check digit manually" page (37610425002123456 -> 9).
PUBLISHED = ["106141411234567897", "157035381410375177", "376104250021234569"]


@pytest.mark.parametrize("sscc", PUBLISHED)
def test_published_ssccs_are_valid(sscc: str) -> None:
    assert_valid(sscc)
    assert parse_sscc(sscc) == sscc
    assert check_digit(sscc[:17]) == int(sscc[-1])


def test_building_the_gs1_example() -> None:
    assert make_sscc(1, "0614141", 123456789) == "106141411234567897"
    assert make_sscc(3, "7610425002", 123456) == "376104250021234569"  # 10-digit prefix, 6-digit serial


def test_extension_prefix_serial_layout() -> None:
    s = make_sscc(3, "4567890", 1)  # (00) 3 4567890 000000001 C
    assert s[:17] == "34567890000000001"
    assert_valid(s)
    assert hri(s, 7) == f"(00) 3 4567890 000000001 {s[-1]}"


@pytest.mark.parametrize("extension", range(10))
def test_every_extension_digit(extension: int) -> None:
    s = make_sscc(extension, "0614141", 7)
    assert s[0] == str(extension)
    assert_valid(s)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((10, "0614141", 1), "extension digit must be 0-9"),
        ((-1, "0614141", 1), "extension digit must be 0-9"),
        ((0, "12345", 1), "6-12 digits"),
        ((0, "1234567890123", 1), "6-12 digits"),
        ((0, "06141A1", 1), "6-12 digits"),
        ((0, "0614141", 10**9), "does not fit the 9 digits"),
        ((0, "061414112345", 10**4), "does not fit the 4 digits"),
        ((0, "0614141", -1), "does not fit"),
    ],
)
def test_bad_parts_are_refused(args: tuple[int, str, int], says: str) -> None:
    with pytest.raises(SsccError, match=says):
        make_sscc(*args)


@given(st.integers(0, 9), st.integers(6, 12).flatmap(
    lambda n: st.tuples(st.text("0123456789", min_size=n, max_size=n), st.integers(0, 10 ** (16 - n) - 1))))
def test_any_valid_parts_make_a_valid_sscc(extension: int, prefix_serial: tuple[str, int]) -> None:
    prefix, serial = prefix_serial
    s = make_sscc(extension, prefix, serial)
    assert_valid(s)
    assert s[0] == str(extension) and s[1 : 1 + len(prefix)] == prefix and int(s[1 + len(prefix) : 17]) == serial


def test_parse_accepts_the_usual_written_forms_and_refuses_bad_ones() -> None:
    for text in ["106141411234567897", " 1 0614141 123456789 7 ", "(00) 1 0614141 123456789 7",
                 "(00)106141411234567897", "00106141411234567897"]:
        assert parse_sscc(text) == "106141411234567897"
    with pytest.raises(SsccError, match="check digit"):
        parse_sscc("106141411234567890")
    with pytest.raises(SsccError, match="18 digits"):
        parse_sscc("10614141123456789")
    with pytest.raises(SsccError, match="numerical"):
        parse_sscc("10614141123456789X")


def test_human_readable_and_element_string() -> None:
    s = "106141411234567897"
    assert hri(s) == "(00) 106141411234567897"
    assert hri(s, 7) == "(00) 1 0614141 123456789 7"
    assert hri(s, 12) == "(00) 1 061414112345 6789 7"
    assert element_string(s) == "00106141411234567897"
    with pytest.raises(SsccError, match="6-12"):
        hri(s, 5)


# -- the gateway's serial range ------------------------------------------------------------------------------


def test_series_issues_in_order_from_the_start() -> None:
    series = SsccSeries(0, "0614141", 1, 3)
    assert series.issue(None) == (1, make_sscc(0, "0614141", 1))
    assert series.issue(1)[0] == 2
    assert series.issue(2)[0] == 3
    assert [series.remaining(x) for x in (None, 1, 2, 3)] == [3, 2, 1, 0]


def test_range_exhaustion_is_a_clear_error() -> None:
    series = SsccSeries(0, "0614141", 1, 3)
    with pytest.raises(SsccRangeExhausted, match=r"1\.\.3 .* is used up .*last issued 3.*sscc_serial_end"):
        series.issue(3)
    with pytest.raises(SsccRangeExhausted, match="past the end"):
        series.sscc(4)
    with pytest.raises(SsccError, match="before the start"):
        series.sscc(0)


def test_restore_gap_skips_serials_and_can_exhaust_the_range() -> None:
    series = SsccSeries(0, "0614141", 100, 1000)
    assert series.next_serial(150, skip=100) == 251
    assert series.next_serial(None, skip=10) == 110
    with pytest.raises(SsccRangeExhausted, match="plus a gap of 900"):
        series.next_serial(150, skip=900)
    with pytest.raises(SsccError, match="skip"):
        series.next_serial(1, skip=-1)


def test_a_last_serial_below_the_range_starts_at_the_range() -> None:
    series = SsccSeries(0, "0614141", 500, 600)  # the range was moved up in the config
    assert series.next_serial(12) == 500


def test_series_from_config_and_the_demo_prefix() -> None:
    series = SsccSeries.from_config(PackingConfig())
    assert series.company_prefix == DEMO_SSCC_PREFIX
    serial, sscc = series.issue(None)
    assert (serial, sscc[:17]) == (1, "00614141000000001")
    assert_valid(sscc)
    series = SsccSeries.from_config(PackingConfig(sscc_company_prefix="4012345", sscc_extension=7,
                                                  sscc_serial_start=5000, sscc_serial_end=5999))
    assert series.issue(None)[1].startswith("74012345000005000")


@pytest.mark.parametrize(("start", "end"), [(5, 4), (0, 10**9), (-1, 5)])
def test_bad_series_is_refused(start: int, end: int) -> None:
    with pytest.raises(SsccError, match="serial range"):
        SsccSeries(0, "0614141", start, end)
