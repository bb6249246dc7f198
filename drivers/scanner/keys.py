"""Kernel input events to scans, with no I/O: a keyboard-wedge scanner's key strokes, decoded.

Input is the kernel's own `struct input_event` records (native layout: 24 bytes on 64-bit, 16 on
32-bit), taken from any file descriptor, so /dev/input/event* and a test's pipe share every line of
this code. Records may arrive split at any byte; the remainder waits for the next read.

Decoding follows a console: Shift, Caps Lock and (on "de") AltGr select the character; Enter or
keypad Enter ends a scan; Ctrl+] (the same physical key on "de") is GS; Alt + keypad digits type the
character of that code, as scanners do in their "universal" mode. Other control characters are kept
in `raw` for the audit trail but left out of `text`.
"""

from __future__ import annotations

import logging
import struct

from drivers.scanner.keymaps import (
    CONTROL_KEYS,
    ENTER_KEYS,
    KEY_CAPSLOCK,
    KEY_LEFTALT,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEY_RIGHTCTRL,
    KEY_RIGHTSHIFT,
    KEYPAD_DIGITS,
    KEYPAD_OTHER,
    K,
    Layout,
    get_layout,
)
from drivers.scanner.scan import GS, MAX_SCAN_CHARS, RawScan, make_scan, too_long_scan

log = logging.getLogger("floorgate.scanner")

EVENT = struct.Struct("@llHHi")  # struct input_event: time (sec, usec), type, code, value
EV_SYN, EV_KEY = 0, 1
SYN_DROPPED = 3  # the kernel's event buffer overflowed: events are missing
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2
_KPDOT = K["KEY_KPDOT"]
# Keys that type nothing and change no character: lock and system keys some scanners send around a scan
# (NumLock for Alt + keypad codes). Any other key without a character garbles the scan (KeyDecoder.key).
SILENT_KEYS = frozenset({69, 70, 125, 126, 127})  # NumLock, ScrollLock, left and right Meta, Compose
BTN_FIRST = 0x100  # codes from here on are buttons (mouse, joystick), not keys: a combined device's, ignored


