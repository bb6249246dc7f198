"""Framing serial bytes and decoding key events, on plain bytes: terminators, AIM identifiers, GS, length
limits, keyboard layouts (us, de) with Shift, AltGr, Ctrl+] and Alt codes."""

from __future__ import annotations

import struct

import pytest

from drivers.scanner import EVENT, MAX_SCAN_CHARS, Backoff, KeyDecoder, LineFramer, RawScan, key_records
from drivers.scanner.keymaps import KEY_CODES

K = KEY_CODES
GS = "\x1d"


def texts(scans: list[RawScan]) -> list[str]:
    return [s.text for s in scans]


# --- serial framing ---------------------------------------------------------------------------------------

def test_any_terminator_takes_cr_lf_and_crlf_once() -> None:
    f = LineFramer("s1")
    assert texts(f.feed(b"A\rB\nC\r\nD\r\n\r\n\n\rE", 1.0)) == ["A", "B", "C", "D"]
    assert texts(f.feed(b"\r", 2.0)) == ["E"]


def test_crlf_split_between_reads() -> None:
    f = LineFramer("s1", "crlf")
    assert f.feed(b"ABC\r", 1.0) == []
    [scan] = f.feed(b"\nDEF", 2.0)
    assert (scan.text, scan.t) == ("ABC", 2.0)


def test_crlf_mode_keeps_a_lone_cr_or_lf_as_data() -> None:
    f = LineFramer("s1", "crlf")
    assert texts(f.feed(b"A\rB\nC\r\n", 1.0)) == ["A\rB\nC"]


@pytest.mark.parametrize(("mode", "data", "expected"), [
    ("cr", b"A\r\nB\r", ["A", "\nB"]),
    ("lf", b"A\r\nB\n", ["A\r", "B"]),
    ("any", b"\r\n\r\n", []),
])
def test_single_terminator_modes(mode: str, data: bytes, expected: list[str]) -> None:
    assert texts(LineFramer("s1", mode).feed(data, 1.0)) == expected


def test_bad_terminator_setting_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="terminator must be one of any, cr, lf, crlf"):
        LineFramer("s1", "semicolon")


def test_aim_identifier_is_parsed_and_kept_and_gs_stays() -> None:
    [scan] = LineFramer("s1").feed(b"]C10109506000134352\x1d10AB\r\n", 1.0)
    assert (scan.symbology, scan.text) == ("]C1", "0109506000134352\x1d10AB")
    assert scan.raw == b"]C10109506000134352\x1d10AB" and scan.length == 24


def test_bad_utf8_is_replaced_in_text_and_kept_in_raw() -> None:
    [scan] = LineFramer("s1").feed(b"A\xffB\r", 1.0)
    assert scan.text == "A\ufffdB" and scan.raw == b"A\xffB"


def test_too_long_scan_is_a_rejection_and_framing_resynchronises() -> None:
    f = LineFramer("s1")
    out: list[RawScan] = []
    for _ in range(40):  # 40 x 1000 bytes without a terminator: the buffer must stay bounded
        out += f.feed(b"X" * 1000, 1.0)
    assert out == [] and len(f._buf) <= 4 * MAX_SCAN_CHARS
    out += f.feed(b"\r\nNEXT\r\n", 2.0)
    assert [s.too_long for s in out] == [True, False]
    assert out[0].length == 40_000 and out[0].rejection and "4096" in out[0].rejection
    assert out[1].text == "NEXT"


def test_exactly_the_limit_is_accepted_one_more_is_not() -> None:
    f = LineFramer("s1")
    [ok] = f.feed(b"A" * MAX_SCAN_CHARS + b"\r", 1.0)
    [bad] = f.feed(b"A" * (MAX_SCAN_CHARS + 1) + b"\r", 1.0)
    assert (ok.too_long, bad.too_long, bad.text) == (False, True, "")


def test_reset_drops_a_partial_scan() -> None:
    f = LineFramer("s1")
    f.feed(b"HALF", 1.0)
    f.reset()
    assert texts(f.feed(b"WHOLE\r", 2.0)) == ["WHOLE"]


# --- key decoding -----------------------------------------------------------------------------------------

def press(*names: str) -> list[tuple[int, int, int]]:
    """Hold the modifiers (all but the last name), tap the last key, release the modifiers."""
    *mods, key = names
    ev = [(1, K[m], 1) for m in mods] + [(1, K[key], 1), (0, 0, 0), (1, K[key], 0)]
    return ev + [(1, K[m], 0) for m in reversed(mods)] + [(0, 0, 0)]


