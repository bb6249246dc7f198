"""Main loop of the PTL node: UART frames in, replies out, keys to the register logic, state to the LED.

On the device `boot.py` (or `main.py` at the flash root) calls `run()`. MicroPython's ticks_ms wraps, so
the loop keeps its own never-wrapping uptime and passes that to the register logic. The RTU frame
assembler gets the microsecond clock (`time.ticks_us`, on every MicroPython port): the 1.75 ms
inter-frame silence cannot be measured with a 1 ms tick, where 1.75-2 ms of silence may read as 1 ms.
"""

import time

from .hardware import Display, Keys, Led, Rs485, gap_us
from .modbus_rtu import FrameAssembler, RtuSlave
from .registers import Node

_MICROPYTHON = hasattr(time, "ticks_ms")


def _ticks_ms():  # type: () -> int
    if _MICROPYTHON:
        return time.ticks_ms()  # type: ignore[attr-defined,no-any-return]
    return int(time.monotonic() * 1000)


def _ticks_us():  # type: () -> int
    if _MICROPYTHON:
        return time.ticks_us()  # type: ignore[attr-defined,no-any-return]
    return int(time.monotonic() * 1000000)


def _ticks_diff(a, b):  # type: (int, int) -> int
    """For ticks_ms and ticks_us alike (MicroPython wraps both with the same period)."""
    if _MICROPYTHON:
        return time.ticks_diff(a, b)  # type: ignore[attr-defined,no-any-return]
    return a - b


class TicksAssembler(FrameAssembler):
    """Fed with the raw, wrapping ticks_us: a never-wrapping count would be a long integer within 18 min."""

    def elapsed(self, now_us, then_us):  # type: (int, int) -> int
        return _ticks_diff(now_us, then_us)


class Firmware:
    """One pass of `step()` per loop turn; kept as an object so it can be stepped by hand off the device."""

    def __init__(self, node, bus, led, display, keys):  # type: (Node, Rs485, Led, Display, Keys) -> None
        self.node = node
        self.bus = bus
        self.led = led
        self.display = display
        self.keys = keys
        self.slave = RtuSlave(node)
        self.assembler = TicksAssembler(gap_us(node.baud, node.parity, node.stopbits))
        self.boots = node.boots

    def step(self, now_ms, now_us=None):  # type: (int, int | None) -> None
        """`now_us`: the raw ticks_us on the device; off it, derived from `now_ms` when not given.
        The assembler is fed on every turn, data or not, so that it sees the silence ending a frame."""
        data = self.bus.read()
        for frame in self.assembler.feed(data, now_ms * 1000 if now_us is None else now_us):
            reply = self.slave.handle(frame, now_ms)
            if reply:
                self.bus.write(reply)
        for key in self.keys.pressed(now_ms):
            self.node.press(key, now_ms)
        self.node.tick(now_ms)
        if self.node.boots != self.boots:
            self.boots = self.node.boots
            self._restart_uart()
        colour, _ = self.node.light(now_ms)
        self.led.show(colour, self.node.led_on(now_ms))
        self.display.show(self.node.display_text(now_ms))

    def _restart_uart(self):  # type: () -> None
        """A reboot applies the stored comm block: reopen the UART with the new settings."""
        n = self.node
        self.bus = Rs485(n.baud, n.parity, n.stopbits)
        self.assembler = TicksAssembler(gap_us(n.baud, n.parity, n.stopbits))


def run(serial="FG-PTL-000001", unit_id=1):  # type: (str, int) -> None
    """Never returns on the device. Unit id and serial come from the factory config (flash) in production."""
    uptime = 0
    last = _ticks_ms()
    node = Node(unit_id=unit_id, serial=serial, now_ms=0)
    fw = Firmware(node, Rs485(node.baud, node.parity, node.stopbits), Led(), Display(), Keys())
    while True:
        t = _ticks_ms()
        uptime += _ticks_diff(t, last)
        last = t
        fw.step(uptime, _ticks_us())
