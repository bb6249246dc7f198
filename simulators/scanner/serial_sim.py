"""A serial barcode scanner on a pseudo-terminal pair: the reader opens the pty's slave side (or a stable
symlink to it, like /dev/serial/by-id/...) exactly as it would open /dev/ttyACM0.

Unplug closes the master, which hangs up the reader's side as a USB disconnect does, and removes the
symlink; replug makes a new pty (a new /dev/pts/N, as re-enumeration gives a new ttyACM) behind the same
link. Bytes the reader writes back (beep commands) are collected from the master.
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path

from simulators.scanner.encode import frame
from simulators.scanner.fdio import wait_fd, write_all, write_all_blocking


class VirtualSerialScanner:
    def __init__(self, link: str | Path | None = None, *, terminator: str = "crlf", aim: str | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self.terminator = terminator
        self.aim = aim
        self.master: int | None = None
        self._slave: int | None = None
        self.slave_path = ""
        self.feedback = bytearray()

    @property
    def path(self) -> str:
        """What a reader should open: the stable link if there is one, else the pty's slave."""
        return str(self.link) if self.link is not None else self.slave_path

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> str:
        if self.master is not None:
            raise RuntimeError("already plugged in")
        master, slave = os.openpty()
        # Raw at once: bytes written before the reader configures the port must not be line-edited.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.link)
        return self.path

    def unplug(self) -> None:
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None

    def replug(self) -> str:
        if self.plugged:
            self.unplug()
        return self.plug()

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> VirtualSerialScanner:
        if not self.plugged:
            self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frame(self, text: str, *, terminator: str | None = None, aim: str | None = None) -> bytes:
        return frame(text, terminator or self.terminator, self.aim if aim is None else aim)

    def _fd(self) -> int:
        if self.master is None:
            raise RuntimeError("the virtual scanner is unplugged")
        return self.master

    async def send(self, data: bytes) -> None:
        """Write all of `data`, waiting (in the loop) whenever the pty's buffer is full."""
        await write_all(self._fd(), data)

    def send_blocking(self, data: bytes) -> None:
        """`send` for code without an event loop (the CLI)."""
        write_all_blocking(self._fd(), data)

    async def scan(self, text: str, *, terminator: str | None = None, aim: str | None = None) -> bytes:
        """Type one barcode (text as read from the symbol, GS as "\\x1d"); returns the bytes sent."""
        data = self.frame(text, terminator=terminator, aim=aim)
        await self.send(data)
        return data

    def read_feedback(self) -> bytes:
        """Take what the reader wrote back so far, without waiting."""
        if self.master is not None:
            while True:
                try:
                    chunk = os.read(self.master, 4096)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                self.feedback += chunk
        data = bytes(self.feedback)
        self.feedback.clear()
        return data

    async def wait_feedback(self, n: int) -> bytes:
        """Wait until the reader wrote at least `n` bytes back; the caller sets a timeout."""
        got = bytearray()
        while len(got) < n:
            got += self.read_feedback()
            if len(got) >= n:
                break
            await wait_fd(self._fd(), write=False)
        return bytes(got)
