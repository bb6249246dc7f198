"""The value every scanner reader hands up, whatever the wire: one `RawScan` per terminated scan.

Readers know nothing of orders or GS1: they frame bytes or key strokes into scans, peel off the AIM
symbology identifier, and keep exactly what arrived for the audit trail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCAN_CHARS = 4096  # SPEC §2: longer scans are rejected, never buffered without bound
GS = "\x1d"  # GS1 group separator (FNC1 in the symbol)

# An AIM (ISO/IEC 15424) symbology identifier: "]", a code character, one modifier character.
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")


@dataclass(frozen=True, slots=True)
class RawScan:
    """One scan as it arrived.

    `text` has neither terminator nor AIM prefix; GS stays "\\x1d". `raw` is what arrived without the
    terminator (bytes from a serial line, typed characters from a keyboard wedge) so the audit trail
    can show control characters and bad bytes the interpretation drops. `t` is the monotonic time the
    reader saw the last byte or key. A `too_long` scan carries `length` and no text: it is a rejection.
    """

    device_id: str
    text: str
    symbology: str | None
    raw: bytes | str
    t: float
    length: int = 0
    too_long: bool = False

    @property
    def rejection(self) -> str | None:
        if self.too_long:
            return f"scan of {self.length} characters is longer than the limit of {MAX_SCAN_CHARS}"
        return None


def split_aim(text: str) -> tuple[str | None, str]:
    """Split an AIM symbology identifier (`]C1`, `]d2`, `]E0`, ...) off the front, if there is one."""
    if text.startswith("]") and _AIM.match(text):
        return text[:3], text[3:]
    return None, text


def make_scan(device_id: str, text: str, raw: bytes | str, t: float, length: int) -> RawScan:
    """A scan from its decoded characters; `length` counts everything scanned, the AIM prefix included,
    so a long one becomes a rejection here, before anyone interprets it."""
    if length > MAX_SCAN_CHARS:
        return too_long_scan(device_id, raw[:MAX_SCAN_CHARS], t, length)
    symbology, body = split_aim(text)
    return RawScan(device_id, body, symbology, raw, t, length)


def too_long_scan(device_id: str, raw_head: bytes | str, t: float, length: int) -> RawScan:
    return RawScan(device_id, "", None, raw_head, t, length, too_long=True)
