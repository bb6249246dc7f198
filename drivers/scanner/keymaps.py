"""Keyboard layouts for HID (keyboard wedge) scanners.

A wedge scanner types the barcode as key strokes for the layout it was configured for, so the same
key code means "z" to a US-configured scanner and "y" to a German one; the gateway must decode with
the layout the scanner types in (`layout` in `[[scanners]]`).

Key codes are the kernel's (linux/input-event-codes.h, a stable ABI), written out here so decoding
needs no evdev import and runs anywhere. "de" is the German T1 layout without dead keys (a scanner
cannot rely on dead-key composition): acute, grave and circumflex come out as themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEY_ESC, KEY_BACKSPACE, KEY_TAB, KEY_ENTER, KEY_SPACE, KEY_CAPSLOCK = 1, 14, 15, 28, 57, 58
KEY_LEFTCTRL, KEY_RIGHTCTRL = 29, 97
KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 42, 54
KEY_LEFTALT, KEY_RIGHTALT = 56, 100
KEY_KPENTER = 96
KEY_RIGHTBRACE = 27

# The main block: key code -> name, in kernel order.
KEY_CODES: dict[str, int] = {
    "KEY_1": 2, "KEY_2": 3, "KEY_3": 4, "KEY_4": 5, "KEY_5": 6, "KEY_6": 7, "KEY_7": 8, "KEY_8": 9,
    "KEY_9": 10, "KEY_0": 11, "KEY_MINUS": 12, "KEY_EQUAL": 13,
    "KEY_Q": 16, "KEY_W": 17, "KEY_E": 18, "KEY_R": 19, "KEY_T": 20, "KEY_Y": 21, "KEY_U": 22, "KEY_I": 23,
    "KEY_O": 24, "KEY_P": 25, "KEY_LEFTBRACE": 26, "KEY_RIGHTBRACE": 27,
    "KEY_A": 30, "KEY_S": 31, "KEY_D": 32, "KEY_F": 33, "KEY_G": 34, "KEY_H": 35, "KEY_J": 36, "KEY_K": 37,
    "KEY_L": 38, "KEY_SEMICOLON": 39, "KEY_APOSTROPHE": 40, "KEY_GRAVE": 41, "KEY_BACKSLASH": 43,
    "KEY_Z": 44, "KEY_X": 45, "KEY_C": 46, "KEY_V": 47, "KEY_B": 48, "KEY_N": 49, "KEY_M": 50,
    "KEY_COMMA": 51, "KEY_DOT": 52, "KEY_SLASH": 53, "KEY_SPACE": 57, "KEY_102ND": 86,
    "KEY_ESC": KEY_ESC, "KEY_BACKSPACE": KEY_BACKSPACE, "KEY_TAB": KEY_TAB, "KEY_ENTER": KEY_ENTER,
    "KEY_CAPSLOCK": KEY_CAPSLOCK, "KEY_LEFTCTRL": KEY_LEFTCTRL, "KEY_RIGHTCTRL": KEY_RIGHTCTRL,
    "KEY_LEFTSHIFT": KEY_LEFTSHIFT, "KEY_RIGHTSHIFT": KEY_RIGHTSHIFT, "KEY_LEFTALT": KEY_LEFTALT,
    "KEY_RIGHTALT": KEY_RIGHTALT, "KEY_KPENTER": KEY_KPENTER,
    "KEY_KP7": 71, "KEY_KP8": 72, "KEY_KP9": 73, "KEY_KPMINUS": 74, "KEY_KP4": 75, "KEY_KP5": 76,
    "KEY_KP6": 77, "KEY_KPPLUS": 78, "KEY_KP1": 79, "KEY_KP2": 80, "KEY_KP3": 81, "KEY_KP0": 82,
    "KEY_KPDOT": 83, "KEY_KPSLASH": 98, "KEY_KPASTERISK": 55,
}
K = KEY_CODES

KEYPAD_DIGITS: dict[int, str] = {K[f"KEY_KP{d}"]: str(d) for d in range(10)}
KEYPAD_OTHER: dict[int, str] = {K["KEY_KPMINUS"]: "-", K["KEY_KPPLUS"]: "+", K["KEY_KPSLASH"]: "/",
                                K["KEY_KPASTERISK"]: "*"}
# Keys that type a control character by themselves; it goes to the audit trail, not into the scan.
CONTROL_KEYS: dict[int, str] = {KEY_TAB: "\t", KEY_ESC: "\x1b", KEY_BACKSPACE: "\x08"}
ENTER_KEYS = frozenset({KEY_ENTER, KEY_KPENTER})


def _rows(spec: str) -> dict[int, tuple[str, str, str]]:
    """Parse "KEY_X plain shift [altgr]" lines; the word `space` stands for " "."""
    out: dict[int, tuple[str, str, str]] = {}
    for line in spec.strip().splitlines():
        name, *chars = line.split()
        chars = [" " if c == "space" else c for c in chars] + ["", ""]
        out[K[name]] = (chars[0], chars[1], chars[2])
    return out


_LETTERS_US = {f"KEY_{c}": c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _letters(mapping: dict[str, str]) -> str:
    return "\n".join(f"{k} {v} {v.upper()}" for k, v in mapping.items())


US_SPEC = _letters(_LETTERS_US) + """
KEY_1 1 !
KEY_2 2 @
KEY_3 3 #
KEY_4 4 $
KEY_5 5 %
KEY_6 6 ^
KEY_7 7 &
KEY_8 8 *
KEY_9 9 (
KEY_0 0 )
KEY_MINUS - _
KEY_EQUAL = +
KEY_LEFTBRACE [ {
KEY_RIGHTBRACE ] }
KEY_SEMICOLON ; :
KEY_APOSTROPHE ' "
KEY_GRAVE ` ~
KEY_BACKSLASH \\ |
KEY_COMMA , <
KEY_DOT . >
KEY_SLASH / ?
KEY_102ND < >
KEY_SPACE space space
"""

_LETTERS_DE = dict(_LETTERS_US, KEY_Y="z", KEY_Z="y")
DE_SPEC = _letters(_LETTERS_DE) + """
KEY_1 1 !
KEY_2 2 " ²
KEY_3 3 § ³
KEY_4 4 $
KEY_5 5 %
KEY_6 6 &
KEY_7 7 / {
KEY_8 8 ( [
KEY_9 9 ) ]
KEY_0 0 = }
KEY_MINUS ß ? \\
KEY_EQUAL \u00b4 `
KEY_LEFTBRACE ü Ü
KEY_RIGHTBRACE + * ~
KEY_SEMICOLON ö Ö
KEY_APOSTROPHE ä Ä
KEY_GRAVE ^ °
KEY_BACKSLASH # '
KEY_COMMA , ;
KEY_DOT . :
KEY_SLASH - _
KEY_102ND < > |
KEY_SPACE space space
"""


@dataclass(frozen=True)
class Layout:
    """`keys`: code -> (plain, shift, altgr). `altgr`: the right Alt key is AltGr (else it is Alt).

    `gs_keys` are the keys that give GS (0x1D) with Ctrl: the key that carries "]" on a US keyboard,
    which is "+" on a German one (the Linux console's de map and terminal emulators agree).
    """

    name: str
    keys: dict[int, tuple[str, str, str]]
    altgr: bool
    kp_decimal: str
    gs_keys: frozenset[int] = frozenset({KEY_RIGHTBRACE})
    _reverse: dict[str, tuple[int, bool, bool]] = field(default_factory=dict, repr=False, compare=False)

    def char(self, code: int, shift: bool, altgr: bool, caps: bool) -> str:
        """The character a key types, or "" for none. Caps Lock flips Shift for letters only."""
        entry = self.keys.get(code)
        if entry is None:
            return ""
        plain, shifted, third = entry
        if altgr and self.altgr:
            return third
        if caps and plain.isalpha() and shifted == plain.upper():
            shift = not shift
        return shifted if shift else plain

    def key_for(self, ch: str) -> tuple[int, bool, bool] | None:
        """(code, shift, altgr) that types `ch`, for simulators; the plainest way wins."""
        if not self._reverse:
            for level in (0, 1, 2):
                for code, entry in self.keys.items():
                    c = entry[level]
                    if c and c not in self._reverse and (level < 2 or self.altgr):
                        self._reverse[c] = (code, level == 1, level == 2)
        return self._reverse.get(ch)


_DE_KEYS = _rows(DE_SPEC)
_DE_KEYS.update({K["KEY_Q"]: ("q", "Q", "@"), K["KEY_E"]: ("e", "E", "\u20ac"), K["KEY_M"]: ("m", "M", "\u00b5")})

LAYOUTS: dict[str, Layout] = {
    "us": Layout("us", _rows(US_SPEC), altgr=False, kp_decimal="."),
    "de": Layout("de", _DE_KEYS, altgr=True, kp_decimal=","),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"keyboard layout must be one of {', '.join(LAYOUTS)}; got {name!r}") from None
