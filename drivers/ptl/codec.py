"""The Floorgate PTL node register map (SPEC §4) as named constants and pure encode/decode functions.

Nothing here does I/O, so every rule of the map can be tested with plain values; the bus and the
technician tools build their Modbus requests only from these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

# Holding registers (FC03 read, FC06/FC16 write)
HR_MODE = 0
HR_QUANTITY = 1
HR_COLOUR = 2
HR_PATTERN = 3
HR_TOKEN = 4
HR_CLEAR = 5
HR_COMMAND = 6
JOB_BLOCK = (HR_MODE, 5)  # a job is one FC16 of registers 0-4
HR_MODEL_NUMBER = 1000  # u32, low word first (1000-1001)
HR_MODEL_NAME = 1003  # 16 registers of ASCII
HR_SERIAL = 1038  # 16 registers of ASCII
IDENTITY_BLOCK = (HR_MODEL_NUMBER, 54)  # 1000-1053 in one FC03
TEXT_REGISTERS = 16
HR_UNIT_ID = 6100
HR_BAUD = 6101
HR_PARITY = 6102
HR_STOPBITS = 6103
COMM_BLOCK = (HR_UNIT_ID, 4)

# Input registers (FC04)
IR_STATUS = 0
IR_CONFIRMED_QTY = 1
IR_TOKEN_ECHO = 2
IR_COUNTER = 3
IR_FIRMWARE = 4
POLL_BLOCK = (IR_STATUS, 4)  # one poll = FC04 of 0-3

# Status bits (IR 0)
ST_CONFIRM = 1 << 0
ST_SHORTAGE = 1 << 1
ST_ADJUSTED = 1 << 2
ST_JOB_ACTIVE = 1 << 3
ST_FAULT = 1 << 8
ST_POWER_UP = 1 << 15

# Coils (FC01 read, FC05/FC15 write)
COIL_BUZZER = 0
COIL_KEYS_LOCKED = 1

MAX_QUANTITY = 9999
UNIT_MIN, UNIT_MAX = 1, 247
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class Mode(IntEnum):
    OFF = 0
    JOB = 1
    INFO = 2
    ERROR = 3
    DONE = 4


class Colour(IntEnum):
    OFF = 0
    RED = 1
    GREEN = 2
    BLUE = 3
    YELLOW = 4
    MAGENTA = 5
    CYAN = 6
    WHITE = 7


class Pattern(IntEnum):
    STEADY = 0
    BLINK_1HZ = 1
    BLINK_4HZ = 2
    PULSE = 3


class Command(IntEnum):
    NONE = 0
    SELF_TEST = 2
    IDENTIFY = 3
    REBOOT = 4


class Parity(IntEnum):
    NONE = 0
    ODD = 1
    EVEN = 2


@dataclass(frozen=True, slots=True)
class Status:
    """One poll (IR 0-3), decoded."""

    word: int
    confirmed_qty: int
    token_echo: int
    counter: int

    @property
    def confirm(self) -> bool:
        return bool(self.word & ST_CONFIRM)

    @property
    def shortage(self) -> bool:
        return bool(self.word & ST_SHORTAGE)

    @property
    def adjusted(self) -> bool:
        return bool(self.word & ST_ADJUSTED)

    @property
    def job_active(self) -> bool:
        return bool(self.word & ST_JOB_ACTIVE)

    @property
    def fault(self) -> bool:
        return bool(self.word & ST_FAULT)

    @property
    def powered_up(self) -> bool:
        return bool(self.word & ST_POWER_UP)

    @property
    def key_latched(self) -> bool:
        return bool(self.word & (ST_CONFIRM | ST_SHORTAGE))

    @property
    def key_kind(self) -> str | None:
        """"shortage" when its bit is latched (shortage wins over confirm, SPEC §4), else "confirm", else None."""
        if self.shortage:
            return "shortage"
        if self.confirm:
            return "confirm"
        return None


def decode_status(regs: list[int]) -> Status:
    if len(regs) != POLL_BLOCK[1]:
        raise ValueError(f"a poll reads {POLL_BLOCK[1]} input registers, got {len(regs)}")
    return Status(regs[0], regs[1], regs[2], regs[3])


def encode_job(mode: Mode, quantity: int, colour: Colour, pattern: Pattern, token: int) -> list[int]:
    """Registers 0-4 for one FC16 write, validated so a bad value fails here, not as a Modbus exception."""
    if not 0 <= quantity <= MAX_QUANTITY:
        raise ValueError(f"quantity {quantity} outside 0-{MAX_QUANTITY} (the display has 4 digits)")
    if not 0 <= token <= 0xFFFF:
        raise ValueError(f"token {token} outside 0-65535")
    return [int(Mode(mode)), quantity, int(Colour(colour)), int(Pattern(pattern)), token]


def encode_text(text: str, registers: int = TEXT_REGISTERS) -> list[int]:
    raw = text.encode("ascii")
    if len(raw) > 2 * registers:
        raise ValueError(f"text {text!r} longer than {2 * registers} characters")
    raw = raw.ljust(2 * registers, b"\x00")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def decode_text(regs: list[int]) -> str:
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()


def encode_u32(value: int) -> list[int]:
    """Low word first, as the identity block stores it."""
    return [value & 0xFFFF, (value >> 16) & 0xFFFF]


def decode_u32(regs: list[int]) -> int:
    return regs[0] | regs[1] << 16


def decode_firmware(word: int) -> str:
    return f"{word >> 8}.{word & 0xFF}"


@dataclass(frozen=True, slots=True)
class Identity:
    model_number: int
    model_name: str
    serial: str
    firmware: str


def decode_identity(block: list[int], firmware_word: int) -> Identity:
    """`block` is holding registers 1000-1053 (IDENTITY_BLOCK)."""
    if len(block) != IDENTITY_BLOCK[1]:
        raise ValueError(f"identity block is {IDENTITY_BLOCK[1]} registers, got {len(block)}")
    name_at = HR_MODEL_NAME - HR_MODEL_NUMBER
    serial_at = HR_SERIAL - HR_MODEL_NUMBER
    return Identity(
        model_number=decode_u32(block[0:2]),
        model_name=decode_text(block[name_at:name_at + TEXT_REGISTERS]),
        serial=decode_text(block[serial_at:serial_at + TEXT_REGISTERS]),
        firmware=decode_firmware(firmware_word),
    )


@dataclass(frozen=True, slots=True)
class CommSettings:
    unit_id: int
    baudrate: int
    parity: Parity
    stopbits: int


def encode_comm(settings: CommSettings) -> list[int]:
    if not UNIT_MIN <= settings.unit_id <= UNIT_MAX:
        raise ValueError(f"unit id {settings.unit_id} outside {UNIT_MIN}-{UNIT_MAX}")
    if settings.baudrate not in BAUD_RATES:
        raise ValueError(f"baud rate {settings.baudrate} not one of {', '.join(map(str, BAUD_RATES))}")
    if settings.stopbits not in (1, 2):
        raise ValueError(f"stop bits {settings.stopbits}: expected 1 or 2")
    return [settings.unit_id, settings.baudrate // 100, int(Parity(settings.parity)), settings.stopbits]


def decode_comm(regs: list[int]) -> CommSettings:
    return CommSettings(unit_id=regs[0], baudrate=regs[1] * 100, parity=Parity(regs[2]), stopbits=regs[3])


def check_unit(unit: int) -> int:
    if not isinstance(unit, int) or isinstance(unit, bool) or not UNIT_MIN <= unit <= UNIT_MAX:
        raise ValueError(f"unit id {unit!r} outside {UNIT_MIN}-{UNIT_MAX}")
    return unit
