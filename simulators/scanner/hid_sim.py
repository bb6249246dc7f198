"""Keyboard-wedge (HID) barcode scanners, simulated two ways.

`key_events` turns a barcode into the key strokes a scanner configured for a layout types: Shift or
AltGr around a key as needed, GS as Ctrl+] (or the configured substitute character), characters the
layout lacks as Alt + keypad code, Enter at the end.

`VirtualHidFifo` delivers those strokes as real kernel `struct input_event` records through a named
pipe at a path, which the HID reader opens like /dev/input/event*: this works on machines without
/dev/uinput (containers, CI). Unplug removes the path and closes the writer (the reader sees end of
file, as it sees ENODEV from a real device); replug makes a new pipe at the same path.

`VirtualUinputScanner` creates a real input device through /dev/uinput, where the kernel offers it.
Unplug destroys the device (its /dev/input/event* node goes away and a reader holding it gets ENODEV, as
when a USB scanner is pulled); replug creates it again, which, as on re-enumeration, may give another
event node: with `link` (like /dev/input/by-id/...), a stable symlink follows it, as for the serial
simulator.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from drivers.scanner.keymaps import (
    CONTROL_KEYS,
    KEY_ENTER,
    KEY_LEFTALT,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEYPAD_DIGITS,
    Layout,
    get_layout,
)
from drivers.scanner.keys import EV_KEY, EV_SYN, key_records
from simulators.scanner.fdio import write_all, write_all_blocking

GS = "\x1d"
Event = tuple[int, int, int]  # (type, code, value)
_KP_FOR_DIGIT = {d: code for code, d in KEYPAD_DIGITS.items()}
_CONTROL_FOR_CHAR = {ch: code for code, ch in CONTROL_KEYS.items()}


def _tap(code: int, mods: tuple[int, ...] = ()) -> list[Event]:
    ev: list[Event] = []
    for m in mods:
        ev += [(EV_KEY, m, 1), (EV_SYN, 0, 0)]
    ev += [(EV_KEY, code, 1), (EV_SYN, 0, 0), (EV_KEY, code, 0), (EV_SYN, 0, 0)]
    for m in reversed(mods):
        ev += [(EV_KEY, m, 0), (EV_SYN, 0, 0)]
    return ev


def _alt_code(ch: str) -> list[Event]:
    try:
        code = ch.encode("cp1252")[0]
    except UnicodeEncodeError:
        raise ValueError(f"cannot type {ch!r}: not on the layout and not in Windows-1252") from None
    ev: list[Event] = [(EV_KEY, KEY_LEFTALT, 1), (EV_SYN, 0, 0)]
    for d in f"0{code:03d}":
        ev += _tap(_KP_FOR_DIGIT[d])
    return [*ev, (EV_KEY, KEY_LEFTALT, 0), (EV_SYN, 0, 0)]


def key_events(text: str, layout: str | Layout = "us", *, gs_substitute: str = "", enter: bool = True) -> list[Event]:
    """The key strokes of a scanner typing `text` (GS as "\\x1d"), ending with Enter."""
    lay = get_layout(layout) if isinstance(layout, str) else layout
    ev: list[Event] = []
    for ch in text:
        if ch == GS and gs_substitute:
            ch = gs_substitute
        elif ch == GS:
            ev += _tap(next(iter(lay.gs_keys)), (KEY_LEFTCTRL,))
            continue
        if ch in _CONTROL_FOR_CHAR:
            ev += _tap(_CONTROL_FOR_CHAR[ch])
            continue
        if "\x01" <= ch <= "\x1a":  # Ctrl+letter
            key = lay.key_for(chr(ord(ch) + 0x60))
            if key is not None:
                ev += _tap(key[0], (KEY_LEFTCTRL,))
                continue
        key = lay.key_for(ch)
        if key is None:
            ev += _alt_code(ch)
            continue
        code, shift, altgr = key
        mods = ((KEY_LEFTSHIFT,) if shift else ()) + ((KEY_RIGHTALT,) if altgr else ())
        ev += _tap(code, mods)
    if enter:
        ev += _tap(KEY_ENTER)
    return ev


def key_bytes(text: str, layout: str | Layout = "us", *, gs_substitute: str = "", enter: bool = True) -> bytes:
    """`key_events` as native input_event records."""
    return key_records(key_events(text, layout, gs_substitute=gs_substitute, enter=enter))


class VirtualHidFifo:
    """A scanner whose "device node" is a named pipe of input_event records at `path`."""

    def __init__(self, path: str | Path, *, layout: str = "us", gs_substitute: str = "") -> None:
        self.path = Path(path)
        self.layout = layout
        self.gs_substitute = gs_substitute
        self.fd: int | None = None

    @property
    def plugged(self) -> bool:
        return self.fd is not None

    def plug(self) -> str:
        if self.fd is not None:
            raise RuntimeError("already plugged in")
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.mkfifo(tmp, 0o600)
        # Open our end before the pipe appears at `path`, so a reader never sees a pipe without a
        # writer (which reads as end of file, i.e. "unplugged"). O_RDWR does not wait for a reader.
        self.fd = os.open(tmp, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        os.replace(tmp, self.path)
        return str(self.path)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISFIFO(os.lstat(self.path).st_mode):
                self.path.unlink()
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None

    def replug(self) -> str:
        if self.plugged:
            self.unplug()
        return self.plug()

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> VirtualHidFifo:
        if not self.plugged:
            self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self, text: str, *, enter: bool = True) -> bytes:
        return key_bytes(text, self.layout, gs_substitute=self.gs_substitute, enter=enter)

    def _fd(self) -> int:
        if self.fd is None:
            raise RuntimeError("the virtual scanner is unplugged")
        return self.fd

    async def send(self, data: bytes) -> None:
        """Write all records, waiting in the loop while the pipe is full (the reader drains it)."""
        await write_all(self._fd(), data)

    def send_blocking(self, data: bytes) -> None:
        write_all_blocking(self._fd(), data)

    async def scan(self, text: str, *, enter: bool = True) -> bytes:
        data = self.records(text, enter=enter)
        await self.send(data)
        return data


def uinput_available() -> tuple[bool, str]:
    """Whether this machine lets us create input devices, and if not, why."""
    if not os.path.exists("/dev/uinput"):
        return False, "/dev/uinput does not exist (no uinput module, or a container without it)"
    if not os.access("/dev/uinput", os.W_OK):
        return False, "/dev/uinput is not writable by this user (add them to the input group or run as root)"
    try:
        import evdev  # noqa: F401
    except ImportError as e:
        return False, f"python-evdev is not importable: {e}"
    return True, "ok"


class VirtualUinputScanner:
    """A real input device made through /dev/uinput, plugged in at once.

    `path` is what a reader should open: the stable `link` if there is one, else the device's
    /dev/input/event* node (`event_path`), which may change at every replug.
    """

    def __init__(self, *, layout: str = "us", gs_substitute: str = "", name: str = "Floorgate virtual scanner",
                 link: str | Path | None = None) -> None:
        self.layout = layout
        self.gs_substitute = gs_substitute
        self.name = name
        self.link = Path(link) if link is not None else None
        self._ui: Any = None
        self.event_path = ""
        self.plug()

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.event_path

    @property
    def plugged(self) -> bool:
        return self._ui is not None

    def plug(self) -> str:
        from evdev import UInput, ecodes

        if self._ui is not None:
            raise RuntimeError("already plugged in")
        keys = sorted(set(ecodes.KEY) & set(range(1, 128)))
        self._ui = UInput({ecodes.EV_KEY: keys}, name=self.name)
        self.event_path = str(self._ui.device.path)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.event_path)
            os.replace(tmp, self.link)
        return self.path

    def unplug(self) -> None:
        """The device goes away: the link first (as udev removes it), then the device itself."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self.link.is_symlink():
                    self.link.unlink()
        ui, self._ui = self._ui, None
        if ui is not None:
            with contextlib.suppress(OSError):
                ui.close()

    def replug(self) -> str:
        if self.plugged:
            self.unplug()
        return self.plug()

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> VirtualUinputScanner:
        if not self.plugged:
            self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan_blocking(self, text: str, *, enter: bool = True) -> None:
        """Write the strokes; uinput writes are small and never wait for a reader."""
        if self._ui is None:
            raise RuntimeError("the virtual scanner is unplugged")
        for typ, code, value in key_events(text, self.layout, gs_substitute=self.gs_substitute, enter=enter):
            if typ == EV_SYN:
                self._ui.syn()
            else:
                self._ui.write(typ, code, value)
