"""Register logic of the Floorgate PTL node (SPEC §4), shared by the firmware and the simulator.

This module runs unchanged on MicroPython and CPython: no imports, no dataclasses, no enum, no
annotations (types are given as `# type:` comments, which mypy reads and MicroPython ignores), and time
is passed in as a never-wrapping millisecond count so the logic can be driven by a test clock. Any
change here changes both the device and the simulator, which is the point: the gateway is tested
against the same logic it will meet on the shelf.
"""

# Holding registers
HR_MODE = 0
HR_QUANTITY = 1
HR_COLOUR = 2
HR_PATTERN = 3
HR_TOKEN = 4
HR_CLEAR = 5
HR_COMMAND = 6
HR_MODEL_NUMBER = 1000
HR_MODEL_NAME = 1003
HR_SERIAL = 1038
HR_IDENTITY_END = 1053
HR_UNIT_ID = 6100
HR_BAUD = 6101
HR_PARITY = 6102
HR_STOPBITS = 6103

# Input registers
IR_STATUS = 0
IR_CONFIRMED_QTY = 1
IR_TOKEN_ECHO = 2
IR_COUNTER = 3
IR_FIRMWARE = 4

# Status bits (IR 0)
ST_CONFIRM = 0x0001
ST_SHORTAGE = 0x0002
ST_ADJUSTED = 0x0004
ST_JOB_ACTIVE = 0x0008
ST_FAULT = 0x0100
ST_POWER_UP = 0x8000

# Coils
COIL_BUZZER = 0
COIL_KEYS_LOCKED = 1

MODE_OFF = 0
MODE_JOB = 1
MODE_INFO = 2
MODE_ERROR = 3
MODE_DONE = 4

CMD_NONE = 0
CMD_SELF_TEST = 2
CMD_IDENTIFY = 3
CMD_REBOOT = 4

DONE_MS = 1000
SELF_TEST_MS = 2000
IDENTIFY_MS = 5000
REBOOT_DELAY_MS = 20  # the reply to the reboot command leaves the UART before the node restarts

BAUD_CODES = (12, 24, 48, 96, 192, 384, 576, 1152)  # baud / 100

# Modbus exception codes
EX_ILLEGAL_FUNCTION = 1
EX_ILLEGAL_ADDRESS = 2
EX_ILLEGAL_VALUE = 3
EX_DEVICE_FAILURE = 4

IDENTITY_CHARS = 32  # 16 registers, 2 characters each


class ModbusError(Exception):
    """A request the node refuses; `code` is the Modbus exception code sent back."""

    def __init__(self, code, message):  # type: (int, str) -> None
        Exception.__init__(self, message)
        self.code = code


def ascii_registers(text, count):  # type: (str, int) -> list[int]
    """ASCII text as registers, two characters each, first character in the high byte, NUL padded."""
    raw = text.encode()[: count * 2]
    raw = raw + b"\x00" * (count * 2 - len(raw))
    return [raw[2 * i] * 256 + raw[2 * i + 1] for i in range(count)]


