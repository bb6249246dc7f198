"""An RS-485 segment made of two pseudo-terminals joined back to back.

The driver opens `driver_path` and the simulator's pymodbus serial server opens `device_path`, both with
pyserial as they would real adapters; the bytes in between pass through this relay, which is also where
line noise is injected. Both slave ends are kept open here (and set raw at once), so the masters never
see a hang-up between clients and no byte is ever echoed by a tty in cooked mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty


class PtyLine:
    def __init__(self) -> None:
        self._drv_master, self._drv_slave = os.openpty()
        self._dev_master, self._dev_slave = os.openpty()
        for fd in (self._drv_slave, self._dev_slave):
            tty.setraw(fd)
        for fd in (self._drv_master, self._dev_master):
            os.set_blocking(fd, False)
        self.driver_path = os.ttyname(self._drv_slave)
        self.device_path = os.ttyname(self._dev_slave)
        self.bytes_to_device = 0
        self.bytes_to_driver = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._drv_master, self._pump, self._drv_master, self._dev_master)
        self._loop.add_reader(self._dev_master, self._pump, self._dev_master, self._drv_master)

    def _pump(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no reader on the other side right now
            return
        if src == self._drv_master:
            self.bytes_to_device += len(data)
        else:
            self.bytes_to_driver += len(data)
        self._write(dst, data)

    def _write(self, fd: int, data: bytes) -> None:
        # Frames are far below the pty buffer (4 KiB); a full buffer means nobody reads that end, and a
        # real line would lose those bytes too.
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            os.write(fd, data)

    def inject(self, data: bytes) -> None:
        """Noise toward the driver, as a disturbed line would deliver it."""
        self.bytes_to_driver += len(data)
        self._write(self._drv_master, data)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._drv_master)
            self._loop.remove_reader(self._dev_master)
            self._loop = None
        for fd in (self._drv_master, self._dev_master, self._drv_slave, self._dev_slave):
            with contextlib.suppress(OSError):
                os.close(fd)
