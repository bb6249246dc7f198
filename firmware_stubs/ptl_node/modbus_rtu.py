"""Modbus RTU slave framing for the PTL node: CRC16, FC01/03/04/05/06/15/16 and exception replies.

Runs unchanged on MicroPython and CPython (see registers.py for the rules). The node object is passed
in, so the same framing serves the real node and a simulated one: `reply_pdu` is the whole function-code
logic, and the simulator's Modbus server calls it too, so both answer every request byte for byte alike.
Frames are delimited by the RTU silence of 3.5 characters; `request_length` lets the node answer as soon
as a whole request of a function it knows is in, without waiting for that silence. A request of any other
function can only be delimited by the silence, and is then answered with exception 1 (illegal function).
"""

from .registers import EX_ILLEGAL_FUNCTION, EX_ILLEGAL_VALUE, ModbusError, Node  # noqa: F401 (Node: type comments)


def _make_table():  # type: () -> list[int]
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc16(data):  # type: (bytes) -> int
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(frame):  # type: (bytes) -> bytes
    crc = crc16(frame)
    return frame + bytes([crc & 0xFF, crc >> 8])


def crc_ok(frame):  # type: (bytes) -> bool
    return len(frame) >= 4 and crc16(frame[:-2]) == frame[-2] | (frame[-1] << 8)


MAX_FRAME = 256  # the longest RTU frame (Modbus over serial line, 2.5.1)
UNKNOWN_LENGTH = -1  # a function we do not implement: the frame ends at the silence
NOT_A_REQUEST = -2  # function code 0 or >= 0x80 (another node's exception reply, or noise)