class Node:
    """One PTL node: its registers, keys and display state.

    `unit_id`, `baud`, `parity` and `stopbits` are the communication settings in force; the comm block
    (6100-6103) holds the stored ones, which take effect at the next reboot, as on the PICK-IQ devices.
    """

    def __init__(self, unit_id=1, serial="FG-PTL-000001", model_number=4201, model_name="Floorgate PTL-4D",
                 firmware=0x0100, baud=115200, parity=0, stopbits=1, now_ms=0):
        # type: (int, str, int, str, int, int, int, int, int) -> None
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit id must be 1-247, got {unit_id}")
        if baud // 100 not in BAUD_CODES or baud % 100:
            raise ValueError(f"baud {baud} is not one of {[c * 100 for c in BAUD_CODES]}")
        self.serial = serial
        self.model_number = model_number & 0xFFFFFFFF
        self.model_name = model_name
        self.firmware = firmware & 0xFFFF
        self.stored_unit_id = unit_id
        self.stored_baud100 = baud // 100
        self.stored_parity = parity
        self.stored_stopbits = stopbits
        self.unit_id = unit_id
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.fault = False
        self.mode = MODE_OFF
        self.quantity = 0
        self.colour = 0
        self.pattern = 0
        self.token = 0
        self.shown_quantity = 0
        self.latched = 0
        self.powered_up = True
        self.confirmed_quantity = 0
        self.token_echo = 0
        self.counter = 0
        self.buzzer = False
        self.keys_locked = False
        self.done_at = -1
        self.self_test_until = -1
        self.identify_until = -1
        self.reboot_at = -1
        self.booted_at = now_ms
        self.boots = 0
        self.reboot(now_ms)

    # ---- life cycle -------------------------------------------------------------------------------

    def reboot(self, now_ms):  # type: (int) -> None
        """Power cycle: RAM state lost, stored comm settings applied, power-up bit set."""
        self.boots += 1
        self.unit_id = self.stored_unit_id
        self.baud = self.stored_baud100 * 100
        self.parity = self.stored_parity
        self.stopbits = self.stored_stopbits
        self.mode = MODE_OFF
        self.quantity = 0
        self.colour = 0
        self.pattern = 0
        self.token = 0
        self.shown_quantity = 0
        self.latched = 0
        self.powered_up = True
        self.confirmed_quantity = 0
        self.token_echo = 0
        self.counter = 0
        self.buzzer = False
        self.keys_locked = False
        self.done_at = -1
        self.self_test_until = -1
        self.identify_until = -1
        self.reboot_at = -1
        self.booted_at = now_ms

    def tick(self, now_ms):  # type: (int) -> None
        """Advance the node's own timers: done turns itself off after 1 s; tests and identify expire."""
        if self.reboot_at >= 0 and now_ms >= self.reboot_at:
            self.reboot(now_ms)
            return
        if self.mode == MODE_DONE and self.done_at >= 0 and now_ms - self.done_at >= DONE_MS:
            self.mode = MODE_OFF
            self.done_at = -1
        if self.self_test_until >= 0 and now_ms >= self.self_test_until:
            self.self_test_until = -1
        if self.identify_until >= 0 and now_ms >= self.identify_until:
            self.identify_until = -1

    # ---- registers --------------------------------------------------------------------------------

    def status(self):  # type: () -> int
        word = self.latched
        if self.mode == MODE_JOB:
            word |= ST_JOB_ACTIVE
        if self.fault:
            word |= ST_FAULT
        if self.powered_up:
            word |= ST_POWER_UP
        return word

    def _holding(self, addr):  # type: (int) -> int
        if addr == HR_MODE:
            return self.mode
        if addr == HR_QUANTITY:
            return self.quantity
        if addr == HR_COLOUR:
            return self.colour
        if addr == HR_PATTERN:
            return self.pattern
        if addr == HR_TOKEN:
            return self.token
        if addr in (HR_CLEAR, HR_COMMAND):
            return 0
        if addr == HR_MODEL_NUMBER:
            return self.model_number & 0xFFFF
        if addr == HR_MODEL_NUMBER + 1:
            return self.model_number >> 16
        if HR_MODEL_NAME <= addr < HR_MODEL_NAME + 16:
            return ascii_registers(self.model_name, 16)[addr - HR_MODEL_NAME]
        if HR_SERIAL <= addr < HR_SERIAL + 16:
            return ascii_registers(self.serial, 16)[addr - HR_SERIAL]
        if HR_MODEL_NUMBER <= addr <= HR_IDENTITY_END:
            return 0  # reserved words inside the identity block read as 0
        if addr == HR_UNIT_ID:
            return self.stored_unit_id
        if addr == HR_BAUD:
            return self.stored_baud100
        if addr == HR_PARITY:
            return self.stored_parity
        if addr == HR_STOPBITS:
            return self.stored_stopbits
        raise ModbusError(EX_ILLEGAL_ADDRESS, f"holding register {addr} does not exist")

    def read_holding(self, addr, count, now_ms):  # type: (int, int, int) -> list[int]
        self.tick(now_ms)
        _check_count(count, 125)
        return [self._holding(a) for a in range(addr, addr + count)]

    def read_input(self, addr, count, now_ms):  # type: (int, int, int) -> list[int]
        self.tick(now_ms)
        _check_count(count, 125)
        words = [self.status(), self.confirmed_quantity, self.token_echo, self.counter, self.firmware]
        if addr < 0 or addr + count > len(words):
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"input registers {addr}-{addr + count - 1} do not exist")
        return words[addr:addr + count]

    def write_holding(self, addr, values, now_ms):  # type: (int, list[int], int) -> None
        """Validate every word first, then apply them in address order, so a refused write changes nothing."""
        self.tick(now_ms)
        _check_count(len(values), 123)
        for i in range(len(values)):
            _validate_holding(addr + i, values[i])
        new_qty_or_token = False
        mode = -1
        for i in range(len(values)):
            a = addr + i
            v = values[i]
            if a == HR_MODE:
                mode = v
            elif a == HR_QUANTITY:
                new_qty_or_token = new_qty_or_token or v != self.quantity
                self.quantity = v
            elif a == HR_COLOUR:
                self.colour = v
            elif a == HR_PATTERN:
                self.pattern = v
            elif a == HR_TOKEN:
                new_qty_or_token = new_qty_or_token or v != self.token
                self.token = v
            elif a == HR_CLEAR:
                self.clear(v)
            elif a == HR_COMMAND:
                self._command(v, now_ms)
            elif a == HR_UNIT_ID:
                self.stored_unit_id = v
            elif a == HR_BAUD:
                self.stored_baud100 = v
            elif a == HR_PARITY:
                self.stored_parity = v
            elif a == HR_STOPBITS:
                self.stored_stopbits = v
        if new_qty_or_token:
            # A new job or quantity drops the picker's adjustment; the same job written again keeps it.
            self.shown_quantity = self.quantity
        if mode >= 0:
            if mode != self.mode and mode == MODE_JOB and self.mode not in (MODE_JOB, MODE_ERROR):
                self.shown_quantity = self.quantity
            self.mode = mode
            self.done_at = now_ms if mode == MODE_DONE else -1

    def clear(self, counter):  # type: (int) -> bool
        """Compare-and-clear: only if no key event happened since the gateway read `counter`."""
        if counter != self.counter:
            return False
        self.latched = 0
        self.powered_up = False
        return True

    def _command(self, cmd, now_ms):  # type: (int, int) -> None
        if cmd == CMD_SELF_TEST:
            self.self_test_until = now_ms + SELF_TEST_MS
        elif cmd == CMD_IDENTIFY:
            self.identify_until = now_ms + IDENTIFY_MS
        elif cmd == CMD_REBOOT:
            self.reboot_at = now_ms + REBOOT_DELAY_MS

    def read_coils(self, addr, count):  # type: (int, int) -> list[bool]
        _check_count(count, 2000)
        bits = [self.buzzer, self.keys_locked]
        if addr < 0 or addr + count > len(bits):
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"coils {addr}-{addr + count - 1} do not exist")
        return bits[addr:addr + count]

    def write_coils(self, addr, values):  # type: (int, list[bool]) -> None
        _check_count(len(values), 1968)
        if addr < 0 or addr + len(values) > 2:
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"coils {addr}-{addr + len(values) - 1} do not exist")
        for i in range(len(values)):
            if addr + i == COIL_BUZZER:
                self.buzzer = bool(values[i])
            else:
                self.keys_locked = bool(values[i])

    # ---- keys -------------------------------------------------------------------------------------

    def press(self, key, now_ms):  # type: (str, int) -> bool
        """A key on the module; False when the node ignores it (no job shown, keys locked, self-test)."""
        self.tick(now_ms)
        if key not in ("confirm", "shortage", "up", "down"):
            raise ValueError("unknown key '" + str(key) + "': expected confirm, shortage, up or down")
        if self.mode != MODE_JOB or self.keys_locked or self.self_test_until >= 0:
            return False
        if key == "up":
            self.shown_quantity = min(self.shown_quantity + 1, self.quantity)
            return True
        if key == "down":
            self.shown_quantity = max(self.shown_quantity - 1, 0)
            return True
        if self.latched & (ST_CONFIRM | ST_SHORTAGE) and self.token_echo != self.token:
            self.latched = 0  # keys of a job the gateway has replaced are stale anyway: the new job owns the latch
        self.latched |= ST_CONFIRM if key == "confirm" else ST_SHORTAGE
        if self.shown_quantity != self.quantity:
            self.latched |= ST_ADJUSTED
        else:
            self.latched &= ~ST_ADJUSTED
        self.confirmed_quantity = self.shown_quantity
        self.token_echo = self.token
        self.counter = (self.counter + 1) & 0xFFFF
        return True

    def adjust(self, delta, now_ms):  # type: (int, int) -> bool
        key = "up" if delta > 0 else "down"
        ok = True
        for _ in range(abs(delta)):
            ok = self.press(key, now_ms) and ok
        return ok

    # ---- what a person sees ------------------------------------------------------------------------

    def display_text(self, now_ms):  # type: (int) -> str
        """The 4-digit display: blank when off."""
        self.tick(now_ms)
        if self.self_test_until >= 0:
            return "8888"
        if self.identify_until >= 0:
            return f"{self.unit_id:4d}"
        if self.mode == MODE_OFF:
            return "    "
        if self.mode == MODE_ERROR:
            return "Err "
        if self.mode == MODE_DONE:
            return "donE"
        qty = self.shown_quantity if self.mode == MODE_JOB else self.quantity
        return f"{qty:4d}"

    def light(self, now_ms):  # type: (int) -> tuple[int, int]
        """(colour, pattern) the LED is driven with; colour 0 means dark."""
        self.tick(now_ms)
        if self.self_test_until >= 0:
            return 7, 0
        if self.identify_until >= 0:
            return 7, 1
        if self.mode == MODE_OFF:
            return 0, 0
        return self.colour, self.pattern

    def led_on(self, now_ms):  # type: (int) -> bool
        """Whether the LED is lit at this instant (blink phases are derived from the clock)."""
        colour, pattern = self.light(now_ms)
        if colour == 0:
            return False
        if pattern == 1:
            return now_ms % 1000 < 500
        if pattern == 2:
            return now_ms % 250 < 125
        return True


