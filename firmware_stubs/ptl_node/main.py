"""Main loop of the PTL node: UART frames in, replies out, keys to the register logic, state to the LED.

On the device `boot.py` (or `main.py` at the flash root) calls `run()`. MicroPython's ticks_ms wraps, so
the loop keeps its own never-wrapping uptime and passes that to the register logic.
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


def _ticks_diff(a, b):  # type: (int, int) -> int
    if _MICROPYTHON:
        return time.ticks_diff(a, b)  # type: ignore[attr-defined,no-any-return]
    return a - b


class Firmware:
    """One pass of `step()` per loop turn; kept as an object so it can be stepped by hand off the device."""

    def __init__(self, node, bus, led, display, keys):  # type: (Node, Rs485, Led, Display, Keys) -> None
        self.node = node
        self.bus = bus
        self.led = led
        self.display = display
        self.keys = keys
        self.slave = RtuSlave(node)
        self.assembler = FrameAssembler(gap_us(node.baud, node.parity, node.stopbits))
        self.boots = node.boots

    def step(self, now_ms):  # type: (int) -> None
        data = self.bus.read()
        for frame in self.assembler.feed(data, now_ms * 1000) if data else []:
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
        self.assembler = FrameAssembler(gap_us(n.baud, n.parity, n.stopbits))


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
        fw.step(uptime)
