"""Serial (USB CDC / RS-232) barcode scanners: pyserial opens and configures the port, the event
loop watches its descriptor, and `LineFramer` turns the bytes into scans."""

from __future__ import annotations

import contextlib
import os
import termios
import time
from collections.abc import Callable

import serial

from drivers.scanner.framing import LineFramer
from drivers.scanner.reader import Backoff, ReconnectingReader, ScanCallback, StatusCallback, describe_os_error
from drivers.scanner.scan import RawScan


class SerialScanner(ReconnectingReader):
    kind = "scanner-serial"

    def __init__(self, device_id: str, port: str, on_scan: ScanCallback, on_status: StatusCallback | None = None,
                 *, baudrate: int = 9600, terminator: str = "any", clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None) -> None:
        super().__init__(device_id, port, on_scan, on_status, clock=clock, backoff=backoff)
        self.baudrate = baudrate
        self.framer = LineFramer(device_id, terminator)
        self._serial: serial.Serial | None = None

    def _open(self) -> tuple[int, str]:
        ser = serial.Serial()
        ser.port = self.path  # the path is resolved again at every open: by-id links move on re-enumeration
        ser.baudrate = self.baudrate
        ser.timeout = 0
        ser.exclusive = True
        ser.open()
        try:
            fd = ser.fileno()
            # pyserial leaves VMIN=0, where an empty read means both "nothing yet" and "hung up". With
            # VMIN=1 a non-blocking read with nothing waiting raises EAGAIN, and 0 bytes means hang-up.
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            os.set_blocking(fd, False)
        except termios.error as e:
            ser.close()
            raise OSError(e.args[0] if e.args else None, f"cannot configure {self.path}: {e}") from None
        except BaseException:
            ser.close()
            raise
        self._serial = ser
        real = os.path.realpath(self.path)
        via = f" ({real})" if real != self.path else ""
        return fd, f"opened {self.path}{via} at {self.baudrate} baud"

    def _close(self, fd: int) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(OSError):
                ser.close()

    def _feed(self, data: bytes, t: float) -> list[RawScan]:
        return self.framer.feed(data, t)

    def _forget_partial(self) -> None:
        self.framer.reset()

    def write(self, data: bytes) -> bool:
        """Feedback bytes (e.g. a beep command) for the scanner; never blocks. False if not sent whole."""
        fd = self._fd
        if fd is None or not data:
            return False
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            return False
        except OSError as e:
            self._lose(f"write failed: {describe_os_error(e)}; the device went away")
            return False
        return n == len(data)