def _check_count(count, limit):  # type: (int, int) -> None
    if not 1 <= count <= limit:
        raise ModbusError(EX_ILLEGAL_VALUE, f"count {count} outside 1-{limit}")


def _validate_holding(addr, value):  # type: (int, int) -> None
    if not 0 <= value <= 0xFFFF:
        raise ModbusError(EX_ILLEGAL_VALUE, f"register value {value} outside 0-65535")
    limits = {HR_MODE: (0, 4), HR_QUANTITY: (0, 9999), HR_COLOUR: (0, 7), HR_PATTERN: (0, 3),
              HR_TOKEN: (0, 0xFFFF), HR_CLEAR: (0, 0xFFFF), HR_UNIT_ID: (1, 247), HR_PARITY: (0, 2),
              HR_STOPBITS: (1, 2)}
    if addr in limits:
        low, high = limits[addr]
        if not low <= value <= high:
            raise ModbusError(EX_ILLEGAL_VALUE, f"register {addr} takes {low}-{high}, got {value}")
        return
    if addr == HR_COMMAND:
        if value not in (CMD_NONE, CMD_SELF_TEST, CMD_IDENTIFY, CMD_REBOOT):
            raise ModbusError(EX_ILLEGAL_VALUE, f"command {value} unknown: 0, 2, 3 or 4")
        return
    if addr == HR_BAUD:
        if value not in BAUD_CODES:
            raise ModbusError(EX_ILLEGAL_VALUE, f"baud code {value} unknown: one of {BAUD_CODES}")
        return
    if HR_MODEL_NUMBER <= addr <= HR_IDENTITY_END:
        raise ModbusError(EX_ILLEGAL_ADDRESS, f"register {addr} is read-only (identity block)")
    raise ModbusError(EX_ILLEGAL_ADDRESS, f"holding register {addr} does not exist")
