"""The part every scanner reader shares: open, read without blocking, notice the device going away,
and come back by itself.

A scanner is unplugged and replugged on a shift far more often than it breaks, so losing it is a
normal state, reported once when it starts and once when it ends, and the reader keeps trying to
reopen the configured path (which may lead to another device node after re-enumeration) with a
capped, doubling backoff. Reads happen in the loop's reader callback on a non-blocking descriptor;
nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from drivers.scanner.scan import RawScan

log = logging.getLogger("drivers.scanner")

ScanCallback = Callable[[RawScan], None]
StatusCallback = Callable[[bool, str], None]
READ_SIZE = 65536
STABLE_S = 1.0  # a connection that lasted this long (or delivered data) resets the backoff


class Backoff:
    """Reconnect delays: `first`, doubling up to `cap`; `reset()` after a connection that worked."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"backoff needs 0 < first <= cap; got first={first}, cap={cap}")
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, delay * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


def describe_os_error(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        name = errno.errorcode.get(e.errno, str(e.errno))
        return f"{e.strerror or os.strerror(e.errno)} ({name})"
    return str(e) or type(e).__name__


def _hint(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.EACCES:
        return "; give the gateway's user access to the device (e.g. the dialout or input group, or a udev rule)"
    if isinstance(e, OSError) and e.errno == errno.ENOENT:
        return "; is the scanner plugged in, and is the configured path right?"
    return ""


class ReconnectingReader(ABC):
    """Drives one device: `start()` it once; it keeps itself open until `stop()`."""

    kind = "scanner"

    def __init__(self, device_id: str, path: str, on_scan: ScanCallback, on_status: StatusCallback | None = None,
                 *, clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None) -> None:
        self.device_id = device_id
        self.path = path
        self._on_scan = on_scan
        self._on_status = on_status
        self._clock = clock
        self.backoff = backoff or Backoff()
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._online = False
        self._reported: bool | None = None
        self._got_data = False
        self.detail = "not started"
        self.opens = 0  # successful opens, for health pages and tests
        self.scans = 0

    @property
    def online(self) -> bool:
        return self._online

    @property
    def task_alive(self) -> bool:
        """Started and still running: a reader gives up only when stopped."""
        return self._task is not None and not self._task.done()

    # --- what a concrete reader provides -------------------------------------------------------------
    @abstractmethod
    def _open(self) -> tuple[int, str]:
        """Open the device; return a non-blocking fd and a line saying what was opened. Raise OSError."""

    @abstractmethod
    def _close(self, fd: int) -> None:
        """Close what `_open` opened (`fd` among it); must not raise."""

    @abstractmethod
    def _feed(self, data: bytes, t: float) -> list[RawScan]:
        """Bytes read to scans."""

    @abstractmethod
    def _forget_partial(self) -> None:
        """Drop half a scan: it must not join the first scan after the device is back."""

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.kind} {self.device_id} is already started")
        self._task = asyncio.create_task(self._run(), name=f"{self.kind}-{self.device_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})  # unlike `await task`, a cancel of stop() itself still propagates
        if not task.cancelled() and task.exception() is not None:
            log.error("%s %s had failed: %r", self.kind, self.device_id, task.exception())
        self._status(False, "stopped")

    async def __aenter__(self) -> ReconnectingReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                fd, detail = self._open()
            except Exception as e:  # whatever went wrong, the reader must live on and retry
                if not isinstance(e, OSError | ValueError):
                    log.exception("unexpected error opening %s %s", self.kind, self.device_id)
                self._status(False, f"cannot open {self.path}: {describe_os_error(e)}{_hint(e)}")
                await asyncio.sleep(self.backoff.next())
                continue
            self._fd, self._got_data = fd, False
            self.opens += 1
            opened_at = self._clock()
            self._lost = loop.create_future()
            try:
                try:
                    loop.add_reader(fd, self._readable)
                except OSError as e:  # e.g. a regular file: the loop cannot watch it
                    reason = f"cannot watch {self.path}: {describe_os_error(e)}"
                else:
                    self._status(True, detail)
                    reason = await self._lost
            finally:
                self._release(loop)
            self._status(False, reason)
            if self._got_data or self._clock() - opened_at >= STABLE_S:
                self.backoff.reset()
            await asyncio.sleep(self.backoff.next())

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            loop.remove_reader(fd)
            self._close(fd)
        self._forget_partial()
        self._lost = None

    def _lose(self, reason: str) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lose(f"read failed: {describe_os_error(e)}; the device went away")
            return
        if not data:
            self._lose("end of file: the device went away")
            return
        self._got_data = True
        for scan in self._feed(data, self._clock()):
            self.scans += 1
            try:
                self._on_scan(scan)
            except Exception:
                log.exception("scan callback of %s %s failed", self.kind, self.device_id)

    def _status(self, online: bool, detail: str) -> None:
        """Tell the owner about a change only: an outage is one report, however many retries it takes."""
        self._online = online
        self.detail = detail
        if self._reported is online:
            return
        self._reported = online
        if self._on_status is not None:
            try:
                self._on_status(online, detail)
            except Exception:
                log.exception("status callback of %s %s failed", self.kind, self.device_id)

    def write(self, data: bytes) -> bool:
        """Send feedback bytes (a beep command). False when the device is away or has no back channel."""
        return False