def request_length(buf):  # type: (bytes) -> int
    """Length of the request frame that starts `buf`: 0 if more bytes are needed, else one of the two
    negative codes above when the length cannot be known from the bytes."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc in (1, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        if len(buf) < 7:
            return 0
        return 9 + buf[6]
    if fc == 0 or fc & 0x80:
        return NOT_A_REQUEST
    return UNKNOWN_LENGTH


def _u16(data, i):  # type: (bytes, int) -> int
    return (data[i] << 8) | data[i + 1]


def _p16(*words):  # type: (int) -> bytes
    out = bytearray()
    for w in words:
        out.append((w >> 8) & 0xFF)
        out.append(w & 0xFF)
    return bytes(out)


def _pack_bits(bits):  # type: (list[bool]) -> bytes
    out = bytearray((len(bits) + 7) // 8)
    for i in range(len(bits)):
        if bits[i]:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data, count):  # type: (bytes, int) -> list[bool]
    return [bool(data[i // 8] & (1 << (i % 8))) for i in range(count)]


class RtuSlave:
    """Answers the frames addressed to one node; unit 0 is broadcast (writes applied, no reply)."""

    def __init__(self, node):  # type: (Node) -> None
        self.node = node
        self.frames = 0
        self.crc_errors = 0
        self.exceptions = 0

    def handle(self, frame, now_ms):  # type: (bytes, int) -> bytes | None
        """The reply to send for one received frame, or None (not ours, broadcast, or corrupt)."""
        if len(frame) < 4 or not crc_ok(frame):
            self.crc_errors += 1
            return None
        unit = frame[0]
        node = self.node
        if unit != 0 and unit != node.unit_id:
            return None
        self.frames += 1
        body = reply_pdu(node, frame[1:-2], unit == 0, now_ms)
        if body is None:
            return None
        if body[0] & 0x80:
            self.exceptions += 1
        return with_crc(bytes([unit]) + body)


def reply_pdu(node, request, broadcast, now_ms):  # type: (Node, bytes, bool, int) -> bytes | None
    """The reply PDU (function code and data, or an exception) to one request PDU, or None when nothing
    may be sent: a broadcast (unit 0; its writes are applied all the same) or not a request at all.

    Framing-free on purpose: the simulator's Modbus TCP and RTU server hands its request PDUs here too, so
    the simulator cannot drift from the firmware in what it accepts, refuses or echoes.
    """
    if not request:
        return None
    fc = request[0]
    if fc == 0 or fc & 0x80:
        return None  # exception replies of other nodes on the line are not requests
    try:
        body = _execute(node, fc, request[1:], broadcast, now_ms)
    except ModbusError as e:
        body = bytes([fc | 0x80, e.code])
    return None if broadcast else body


def _execute(node, fc, pdu, broadcast, now_ms):  # type: (Node, int, bytes, bool, int) -> bytes
    if fc in (1, 3, 4):
        if len(pdu) != 4:
            raise ModbusError(EX_ILLEGAL_VALUE, "read request must be 4 bytes")
        if broadcast:
            return b""
        addr, count = _u16(pdu, 0), _u16(pdu, 2)
        if fc == 1:
            bits = node.read_coils(addr, count)
            data = _pack_bits(bits)
            return bytes([fc, len(data)]) + data
        if fc == 3:
            regs = node.read_holding(addr, count, now_ms)
        else:
            regs = node.read_input(addr, count, now_ms)
        return bytes([fc, 2 * len(regs)]) + _p16(*regs)
    if fc == 5:
        if len(pdu) != 4:
            raise ModbusError(EX_ILLEGAL_VALUE, "FC05 request must be 4 bytes")
        value = _u16(pdu, 2)
        if value not in (0x0000, 0xFF00):
            raise ModbusError(EX_ILLEGAL_VALUE, "FC05 value must be 0x0000 or 0xFF00")
        node.write_coils(_u16(pdu, 0), [value == 0xFF00])
        return bytes([fc]) + pdu
    if fc == 6:
        if len(pdu) != 4:
            raise ModbusError(EX_ILLEGAL_VALUE, "FC06 request must be 4 bytes")
        node.write_holding(_u16(pdu, 0), [_u16(pdu, 2)], now_ms)
        return bytes([fc]) + pdu
    if fc in (15, 16):
        if len(pdu) < 5 or pdu[4] != len(pdu) - 5:
            raise ModbusError(EX_ILLEGAL_VALUE, "byte count does not match the data")
        addr, count = _u16(pdu, 0), _u16(pdu, 2)
        data = pdu[5:]
        if fc == 15:
            if count < 1 or len(data) != (count + 7) // 8:
                raise ModbusError(EX_ILLEGAL_VALUE, "coil count does not match the data")
            node.write_coils(addr, _unpack_bits(data, count))
        else:
            if count < 1 or len(data) != 2 * count:
                raise ModbusError(EX_ILLEGAL_VALUE, "register count does not match the data")
            regs = [_u16(data, 2 * i) for i in range(count)]
            node.write_holding(addr, regs, now_ms)
        return bytes([fc]) + _p16(addr, count)
    raise ModbusError(EX_ILLEGAL_FUNCTION, f"function code {fc} not supported")


class FrameAssembler:
    """Splits the byte stream of a shared RS-485 line into frames.

    A request of a function we implement ends when its expected length is in; anything else ends at a
    silence of 3.5 characters (`gap_us`): a request of another function is then handed on whole (its CRC
    decides whether it is one, and the slave answers it with exception 1), a half-received request or a
    non-request (another node's exception reply, noise) is dropped. The silence is only seen when `feed`
    is called, so call it on every loop turn, with or without data.

    Times are microseconds: plain integers here; on the device main.py passes the raw, wrapping
    `time.ticks_us()` and overrides `elapsed` with `time.ticks_diff`, because a never-wrapping microsecond
    count would become a heap-allocated long integer within 18 minutes on a 32-bit port.
    """

    def __init__(self, gap_us):  # type: (int) -> None
        self.gap_us = gap_us
        self.buf = b""
        self.last_us = None  # type: int | None

    def elapsed(self, now_us, then_us):  # type: (int, int) -> int
        return now_us - then_us

    def feed(self, data, now_us):  # type: (bytes, int) -> list[bytes]
        frames = []
        if self.buf and self.last_us is not None and self.elapsed(now_us, self.last_us) >= self.gap_us:
            if request_length(self.buf) == UNKNOWN_LENGTH and len(self.buf) >= 4:
                frames.append(self.buf)
            self.buf = b""  # a silence ended whatever was half received
        if not data:
            return frames
        self.buf += data
        self.last_us = now_us
        while self.buf:
            n = request_length(self.buf)
            if n < 0:
                if len(self.buf) > MAX_FRAME:
                    self.buf = b""  # no frame is that long: noise, resynchronise at the next silence
                break  # the silence ends it
            if n == 0 or n > len(self.buf):
                break
            frames.append(self.buf[:n])
            self.buf = self.buf[n:]
        return frames
