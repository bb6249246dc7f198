"""A serial scale on the gateway's one event loop.

The port is opened non-blocking and its fd registered with `loop.add_reader`, so a scale that stops
talking costs nothing and never stalls scanners or the PTL bus. Two modes:

* `sics`: the gateway asks (MT-SICS `S` for a stable weight, `SI` for the immediate one) and waits for the
  reply line. `S I` (busy / not settled) and dynamic replies are asked again until the caller's deadline.
  A reply that arrives after its deadline is dropped when nobody waits for a line, and taken by the next
  question otherwise; either way it is a weight the scale just measured, so no harm is done.
* `continuous`: the scale streams lines by itself (MT-SICS `SIR`-style or `ST,GS,+001.234kg`-style, see
  `protocol`); a read takes the next line that arrives after it was called, so a reading from before the
  parcel was put down is never used.

An unplugged adapter shows as EIO / ENODEV / end of file on read; the driver closes the port, fails the
pending read with `ScaleOffline`, reports offline and reopens the same path with doubling backoff (a
udev `/dev/serial/by-id/...` link comes back under the same name). A scale that stays silent for
`misses_offline` reads in a row (only reads that may not legitimately wait: `SI` and continuous reads)
is reported offline too, and online again with its next line. Status changes are reported once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import serial

from drivers.scale.protocol import (
    ScaleBusy,
    ScaleError,
    ScaleOffline,
    ScaleOverload,
    ScaleTimeout,
    ScaleUnderload,
    Weighing,
    parse_line,
)

log = logging.getLogger("floorgate.scale")

StatusCallback = Callable[[bool, str], None]
ScaleMode = Literal["sics", "continuous"]

MAX_LINE = 256  # longer than any weight line; a run of bytes without a terminator is noise


class Backoff:
    """Delays that double from `initial_s` up to `max_s` and start over after a success."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 10.0, factor: float = 2.0) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError("expected 0 < initial_s <= max_s and factor >= 1")
        self.initial_s, self.max_s, self.factor = initial_s, max_s, factor
        self._next = initial_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


