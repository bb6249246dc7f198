"""Thin hardware layer of the PTL node: RS-485 UART with a driver-enable pin, RGB LED, 4-digit display, keys.

Stubs: pin numbers are those of the reference board (an RP2040 with a MAX3485 transceiver, a TM1637
display and four keys to ground). On CPython `machine` does not exist and every class works on plain
Python stand-ins, so the module imports (and the main loop can be exercised) off the device. Everything
with a rule in it lives in registers.py and modbus_rtu.py, which is what the simulator runs.
"""

try:
    import machine  # type: ignore[import-not-found]
except ImportError:  # CPython: no hardware
    machine = None

KEY_PINS = (("confirm", 10), ("shortage", 11), ("up", 12), ("down", 13))
LED_PINS = (16, 17, 18)  # red, green, blue (PWM)
RGB = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))


def char_time_us(baud, parity, stopbits):  # type: (int, int, int) -> int
    """Time of one character on the wire: start + 8 data + parity + stop bits."""
    bits = 1 + 8 + (1 if parity else 0) + stopbits
    return (bits * 1000000 + baud - 1) // baud


def gap_us(baud, parity, stopbits):  # type: (int, int, int) -> int
    """The RTU inter-frame silence: 3.5 characters, fixed at 1750 us above 19200 baud (Modbus over serial line)."""
    if baud > 19200:
        return 1750
    return (char_time_us(baud, parity, stopbits) * 7 + 1) // 2


class Rs485:
    """Half-duplex UART: the driver-enable pin is high only while a reply is on the wire."""

    def __init__(self, baud, parity, stopbits, uart_id=0, tx=0, rx=1, de=2):
        # type: (int, int, int, int, int, int, int) -> None
        self.rx_bytes = b""
        self.tx_log = []  # type: list[bytes]
        if machine is None:
            self.uart = None
            self.de = None
            return
        par = (None, 1, 0)[parity]  # MicroPython: 0 even, 1 odd
        self.uart = machine.UART(uart_id, baudrate=baud, bits=8, parity=par, stop=stopbits,
                                 tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0, timeout_char=2)
        self.de = machine.Pin(de, machine.Pin.OUT, value=0)

    def read(self):  # type: () -> bytes
        """Whatever arrived since the last call (never blocks)."""
        if self.uart is None:
            data, self.rx_bytes = self.rx_bytes, b""
            return data
        n = self.uart.any()
        return self.uart.read(n) if n else b""

    def write(self, data):  # type: (bytes) -> None
        if self.uart is None or self.de is None:
            self.tx_log.append(data)
            return
        self.de.value(1)
        self.uart.write(data)
        self.uart.flush()  # returns when the last stop bit has left the shift register
        self.de.value(0)


class Led:
    def __init__(self):  # type: () -> None
        self.state = (0, 0, 0)
        self.pwms = []  # type: list[object]
        if machine is not None:
            self.pwms = [machine.PWM(machine.Pin(p), freq=1000) for p in LED_PINS]

    def show(self, colour, on):  # type: (int, bool) -> None
        rgb = RGB[colour] if on else (0, 0, 0)
        self.state = rgb
        for i in range(len(self.pwms)):
            self.pwms[i].duty_u16(65535 if rgb[i] else 0)  # type: ignore[attr-defined]


class Display:
    """4-digit 7-segment display (TM1637 on the reference board; the driver is board support, not shown)."""

    def __init__(self):  # type: () -> None
        self.text = "    "

    def show(self, text):  # type: (str) -> None
        self.text = text


class Keys:
    """Four keys to ground with pull-ups; a press is reported once, after 20 ms of stable level."""

    def __init__(self):  # type: () -> None
        self.pins = []  # type: list[tuple[str, object]]
        self.stable = {}  # type: dict[str, bool]
        self.since = {}  # type: dict[str, int]
        self.injected = []  # type: list[str]
        if machine is not None:
            self.pins = [(name, machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP)) for name, p in KEY_PINS]
        for name, _ in KEY_PINS:
            self.stable[name] = False
            self.since[name] = 0

    def pressed(self, now_ms):  # type: (int) -> list[str]
        out, self.injected = self.injected, []
        for name, pin in self.pins:
            down = pin.value() == 0  # type: ignore[attr-defined]
            if down == self.stable[name]:
                self.since[name] = now_ms
            elif now_ms - self.since[name] >= 20:
                self.stable[name] = down
                if down:
                    out.append(name)
        return out