def _is_control(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or 0x7F <= o < 0xA0


class KeyDecoder:
    def __init__(self, device_id: str, layout: str | Layout = "us", gs_substitute: str = "") -> None:
        if len(gs_substitute) > 1:
            raise ValueError(f"gs_substitute must be one character or empty; got {gs_substitute!r}")
        self.device_id = device_id
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.gs_substitute = gs_substitute
        self._pending = b""
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._alt: set[int] = set()
        self._altgr = False
        self._caps = False
        self._alt_digits = ""
        self._text: list[str] = []
        self._raw: list[str] = []
        self._count = 0
        self._skip = False
        self.unknown_keys: set[int] = set()  # key codes seen with no character in the keymap (logged once each)

    def reset(self) -> None:
        """Forget a partial scan and every held key: the device went away mid-scan."""
        self._pending = b""
        self._caps = False
        self._drop(skip=False)

    def _drop(self, skip: bool) -> None:
        self._shift.clear()
        self._ctrl.clear()
        self._alt.clear()
        self._altgr = False
        self._alt_digits = ""
        self._text, self._raw, self._count = [], [], 0
        self._skip = skip

    def feed(self, data: bytes, t: float) -> list[RawScan]:
        """Decode whole records; keep a trailing partial record for the next call."""
        if self._pending:
            data = self._pending + data
        whole = len(data) - len(data) % EVENT.size
        self._pending = data[whole:]
        out: list[RawScan] = []
        for _sec, _usec, typ, code, value in EVENT.iter_unpack(memoryview(data)[:whole]):
            if typ == EV_KEY:
                scan = self.key(code, value, t)
                if scan is not None:
                    out.append(scan)
            elif typ == EV_SYN and code == SYN_DROPPED:
                self._overrun()
        return out

    def _overrun(self) -> None:
        """Key strokes were lost: a scan missing characters could read as another valid code, so the scan
        in progress is dropped up to its Enter (the person sees no confirmation and scans again)."""
        self._drop(skip=True)

    def key(self, code: int, value: int, t: float) -> RawScan | None:
        """One EV_KEY event; returns a scan when it ended one."""
        if self._modifier(code, value) or value == KEY_RELEASE:
            return None
        if value == KEY_REPEAT:
            # The kernel's autorepeat of a key held down (a release lost or late): "R" held became "RRR1", a
            # different code. A scanner types each character once.
            return None
        if code in ENTER_KEYS:
            if self._skip:
                self._drop(skip=False)
                return None
            return self._finish(t)
        if self._alt and code in KEYPAD_DIGITS:
            self._alt_digits += KEYPAD_DIGITS[code]
            return None
        ch = self._char(code)
        if not ch and not self._ctrl and not self._alt and code not in SILENT_KEYS and code < BTN_FIRST:
            # A key with no character in this keymap (F1, Home, a code the layout lacks): left out, "A F1 B 1 2"
            # read as "AB12", another code. The scan is dropped up to its Enter, as for lost key strokes.
            if code not in self.unknown_keys:
                log.warning("scanner sent a key with no character in its keymap: scan dropped", extra={
                    "fields": {"device": self.device_id, "key_code": code, "layout": self.layout.name}})
            self.unknown_keys.add(code)
            self._drop(skip=True)
            return None
        self._typed(ch)
        return None

    def _modifier(self, code: int, value: int) -> bool:
        held = value != KEY_RELEASE
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            group = self._shift
        elif code in (KEY_LEFTCTRL, KEY_RIGHTCTRL):
            group = self._ctrl
        elif code == KEY_RIGHTALT and self.layout.altgr:
            self._altgr = held
            return True
        elif code in (KEY_LEFTALT, KEY_RIGHTALT):
            group = self._alt
            if not held and self._alt_digits:
                self._alt_code()
        elif code == KEY_CAPSLOCK:
            if value == KEY_PRESS:
                self._caps = not self._caps
            return True
        else:
            return False
        if held:
            group.add(code)
        else:
            group.discard(code)
        return True

    def _alt_code(self) -> None:
        """Alt+0nnn is a Windows-1252 code, Alt+nnn a code page 437 one, as on the PC the scanner mimics."""
        digits, self._alt_digits = self._alt_digits, ""
        value = int(digits) % 256
        if value:
            self._typed(bytes([value]).decode("cp1252" if digits.startswith("0") else "cp437", errors="replace"))

    def _char(self, code: int) -> str:
        if code in CONTROL_KEYS:
            return CONTROL_KEYS[code]
        if code in KEYPAD_DIGITS:
            return KEYPAD_DIGITS[code]
        if code in KEYPAD_OTHER:
            return KEYPAD_OTHER[code]
        if code == _KPDOT:
            return self.layout.kp_decimal
        if self._ctrl:
            if code in self.layout.gs_keys:
                return GS
            ch = self.layout.char(code, bool(self._shift), self._altgr, False)
            if ch.isascii() and ch.isalpha():
                return chr(ord(ch.upper()) - 0x40)
            if ch and ch in "@[\\]^_":
                return chr(ord(ch) - 0x40)
            return ""
        return self.layout.char(code, bool(self._shift), self._altgr, self._caps)

    def _typed(self, ch: str) -> None:
        if not ch:
            return
        self._count += 1
        if self._count <= MAX_SCAN_CHARS:
            self._raw.append(ch)
            if ch == self.gs_substitute or ch == GS:
                self._text.append(GS)
            elif not _is_control(ch):
                self._text.append(ch)

    def _finish(self, t: float) -> RawScan | None:
        count, text, raw = self._count, "".join(self._text), "".join(self._raw)
        self._text, self._raw, self._count = [], [], 0
        if count == 0:
            return None  # empty scans are ignored
        if count > MAX_SCAN_CHARS:
            return too_long_scan(self.device_id, raw, t, count)
        return make_scan(self.device_id, text, raw, t, count)


def key_records(events: list[tuple[int, int, int]], sec: int = 0, usec: int = 0) -> bytes:
    """(type, code, value) triples as native input_event records, as the kernel would write them."""
    return b"".join(EVENT.pack(sec, usec, typ, code, value) for typ, code, value in events)