class SerialScale:
    """One scale on one serial port. Knows bytes and weights only, nothing of orders or stations."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        mode: ScaleMode = "sics",
        on_status: StatusCallback | None = None,
        name: str = "scale",
        retry_pause_s: float = 0.2,
        misses_offline: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        if mode not in ("sics", "continuous"):
            raise ValueError(f"scale mode must be 'sics' or 'continuous', not {mode!r}")
        self.port = port
        self.baudrate = baudrate
        self.mode: ScaleMode = mode
        self.name = name
        self.retry_pause_s = retry_pause_s
        self.misses_offline = misses_offline
        self.backoff = backoff or Backoff()
        self.opens = 0  # successful opens, for tests and the doctor: 1 + number of recoveries
        self._on_status = on_status
        self._serial: serial.Serial | None = None
        self._fd: int | None = None
        self._buf = bytearray()
        self._out = bytearray()
        self._waiters: set[asyncio.Future[bytes]] = set()  # request/reply: the next line answers
        self._streams: set[asyncio.Queue[bytes | ScaleError]] = set()  # stream reads: every line, none lost
        self._lock = asyncio.Lock()
        self._reopen_task: asyncio.Task[None] | None = None
        self._closed = False
        self._misses = 0
        self._reported: bool | None = None
        self._detail = "not started"
        self._last: Weighing | None = None

    # -- state -------------------------------------------------------------------------------------------

    @property
    def port_open(self) -> bool:
        return self._fd is not None

    @property
    def online(self) -> bool:
        return self.port_open and self._misses < self.misses_offline

    @property
    def detail(self) -> str:
        """Why the scale is (or was last) offline, or what made it online: for status pages."""
        return self._detail

    @property
    def readers_waiting(self) -> int:
        """Reads now waiting for a line (tests use it to send a line only once someone listens)."""
        return len(self._waiters) + len(self._streams)

    @property
    def last(self) -> Weighing | None:
        """The latest weight line seen (any mode), e.g. for a live display; may be unstable or old."""
        return self._last

    def _report(self, online: bool, detail: str) -> None:
        self._detail = detail
        if self._reported == online:
            return
        self._reported = online
        level = logging.INFO if online else logging.WARNING
        log.log(level, "scale %s", "online" if online else "offline",
                extra={"fields": {"scale": self.name, "port": self.port, "detail": detail}})
        if self._on_status is not None:
            try:
                self._on_status(online, detail)
            except Exception:  # a broken observer must not take the driver down
                log.exception("scale status callback failed", extra={"fields": {"scale": self.name}})

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the port; if it is not there, report offline and keep trying in the background."""
        self._closed = False
        try:
            self._open()
        except (OSError, serial.SerialException) as e:
            self._report(False, f"cannot open {self.port}: {_reason(e)}")
            self._start_reopen()

    async def close(self) -> None:
        self._closed = True
        task, self._reopen_task = self._reopen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close_port()
        self._fail_waiters(ScaleOffline(f"scale on {self.port} was closed"))

    async def __aenter__(self) -> SerialScale:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _open(self) -> None:
        ser = serial.Serial(port=self.port, baudrate=self.baudrate, timeout=0, write_timeout=0, exclusive=True)
        try:
            fd = ser.fileno()
            os.set_blocking(fd, False)
            ser.reset_input_buffer()  # whatever the scale said before we listened belongs to nobody
            asyncio.get_running_loop().add_reader(fd, self._readable)
        except BaseException:
            ser.close()
            raise
        self._serial, self._fd = ser, fd
        self._buf.clear()
        self._out.clear()
        self._misses = 0
        self.opens += 1
        self.backoff.reset()
        self._report(True, f"{self.port} open")

    def _close_port(self) -> None:
        fd, ser = self._fd, self._serial
        self._fd, self._serial = None, None
        if fd is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if ser is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                ser.close()

    def _lost(self, detail: str) -> None:
        if self._fd is None:
            return
        self._close_port()
        message = f"scale on {self.port} disconnected: {detail}"
        self._fail_waiters(ScaleOffline(message))
        self._report(False, message)
        self._start_reopen()

    def _start_reopen(self) -> None:
        if self._closed or (self._reopen_task is not None and not self._reopen_task.done()):
            return
        self._reopen_task = asyncio.get_running_loop().create_task(self._reopen(), name=f"{self.name}-reopen")

    async def _reopen(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.backoff.next())
            try:
                self._open()
            except (OSError, serial.SerialException) as e:
                self._detail = f"cannot open {self.port}: {_reason(e)}"
                continue
            return

    # -- bytes -----------------------------------------------------------------------------------------------

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(f"read failed: {_reason(e)}")
            return
        if not data:
            self._lost("end of file (unplugged?)")
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            cut = min((i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            line = bytes(buf[:cut])
            del buf[: cut + 1]
            if line.strip():
                self._on_line(line)
        if len(buf) > MAX_LINE:
            line = bytes(buf)
            buf.clear()
            self._on_line(line)

    def _on_line(self, line: bytes) -> None:
        self._misses = 0
        if self.port_open:
            self._report(True, "scale is answering")
        with contextlib.suppress(ScaleError):
            self._last = parse_line(line)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(line)
        self._waiters.clear()
        for q in self._streams:
            q.put_nowait(line)

    def _fail_waiters(self, exc: ScaleError) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters.clear()
        for q in self._streams:
            q.put_nowait(exc)

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise ScaleOffline(f"scale on {self.port} is not connected ({self._detail})")
        if self._out:  # keep order behind bytes still waiting for the port
            self._out += data
            return
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._lost(f"write failed: {_reason(e)}")
            raise ScaleOffline(f"scale on {self.port} disconnected: {_reason(e)}") from None
        if n < len(data):
            self._out += data[n:]
            asyncio.get_running_loop().add_writer(fd, self._writable)

    def _writable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            n = os.write(fd, self._out)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(f"write failed: {_reason(e)}")
            return
        del self._out[:n]
        if not self._out:
            asyncio.get_running_loop().remove_writer(fd)

    def _waiter(self) -> asyncio.Future[bytes]:
        if self._fd is None:
            raise ScaleOffline(f"scale on {self.port} is not connected ({self._detail})")
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    async def _next_line(self, command: bytes) -> bytes:
        fut = self._waiter()
        try:
            self._write(command)
            return await fut
        finally:
            self._waiters.discard(fut)

    def _miss(self) -> None:
        self._misses += 1
        if self.port_open and self._misses >= self.misses_offline:
            self._report(False, f"scale on {self.port} did not answer {self._misses} times in a row "
                                "(switched off, or wrong baud rate / mode?)")

    # -- public reads ------------------------------------------------------------------------------------

    async def command(self, text: str, timeout_s: float = 2.0) -> bytes:
        """Send one MT-SICS command (e.g. `Z` to zero, `T` to tare) and return its reply line as sent."""
        if not text.isprintable() or not text:
            raise ValueError(f"MT-SICS command must be printable text, got {text!r}")
        async with self._lock:
            try:
                async with asyncio.timeout(timeout_s):
                    return await self._next_line(text.encode("ascii") + b"\r\n")
            except TimeoutError:
                self._miss()
                raise ScaleTimeout(f"scale on {self.port} did not answer {text!r} within {timeout_s} s") from None

    async def read_immediate(self, timeout_s: float = 2.0) -> Weighing:
        """The weight now, stable or not (`SI`, or the next streamed line)."""
        if self.mode == "sics":
            async with self._lock:
                try:
                    async with asyncio.timeout(timeout_s):
                        line = await self._next_line(b"SI\r\n")
                except TimeoutError:
                    self._miss()
                    raise ScaleTimeout(f"scale on {self.port} did not answer SI within {timeout_s} s") from None
                return parse_line(line)
        return await self._read_stream(timeout_s, stable_only=False)

    async def read_stable(self, timeout_s: float = 5.0) -> Weighing:
        """A stable weight, or ScaleTimeout when none comes in time; overload and underload raise at once."""
        if self.mode == "continuous":
            return await self._read_stream(timeout_s, stable_only=True)
        async with self._lock:
            problem, raw = "no reply to S (the load may still be moving, or the scale is off)", b""
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        line = await self._next_line(b"S\r\n")
                        try:
                            w = parse_line(line)
                        except ScaleBusy as e:
                            problem, raw = "the scale could not settle (S I)", e.raw
                        else:
                            if w.stable:
                                return w
                            problem, raw = f"the weight is still moving ({w.grams:g} g)", w.raw
                        await asyncio.sleep(self.retry_pause_s)
            except TimeoutError:
                raise ScaleTimeout(f"no stable weight from the scale on {self.port} within {timeout_s} s: "
                                   f"{problem}", raw) from None

    async def _read_stream(self, timeout_s: float, *, stable_only: bool) -> Weighing:
        if self._fd is None:
            raise ScaleOffline(f"scale on {self.port} is not connected ({self._detail})")
        got_line, moving = False, False
        bad: ScaleError | None = None
        lines: asyncio.Queue[bytes | ScaleError] = asyncio.Queue()
        self._streams.add(lines)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await lines.get()
                    if isinstance(line, ScaleError):
                        raise line
                    got_line = True
                    try:
                        w = parse_line(line)
                    except (ScaleOverload, ScaleUnderload):
                        raise
                    except ScaleError as e:  # noise on a stream: the next line may be fine
                        bad = e
                        continue
                    if w.stable or not stable_only:
                        return w
                    moving = True
        except TimeoutError:
            if not got_line:
                self._miss()
                raise ScaleTimeout(f"no data from the scale on {self.port} within {timeout_s} s "
                                   "(is it set to continuous output?)") from None
            if bad is not None and not moving:
                raise ScaleError(f"the scale on {self.port} sent only unreadable lines for {timeout_s} s; "
                                 f"last: {bad.message}", bad.raw) from None
            last = self._last
            raise ScaleTimeout(f"no stable weight from the scale on {self.port} within {timeout_s} s: the weight "
                               f"is still moving" + (f" ({last.grams:g} g)" if last else ""),
                               last.raw if last else b"") from None
        finally:
            self._streams.discard(lines)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror} (errno {e.errno})" if e.errno else e.strerror
    return str(e) or type(e).__name__