def enter() -> list[tuple[int, int, int]]:
    return press("KEY_ENTER")


def decode(events: list[tuple[int, int, int]], layout: str = "us", gs_substitute: str = "") -> list[RawScan]:
    return KeyDecoder("h1", layout, gs_substitute).feed(key_records(events), 5.0)


def test_native_input_event_layout() -> None:
    assert EVENT.size == struct.calcsize("@llHHi") == (24 if struct.calcsize("l") == 8 else 16)


def test_key_codes_are_the_kernels() -> None:
    ecodes = pytest.importorskip("evdev.ecodes")
    for name, code in KEY_CODES.items():
        assert ecodes.ecodes[name] == code, name


def test_us_letters_digits_and_shift() -> None:
    ev = (press("KEY_A") + press("KEY_LEFTSHIFT", "KEY_B") + press("KEY_RIGHTSHIFT", "KEY_1")
          + press("KEY_2") + press("KEY_LEFTSHIFT", "KEY_MINUS") + press("KEY_Z") + press("KEY_Y") + enter())
    assert texts(decode(ev)) == ["aB!2_zy"]


def test_de_swaps_y_z_and_moves_symbols() -> None:
    ev = (press("KEY_Z") + press("KEY_Y") + press("KEY_LEFTSHIFT", "KEY_2") + press("KEY_LEFTSHIFT", "KEY_7")
          + press("KEY_SLASH") + press("KEY_LEFTSHIFT", "KEY_SLASH") + press("KEY_SEMICOLON")
          + press("KEY_LEFTSHIFT", "KEY_APOSTROPHE") + press("KEY_MINUS") + enter())
    assert texts(decode(ev, "de")) == ['yz"/-_öÄß']


def test_de_altgr() -> None:
    ev = (press("KEY_RIGHTALT", "KEY_Q") + press("KEY_RIGHTALT", "KEY_8") + press("KEY_RIGHTALT", "KEY_9")
          + press("KEY_RIGHTALT", "KEY_MINUS") + press("KEY_RIGHTALT", "KEY_E") + press("KEY_RIGHTALT", "KEY_102ND")
          + enter())
    assert texts(decode(ev, "de")) == ["@[]\\€|"]


def test_right_alt_is_not_altgr_on_us() -> None:
    assert texts(decode(press("KEY_RIGHTALT", "KEY_Q") + enter())) == ["q"]


def test_ctrl_bracket_is_gs_on_us_and_the_same_key_on_de() -> None:
    ev = press("KEY_1") + press("KEY_LEFTCTRL", "KEY_RIGHTBRACE") + press("KEY_2") + enter()
    for layout in ("us", "de"):
        [scan] = decode(ev, layout)
        assert scan.text == "1\x1d2" and scan.raw == "1\x1d2"
    # On de, Ctrl with the key that types "]" (AltGr+9) is GS as well.
    [scan] = decode(press("KEY_RIGHTCTRL", "KEY_RIGHTALT", "KEY_9") + enter(), "de")
    assert scan.text == GS


def test_gs_substitute() -> None:
    [scan] = decode(press("KEY_1") + press("KEY_LEFTSHIFT", "KEY_GRAVE") + press("KEY_2") + enter(),
                    gs_substitute="~")
    assert scan.text == "1\x1d2" and scan.raw == "1~2"


def test_other_control_characters_are_dropped_from_text_but_kept_in_raw() -> None:
    ev = press("KEY_LEFTCTRL", "KEY_B") + press("KEY_X") + press("KEY_TAB") + press("KEY_LEFTCTRL", "KEY_C") + enter()
    [scan] = decode(ev)
    assert scan.text == "x" and scan.raw == "\x02x\t\x03"


def test_caps_lock_flips_letters_only() -> None:
    ev = press("KEY_CAPSLOCK") + press("KEY_A") + press("KEY_LEFTSHIFT", "KEY_B") + press("KEY_1") + enter()
    assert texts(decode(ev)) == ["Ab1"]


