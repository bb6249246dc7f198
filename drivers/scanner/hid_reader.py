"""HID (keyboard wedge) barcode scanners through evdev: the device node is grabbed so scans do not
also type into a console, and `KeyDecoder` turns the kernel's input_event records into scans.

Anything that reads like an input device works: a FIFO of input_event records is read the same way
(it cannot be grabbed, which is reported in the status line), which is how tests and machines
without /dev/uinput drive this code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable

from drivers.scanner.keymaps import Layout
from drivers.scanner.keys import KeyDecoder
from drivers.scanner.reader import Backoff, ReconnectingReader, ScanCallback, StatusCallback
from drivers.scanner.scan import RawScan

EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int)


class HidScanner(ReconnectingReader):
    kind = "scanner-hid"

    def __init__(self, device_id: str, path: str, on_scan: ScanCallback, on_status: StatusCallback | None = None,
                 *, layout: str | Layout = "us", gs_substitute: str = "", grab: bool = True,
                 clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None) -> None:
        super().__init__(device_id, path, on_scan, on_status, clock=clock, backoff=backoff)
        self.decoder = KeyDecoder(device_id, layout, gs_substitute)
        self.grab = grab
        self.grabbed = False

    def _open(self) -> tuple[int, str]:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            os.close(fd)
            raise ValueError("not an input device (expected a character device such as /dev/input/event3)")
        self.grabbed = False
        note = "not grabbed (grab = false)"
        if self.grab:
            try:
                fcntl.ioctl(fd, EVIOCGRAB, 1)
                self.grabbed = True
                note = "grabbed"
            except OSError as e:
                if e.errno in (errno.ENOTTY, errno.EINVAL):
                    note = "not an evdev device node, so not grabbed"
                else:
                    os.close(fd)
                    if e.errno == errno.EBUSY:
                        raise OSError(e.errno, "another program holds the device exclusively (EVIOCGRAB); "
                                               "stop it or set grab off") from None
                    raise
        real = os.path.realpath(self.path)
        via = f" ({real})" if real != self.path else ""
        return fd, f"opened {self.path}{via}, {note}, layout {self.decoder.layout.name}"

    def _close(self, fd: int) -> None:
        self.grabbed = False  # closing the fd also ends the grab
        with contextlib.suppress(OSError):
            os.close(fd)

    def _feed(self, data: bytes, t: float) -> list[RawScan]:
        return self.decoder.feed(data, t)

    def _forget_partial(self) -> None:
        self.decoder.reset()
