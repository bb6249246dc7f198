"""A scale at the far end of a pseudo-terminal, so the real driver is tested through the kernel's tty layer.

The simulator owns the master side and keeps one slave fd open itself: the pty then survives the driver
closing and reopening it, as a real adapter does, and only `unplug()` makes the driver's fd fail (EIO),
the way a pulled USB adapter does. With `link`, the slave is published under a stable path (a symlink,
as udev's `/dev/serial/by-id/...`) that `replug()` points at the new pty.

Modes: `sics` answers MT-SICS commands (`S`, `SI`, `@`, `Z`; anything else `ES`); `continuous` streams a
line every `interval_s` in the MT-SICS (`S S ...`) or comma (`ST,GS,+001.234kg`) format.

Unstable periods come in two kinds: `unstable_readings=N` (the next N readings are dynamic; an `S`
meanwhile is answered `S I`, as a scale that gave up settling does), which tests use because it does
not depend on time; and `unstable_s` (dynamic for that long; an `S` is answered when the load settles,
or `S I` after `settle_timeout_s`), which looks real in a demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Literal

SimMode = Literal["sics", "continuous"]
StreamFormat = Literal["sics", "comma"]

UNITS: dict[str, tuple[Decimal, int]] = {  # grams per unit, decimals shown
    "g": (Decimal(1), 1),
    "kg": (Decimal(1000), 3),
    "lb": (Decimal("453.59237"), 3),
    "oz": (Decimal("28.349523125"), 2),
}
JITTER = (0.031, -0.017, 0.012, -0.006)  # fractions of the load while it is moving


class ScaleSimulator:
    def __init__(
        self,
        *,
        mode: SimMode = "sics",
        stream_format: StreamFormat = "sics",
        unit: str = "kg",
        link: str | Path | None = None,
        interval_s: float = 0.05,
        settle_timeout_s: float = 3.0,
        name: str = "scale-sim",
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"simulated scale unit must be one of {', '.join(UNITS)}, not {unit!r}")
        self.mode: SimMode = mode
        self.stream_format: StreamFormat = stream_format
        self.unit = unit
        self.link = Path(link) if link is not None else None
        self.interval_s = interval_s
        self.settle_timeout_s = settle_timeout_s
        self.name = name
        self.grams = 0.0
        self.silent = False  # no reply, no stream: a scale switched off behind a live adapter
        self.commands: list[str] = []  # every command line received, in order
        self.dropped = 0  # bytes the driver did not read fast enough (the pty buffer was full)
        self.readings = 0  # weight lines sent: a reading sent after a `put` carries the new load
        self._range: Literal["ok", "over", "under"] = "ok"
        self._unstable_readings = 0
        self._unstable_until = 0.0
        self._jitter = 0
        self._garbage: list[bytes] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._buf = bytearray()
        self._timers: set[asyncio.TimerHandle] = set()
        self._stream_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path the driver opens: the stable link if one was asked for, else the pty slave."""
        return str(self.link) if self.link is not None else self._slave_name

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def start(self) -> None:
        self._plug()
        if self.mode == "continuous":
            self._stream_task = asyncio.get_running_loop().create_task(self._stream(), name=f"{self.name}-stream")

    async def close(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.unplug()

    async def __aenter__(self) -> ScaleSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no newline translation: bytes pass as a UART passes them
        os.set_blocking(master, False)
        self._master, self._slave, self._slave_name = master, slave, os.ttyname(slave)
        self._buf.clear()
        asyncio.get_running_loop().add_reader(master, self._readable)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._slave_name)
            os.replace(tmp, self.link)

    def unplug(self) -> None:
        """Pull the cable: the driver's reads fail with EIO and the path disappears."""
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is not None:
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
        if slave is not None:
            os.close(slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def replug(self) -> None:
        """A new pty (a new /dev/pts number, as a re-enumerated adapter), under the same link."""
        if self._master is None:
            self._plug()

    # -- the load ------------------------------------------------------------------------------------------

    def put(self, grams: float, *, unstable_readings: int = 0, unstable_s: float = 0.0) -> None:
        """Set the load; it is shown moving for that many readings or seconds before it settles."""
        self.grams = float(grams)
        self._range = "ok"
        self._unstable_readings = unstable_readings
        self._unstable_until = asyncio.get_running_loop().time() + unstable_s if unstable_s > 0 else 0.0

    async def take_off(self, limit_s: float = 5.0) -> bool:
        """The parcel is taken off, and the scale shows 0 g until it has been read once (as a packer sees the
        display go to zero before the next carton goes on); False if nobody read it within `limit_s`."""
        self.put(0.0)
        before = self.readings
        try:
            async with asyncio.timeout(limit_s):
                while self.readings == before:  # noqa: ASYNC110 - the reader is the gateway, over the pty
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return False
        return True

    def overload(self) -> None:
        self._range = "over"

    def underload(self) -> None:
        self._range = "under"

    def garbage_next(self, data: bytes = b"\x02#?\xff\xfe}\r\n") -> None:
        """Send these bytes instead of the next reply or streamed line."""
        self._garbage.append(data)

    def send_raw(self, data: bytes) -> None:
        """Bytes on the line right now, e.g. noise or a partial line."""
        self._send(data)

    # -- wire ------------------------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return
        self.dropped += len(data) - n

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        self._buf += data
        while True:
            cut = min((i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            line = bytes(self._buf[:cut]).decode("ascii", "replace").strip()
            del self._buf[: cut + 1]
            if line:
                self._command(line)
        if len(self._buf) > 1024:
            self._buf.clear()

    def _command(self, cmd: str) -> None:
        self.commands.append(cmd)
        if self.silent:
            return
        if self._garbage:
            self._send(self._garbage.pop(0))
            return
        if cmd == "S":
            self._answer_s(self.settle_timeout_s)
        elif cmd == "SI":
            self._send(self._line(*self._reading()))
        elif cmd == "@":
            for h in self._timers:
                h.cancel()
            self._timers.clear()
            self._send(b'I4 A "SIM00001"\r\n')
        elif cmd == "Z":
            self._send(b"Z A\r\n" if self._range == "ok" else b"Z I\r\n")
        else:
            self._send(b"ES\r\n")

    def _answer_s(self, patience_s: float) -> None:
        """`S`: the weight once it is stable; `S I` if it does not settle within the scale's patience."""
        if self.silent:
            return
        now = asyncio.get_running_loop().time()
        if self._range != "ok" or (self._unstable_readings == 0 and now >= self._unstable_until):
            self._send(self._line(*self._reading()))
        elif self._unstable_readings > 0:
            self._unstable_readings -= 1
            self._send(b"S I\r\n")
        elif self._unstable_until - now <= patience_s:
            wait = self._unstable_until - now
            self._later(wait, lambda: self._answer_s(patience_s - wait))
        else:
            self._later(patience_s, lambda: self._send(b"S I\r\n"))

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            fn()

        handle = asyncio.get_running_loop().call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _reading(self) -> tuple[str, float]:
        """(status, grams): status S stable, D dynamic, + overload, - underload."""
        if self._range == "over":
            return "+", 0.0
        if self._range == "under":
            return "-", 0.0
        moving = self._unstable_readings > 0 or asyncio.get_running_loop().time() < self._unstable_until
        if not moving:
            return "S", self.grams
        if self._unstable_readings > 0:
            self._unstable_readings -= 1
        self._jitter = (self._jitter + 1) % len(JITTER)
        return "D", self.grams * (1 + JITTER[self._jitter]) + 5.0

    def _line(self, status: str, grams: float) -> bytes:
        self.readings += 1
        factor, decimals = UNITS[self.unit]
        value = (Decimal(repr(grams)) / factor).quantize(Decimal(1).scaleb(-decimals))
        if self.mode == "continuous" and self.stream_format == "comma":
            if status in "+-":
                return f"OL,GS,{status}{'9' * 4}.{'9' * decimals}{self.unit}\r\n".encode("ascii")
            header = "ST" if status == "S" else "US"
            sign = "-" if value < 0 else "+"
            width = decimals + 4 + (1 if decimals else 0) - 1
            return f"{header},GS,{sign}{abs(value):0{width}.{decimals}f}{self.unit:>2}\r\n".encode("ascii")
        if status in "+-":
            return f"S {status}\r\n".encode("ascii")
        return f"S {status} {value:>10} {self.unit}\r\n".encode("ascii")

    async def _stream(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.silent or self._master is None:
                continue
            if self._garbage:
                self._send(self._garbage.pop(0))
            else:
                self._send(self._line(*self._reading()))
