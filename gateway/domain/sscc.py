"""SSCC-18 numbers for parcels: built from the configured extension digit, GS1 company prefix and a serial
from this gateway's range, with the check digit from biip (a maintained GS1 library), and every number
parsed back with biip before it is used, so a label never carries an SSCC a receiving dock would reject.

Layout (GS1 General Specifications 2.2.1): extension digit (1) + company prefix (6-12) + serial reference
(16 minus the prefix length, zero-padded) + check digit (1) = 18 digits. The serial range is the
gateway's own (`sscc_serial_start`..`sscc_serial_end`), so gateways sharing a prefix never collide;
where the last issued serial is kept (and the gap skipped after a restore) is the journal's business:
this module only says which serial comes next, and refuses when none is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message
from biip.sscc import Sscc

if TYPE_CHECKING:
    from gateway.config import PackingConfig

AI_SSCC = "00"


class SsccError(ValueError):
    """A value that cannot make, or is not, a valid SSCC."""


class SsccRangeExhausted(SsccError):
    """Every serial of this gateway's range has been issued."""


def check_digit(payload: str) -> int:
    """The GS1 mod-10 check digit of the 17-digit payload (biip's implementation)."""
    if len(payload) != 17 or not payload.isdigit():
        raise SsccError(f"an SSCC payload is 17 digits, got {payload!r}")
    return int(gs1_standard_check_digit(payload))


def make_sscc(extension: int, company_prefix: str, serial: int) -> str:
    """The 18-digit SSCC; checked by parsing it back with biip."""
    if not 0 <= extension <= 9:
        raise SsccError(f"SSCC extension digit must be 0-9, got {extension}")
    if not (company_prefix.isdigit() and 6 <= len(company_prefix) <= 12):
        raise SsccError(f"GS1 company prefix must be 6-12 digits, got {company_prefix!r}")
    width = 16 - len(company_prefix)
    if not 0 <= serial < 10**width:
        raise SsccError(f"serial reference {serial} does not fit the {width} digits left by a "
                        f"{len(company_prefix)}-digit company prefix")
    payload = f"{extension}{company_prefix}{serial:0{width}d}"
    return parse_sscc(payload + str(check_digit(payload)))


def parse_sscc(value: str) -> str:
    """The 18 digits of an SSCC given bare, with spaces, as `00` + SSCC, or as `(00) ...`; biip checks it."""
    text = "".join(value.split())
    if text.startswith("(00)"):
        text = text[4:]
    elif len(text) == 20 and text.startswith(AI_SSCC):
        text = text[2:]
    try:
        return str(Sscc.parse(text).value)
    except ParseError as e:
        raise SsccError(str(e)) from None


def element_string(sscc: str) -> str:
    """`00` + SSCC: the data of the GS1-128 symbol, validated as a GS1 message by biip."""
    sscc = parse_sscc(sscc)
    try:
        message = GS1Message.parse(AI_SSCC + sscc)
    except ParseError as e:  # pragma: no cover - parse_sscc already accepted it
        raise SsccError(str(e)) from None
    return str(message.value)


def hri(sscc: str, company_prefix_len: int | None = None) -> str:
    """Human-readable text: `(00) 1 0614141 123456789 7` with the prefix length given (the groups of a
    logistic label), else `(00) 106141411234567897` (GS1's plain HRI)."""
    sscc = parse_sscc(sscc)
    if company_prefix_len is None:
        return f"({AI_SSCC}) {sscc}"
    if not 6 <= company_prefix_len <= 12:
        raise SsccError(f"company prefix length must be 6-12, got {company_prefix_len}")
    cp_end = 1 + company_prefix_len
    return f"({AI_SSCC}) {sscc[0]} {sscc[1:cp_end]} {sscc[cp_end:17]} {sscc[17]}"


@dataclass(frozen=True)
class SsccSeries:
    """This gateway's SSCCs: one extension digit, one company prefix, serials start..end inclusive."""

    extension: int
    company_prefix: str
    serial_start: int
    serial_end: int

    def __post_init__(self) -> None:
        make_sscc(self.extension, self.company_prefix, 0)  # validates extension and prefix
        width = 16 - len(self.company_prefix)
        if not 0 <= self.serial_start <= self.serial_end < 10**width:
            raise SsccError(f"SSCC serial range {self.serial_start}..{self.serial_end} must satisfy "
                            f"0 <= start <= end < 10^{width} with a {len(self.company_prefix)}-digit prefix")

    @classmethod
    def from_config(cls, packing: PackingConfig) -> SsccSeries:
        return cls(packing.sscc_extension, packing.company_prefix, packing.sscc_serial_start,
                   packing.sscc_serial_end)

    @property
    def capacity(self) -> int:
        return self.serial_end - self.serial_start + 1

    def remaining(self, last_issued: int | None) -> int:
        """Serials still free after `last_issued` (None: nothing issued yet)."""
        if last_issued is None:
            return self.capacity
        return max(0, self.serial_end - max(last_issued, self.serial_start - 1))

    def next_serial(self, last_issued: int | None, skip: int = 0) -> int:
        """The serial to issue after `last_issued`, `skip` further on (the restore gap); refuses past the end."""
        if skip < 0:
            raise SsccError(f"skip must be >= 0, got {skip}")
        base = self.serial_start if last_issued is None else max(last_issued + 1, self.serial_start)
        serial = base + skip
        if serial > self.serial_end:
            raise SsccRangeExhausted(
                f"the SSCC serial range {self.serial_start}..{self.serial_end} (company prefix "
                f"{self.company_prefix}, extension {self.extension}) is used up"
                + (f" (last issued {last_issued}" + (f", plus a gap of {skip}" if skip else "") + ")"
                   if last_issued is not None else "")
                + "; give this gateway a new range ([packing] sscc_serial_start / sscc_serial_end) or another "
                "sscc_extension, never one used before")
        return serial

    def sscc(self, serial: int) -> str:
        """The SSCC of one serial of this series."""
        if serial > self.serial_end:
            raise SsccRangeExhausted(f"serial {serial} is past the end of the SSCC range {self.serial_start}.."
                                     f"{self.serial_end}; give this gateway a new range")
        if serial < self.serial_start:
            raise SsccError(f"serial {serial} is before the start of the SSCC range {self.serial_start}.."
                            f"{self.serial_end}")
        return make_sscc(self.extension, self.company_prefix, serial)

    def issue(self, last_issued: int | None, skip: int = 0) -> tuple[int, str]:
        """(serial, SSCC) of the next parcel: what the journal records as the new `last_issued`."""
        serial = self.next_serial(last_issued, skip)
        return serial, self.sscc(serial)
