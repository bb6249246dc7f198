"""Serial bytes to scans, with no I/O, so every framing quirk is tested with plain bytes.

A serial scanner ends each scan with CR, LF or CRLF (SPEC §2). In the default mode `any`, each of
them ends a scan and the empty scan between CR and LF is dropped, which is exactly "CRLF counts once".
The buffer is bounded: past the limit the bytes are only counted, and the next terminator yields a
`too_long` rejection, after which framing is back in step.
"""

from __future__ import annotations

import re

from drivers.scanner.scan import MAX_SCAN_CHARS, RawScan, make_scan, too_long_scan

TERMINATORS = ("any", "cr", "lf", "crlf")
_PATTERNS = {"any": rb"[\r\n]", "cr": rb"\r", "lf": rb"\n", "crlf": rb"\r\n"}
# UTF-8 needs at most 4 bytes a character, so past this many bytes a scan is too long for certain.
MAX_SCAN_BYTES = 4 * MAX_SCAN_CHARS


class LineFramer:
    def __init__(self, device_id: str, terminator: str = "any") -> None:
        if terminator not in _PATTERNS:
            raise ValueError(f"terminator must be one of {', '.join(TERMINATORS)}; got {terminator!r}")
        self.device_id = device_id
        self.terminator = terminator
        self._term = re.compile(_PATTERNS[terminator])
        self._buf = bytearray()
        self._search_from = 0
        self._dropped = 0  # bytes past MAX_SCAN_BYTES, not kept

    def reset(self) -> None:
        """Forget a partial scan: its device went away, and half a barcode must not join the next one."""
        self._buf.clear()
        self._search_from = 0
        self._dropped = 0

    def feed(self, data: bytes, t: float) -> list[RawScan]:
        out: list[RawScan] = []
        buf = self._buf
        buf += data
        start = 0
        while True:
            m = self._term.search(buf, max(self._search_from, start))
            if m is None:
                break
            scan = self._finish(bytes(buf[start:m.start()]), t)
            if scan is not None:
                out.append(scan)
            start = m.end()
            self._search_from = 0
        if start:
            del buf[:start]
        # A CR at the very end may be the first half of a CRLF: look at it again with the next bytes.
        self._search_from = max(0, len(buf) - 1) if self.terminator == "crlf" else len(buf)
        if len(buf) > MAX_SCAN_BYTES:
            keep_tail = 1 if self.terminator == "crlf" and buf.endswith(b"\r") else 0
            cut_end = len(buf) - keep_tail
            self._dropped += cut_end - MAX_SCAN_BYTES
            del buf[MAX_SCAN_BYTES:cut_end]
            self._search_from = min(self._search_from, len(buf))
        return out

    def _finish(self, body: bytes, t: float) -> RawScan | None:
        dropped, self._dropped = self._dropped, 0
        if not body and not dropped:
            return None  # empty scans are ignored (SPEC §2)
        text = body.decode("utf-8", errors="replace")
        if dropped:
            return too_long_scan(self.device_id, body[:MAX_SCAN_CHARS], t, len(text) + dropped)
        return make_scan(self.device_id, text, body, t, len(text))