def test_alt_keypad_codes() -> None:
    ev = [(1, K["KEY_LEFTALT"], 1), *press("KEY_KP0"), *press("KEY_KP2"), *press("KEY_KP9")]
    ev += [(1, K["KEY_LEFTALT"], 0), *press("KEY_X"), (1, K["KEY_LEFTALT"], 1), *press("KEY_KP1")]
    ev += press("KEY_KP3") + press("KEY_KP2") + [(1, K["KEY_LEFTALT"], 0)] + [(1, K["KEY_LEFTALT"], 1)]
    ev += press("KEY_KP0") + press("KEY_KP2") + press("KEY_KP2") + press("KEY_KP8") + [(1, K["KEY_LEFTALT"], 0)]
    [scan] = decode(ev + enter())
    assert scan.text == "\x1dx\u00e4\u00e4"  # Alt+029 = GS; ä is Alt+132 (code page 437) and Alt+0228 (1252)


def test_keypad_enter_ends_a_scan_and_empty_scans_are_ignored() -> None:
    ev = enter() + press("KEY_KP1") + press("KEY_KPDOT") + press("KEY_KPENTER") + enter()
    assert texts(decode(ev)) == ["1."]
    assert texts(decode(press("KEY_KP1") + press("KEY_KPDOT") + enter(), "de")) == ["1,"]


def test_aim_prefix_typed_by_a_wedge_is_parsed() -> None:
    ev = press("KEY_RIGHTBRACE") + press("KEY_LEFTSHIFT", "KEY_C") + press("KEY_1") + press("KEY_0") + enter()
    [scan] = decode(ev)
    assert (scan.symbology, scan.text) == ("]C1", "0")


def test_records_split_anywhere_between_reads() -> None:
    data = key_records(press("KEY_LEFTSHIFT", "KEY_H") + press("KEY_I") + enter())
    d = KeyDecoder("h1")
    out: list[RawScan] = []
    for i in range(0, len(data), 7):
        out += d.feed(data[i:i + 7], 1.0)
    assert texts(out) == ["Hi"]


def test_hid_too_long_is_a_rejection_and_resynchronises() -> None:
    d = KeyDecoder("h1")
    out = d.feed(key_records(press("KEY_A") * (MAX_SCAN_CHARS + 5) + enter() + press("KEY_B") + enter()), 1.0)
    assert [s.too_long for s in out] == [True, False]
    assert out[0].length == MAX_SCAN_CHARS + 5 and out[1].text == "b"


def test_non_key_events_and_buttons_are_ignored() -> None:
    ev = [(4, 4, 458756), (2, 0, 5), (1, 0x110, 1), (1, 0x110, 0), (1, 0x2FF, 1), (17, 1, 1)]
    assert texts(decode(ev + press("KEY_A") + enter())) == ["a"]


def test_a_key_with_no_character_drops_its_scan_and_the_next_one_reads() -> None:
    """A F1 B 1 2 was read as "AB12", another code; NumLock (sent around Alt + keypad codes) types nothing."""
    f1, home, numlock = 59, 102, 69
    for code in (f1, home, 183):  # F1, Home, F13
        ev = [*press("KEY_A"), (1, code, 1), (1, code, 0), *press("KEY_B"), *press("KEY_1"), *enter()]
        assert texts(decode(ev + press("KEY_2") + enter())) == ["2"], code
    lock = [(1, numlock, 1), (1, numlock, 0)]
    assert texts(decode(lock + press("KEY_A") + lock + enter())) == ["a"]


def test_key_repeats_type_nothing() -> None:
    """The kernel's autorepeat of a key held down (value 2): "R" held with two repeats became "RRR1"."""
    r = KEY_CODES["KEY_R"]
    ev = [(1, r, 1), (1, r, 2), (1, r, 2), (1, r, 0), *press("KEY_1"), *enter()]
    assert texts(decode(ev)) == ["r1"]


def test_unknown_layout_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="layout must be one of us, de"):
        KeyDecoder("h1", "fr")


# --- reconnect backoff --------------------------------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.05, 1.0)
    assert [b.next() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.05
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_kernel_buffer_overrun_drops_the_scan_in_progress() -> None:
    # SYN_DROPPED: strokes were lost, so "12" + lost + "34" must not become the scan "1234".
    ev = press("KEY_1") + press("KEY_2") + [(0, 3, 0)] + press("KEY_3") + press("KEY_4") + enter()
    assert texts(decode(ev + press("KEY_5") + enter())) == ["5"]


def test_a_byte_that_was_not_utf8_is_named_in_the_reason_not_drawn() -> None:
    from gateway.domain.barcode import interpret

    bc = interpret("NONUTF\ufffd(")
    assert bc.reason is not None
    assert bc.kind == "unknown" and "\ufffd" not in bc.reason and "NONUTF\\ufffd(" in bc.reason, bc.reason
