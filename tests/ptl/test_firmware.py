"""The reference firmware: register logic with times in milliseconds, and its Modbus RTU framing.

The framing is also exercised end to end: the real driver (pymodbus RTU client) talks through a pty to
the firmware's own `RtuSlave`s, several nodes sharing the line as on a real multi-drop segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from drivers.ptl import BusSettings, Colour, ModuleState, Pattern, PtlBus
from firmware_stubs.ptl_node import registers as R
from firmware_stubs.ptl_node.hardware import Keys, Led, Rs485, gap_us
from firmware_stubs.ptl_node.main import Firmware
from firmware_stubs.ptl_node.modbus_rtu import FrameAssembler, RtuSlave, crc16, crc_ok, request_length, with_crc
from firmware_stubs.ptl_node.registers import ModbusError, Node

from .conftest import Recorder, until


def job(node: Node, qty: int = 5, token: int = 42, now: int = 0) -> None:
    node.write_holding(0, [R.MODE_JOB, qty, 2, 0, token], now)


# ---- register logic ------------------------------------------------------------------------------------


def test_done_turns_itself_off_after_one_second() -> None:
    n = Node(now_ms=0)
    n.write_holding(0, [R.MODE_DONE, 0, 2, 0, 0], 1000)
    assert n.read_holding(0, 1, 1999) == [R.MODE_DONE]
    assert n.read_holding(0, 1, 2000) == [R.MODE_OFF]
    n.write_holding(0, [R.MODE_JOB, 3, 2, 0, 9], 3000)
    assert n.read_holding(0, 1, 9000) == [R.MODE_JOB]  # no other mode ends by itself


def test_key_latches_with_token_echo_and_counter() -> None:
    n = Node(now_ms=0)
    assert not n.press("confirm", 0)  # off: keys ignored
    job(n, qty=5, token=42)
    assert n.press("confirm", 10)
    st_, qty, echo, counter = n.read_input(0, 4, 10)
    assert st_ & R.ST_CONFIRM and st_ & R.ST_JOB_ACTIVE and not st_ & R.ST_ADJUSTED
    assert (qty, echo, counter) == (5, 42, 1)
    n.write_holding(0, [R.MODE_INFO, 5, 2, 0, 0], 20)
    assert not n.press("confirm", 30)  # info: keys ignored
    assert n.read_input(3, 1, 30) == [1]


def test_adjust_keys_and_adjusted_bit() -> None:
    n = Node(now_ms=0)
    job(n, qty=5)
    assert n.adjust(-2, 1) and n.display_text(1) == "   3"
    n.press("up", 2)
    n.press("up", 2)
    n.press("up", 2)  # capped at the job quantity
    assert n.display_text(2) == "   5"
    n.adjust(-1, 3)
    n.press("shortage", 4)
    status, qty = n.read_input(0, 2, 4)
    assert status & R.ST_SHORTAGE and status & R.ST_ADJUSTED and qty == 4
    job(n, qty=5)  # the same job written again keeps the picker's adjustment
    assert n.display_text(5) == "   4"
    job(n, qty=5, token=43)  # a new job does not
    assert n.display_text(6) == "   5"


def test_compare_and_clear_only_with_the_counter_read() -> None:
    n = Node(now_ms=0)
    job(n)
    n.press("confirm", 1)
    counter = n.read_input(3, 1, 1)[0]
    n.press("confirm", 2)  # a press between the read and the clear
    n.write_holding(R.HR_CLEAR, [counter], 3)
    assert n.read_input(0, 1, 3)[0] & R.ST_CONFIRM  # not cleared: that press is not lost
    n.write_holding(R.HR_CLEAR, [n.read_input(3, 1, 4)[0]], 4)
    assert n.read_input(0, 1, 4)[0] & (R.ST_CONFIRM | R.ST_POWER_UP) == 0
    assert n.read_holding(R.HR_CLEAR, 2, 5) == [0, 0]  # clear and command read as 0


def test_counter_wraps_at_65536() -> None:
    n = Node(now_ms=0)
    job(n)
    n.counter = 0xFFFF
    n.press("confirm", 1)
    assert n.read_input(3, 1, 1) == [0]
    n.write_holding(R.HR_CLEAR, [0], 2)
    assert n.read_input(0, 1, 2)[0] & 3 == 0


def test_keys_of_a_replaced_job_are_dropped_on_the_next_press() -> None:
    n = Node(now_ms=0)
    job(n, token=1)
    n.press("confirm", 1)
    job(n, token=2)
    n.press("shortage", 2)
    status, _, echo, counter = n.read_input(0, 4, 2)
    assert status & 3 == R.ST_SHORTAGE and echo == 2 and counter == 2


def test_power_up_bit_and_reboot_loses_state_applies_comm_block() -> None:
    n = Node(unit_id=7, now_ms=0)
    assert n.read_input(0, 1, 0)[0] & R.ST_POWER_UP
    n.write_holding(R.HR_CLEAR, [0], 1)
    assert not n.read_input(0, 1, 1)[0] & R.ST_POWER_UP
    job(n)
    n.write_holding(R.HR_UNIT_ID, [12, 192, 2, 1], 2)
    assert n.unit_id == 7 and n.read_holding(R.HR_UNIT_ID, 4, 2) == [12, 192, 2, 1]  # stored, not applied
    n.write_holding(R.HR_COMMAND, [R.CMD_REBOOT], 3)
    assert n.unit_id == 7  # the reply leaves first
    n.tick(3 + R.REBOOT_DELAY_MS)
    assert (n.unit_id, n.baud, n.parity, n.stopbits) == (12, 19200, 2, 1)
    assert n.read_holding(0, 5, 100) == [0, 0, 0, 0, 0]
    assert n.read_input(0, 1, 100)[0] & R.ST_POWER_UP


def test_identity_block_and_firmware_version() -> None:
    n = Node(serial="FG-123", model_number=0x12345678, model_name="PTL", firmware=0x0102, now_ms=0)
    block = n.read_holding(1000, 54, 0)
    assert block[0:2] == [0x5678, 0x1234]  # low word first
    assert block[3] == ord("P") << 8 | ord("T") and block[4] == ord("L") << 8
    assert block[38] == ord("F") << 8 | ord("G")
    assert n.read_input(4, 1, 0) == [0x0102]


def test_commands_self_test_and_identify_expire() -> None:
    n = Node(unit_id=3, now_ms=0)
    n.write_holding(R.HR_COMMAND, [R.CMD_SELF_TEST], 0)
    assert n.display_text(1) == "8888" and n.light(1) == (7, 0)
    assert n.display_text(2000) == "    "
    n.write_holding(R.HR_COMMAND, [R.CMD_IDENTIFY], 3000)
    assert n.display_text(3001) == "   3" and n.light(3001) == (7, 1)
    assert n.led_on(3000) and not n.led_on(3600)  # 1 Hz blink
    assert n.display_text(8000) == "    "


def test_coils_buzzer_and_key_lock() -> None:
    n = Node(now_ms=0)
    job(n)
    n.write_coils(R.COIL_KEYS_LOCKED, [True])
    assert n.read_coils(0, 2) == [False, True]
    assert not n.press("confirm", 1)
    with pytest.raises(ModbusError) as e:
        n.read_coils(1, 2)
    assert e.value.code == R.EX_ILLEGAL_ADDRESS


@pytest.mark.parametrize(("addr", "values", "code"), [
    (0, [5], R.EX_ILLEGAL_VALUE),  # mode
    (1, [10000], R.EX_ILLEGAL_VALUE),  # quantity
    (2, [8], R.EX_ILLEGAL_VALUE),  # colour
    (3, [4], R.EX_ILLEGAL_VALUE),  # pattern
    (6, [1], R.EX_ILLEGAL_VALUE),  # command
    (0, [1, 6, 2, 0, 9, 0, 0, 0], R.EX_ILLEGAL_ADDRESS),  # runs into 7, which does not exist
    (1000, [1], R.EX_ILLEGAL_ADDRESS),  # identity is read-only
    (R.HR_UNIT_ID, [0], R.EX_ILLEGAL_VALUE),
    (R.HR_BAUD, [1000], R.EX_ILLEGAL_VALUE),
    (R.HR_PARITY, [3], R.EX_ILLEGAL_VALUE),
    (R.HR_STOPBITS, [3], R.EX_ILLEGAL_VALUE),
])
def test_refused_writes_change_nothing(addr: int, values: list[int], code: int) -> None:
    n = Node(now_ms=0)
    job(n, qty=5, token=9)
    before = n.read_holding(0, 5, 0) + n.read_holding(R.HR_UNIT_ID, 4, 0)
    with pytest.raises(ModbusError) as e:
        n.write_holding(addr, values, 0)
    assert e.value.code == code
    assert n.read_holding(0, 5, 0) + n.read_holding(R.HR_UNIT_ID, 4, 0) == before


def test_bad_reads_and_bad_keys() -> None:
    n = Node(now_ms=0)
    with pytest.raises(ModbusError):
        n.read_holding(5, 3, 0)  # 7 does not exist
    with pytest.raises(ModbusError):
        n.read_input(3, 3, 0)
    with pytest.raises(ModbusError):
        n.read_holding(0, 0, 0)
    with pytest.raises(ValueError, match="unknown key"):
        n.press("enter", 0)
    with pytest.raises(ValueError, match="unit id"):
        Node(unit_id=0)
    with pytest.raises(ValueError, match="baud"):
        Node(baud=12345)


@given(st.lists(st.sampled_from(["confirm", "shortage", "up", "down", "clear", "read"]), max_size=60))
def test_no_press_is_lost_or_doubled(ops: list[str]) -> None:
    """Any interleaving of presses, reads and clears: every press is seen by exactly one read-then-clear."""
    n = Node(now_ms=0)
    job(n, qty=9)
    n.write_holding(R.HR_CLEAR, [0], 0)
    presses = 0
    seen: set[int] = set()
    last_read: int | None = None
    for t, op in enumerate(ops, start=1):
        if op in ("confirm", "shortage"):
            n.press(op, t)
            presses += 1
        elif op in ("up", "down"):
            n.press(op, t)
        elif op == "read":
            status, _, _, counter = n.read_input(0, 4, t)
            if status & 3:
                seen.add(counter)
            last_read = counter
        elif last_read is not None:
            n.write_holding(R.HR_CLEAR, [last_read], t)
    status, _, _, counter = n.read_input(0, 4, 10_000)
    if status & 3:
        seen.add(counter)
    # each press moved the counter; the final one is always visible until cleared with its own value
    assert n.counter == presses
    assert (presses == 0) == (not seen)
    assert max(seen, default=0) == presses


# ---- RTU framing ----------------------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_crc16_matches_pymodbus(data: bytes) -> None:
    ours = crc16(data)
    assert FramerRTU.compute_CRC(data) == ((ours & 0xFF) << 8 | ours >> 8)
    assert crc_ok(with_crc(b"\x01\x03" + data))


def frame(unit: int, pdu: bytes) -> bytes:
    return with_crc(bytes([unit]) + pdu)


def test_rtu_slave_function_codes_and_exceptions() -> None:
    n = Node(unit_id=7, now_ms=0)
    slave = RtuSlave(n)
    reply = slave.handle(frame(7, struct.pack(">BHHB5H", 16, 0, 5, 10, 1, 3, 2, 0, 99)), 0)
    assert reply == frame(7, struct.pack(">BHH", 16, 0, 5))
    reply = slave.handle(frame(7, struct.pack(">BHH", 4, 0, 4)), 0)
    assert reply is not None and reply[:3] == bytes([7, 4, 8]) and crc_ok(reply)
    assert struct.unpack(">4H", reply[3:11])[2] == 0  # token echo 0: no key yet
    assert slave.handle(frame(7, struct.pack(">BHH", 6, 5, 0)), 0) == frame(7, struct.pack(">BHH", 6, 5, 0))
    assert slave.handle(frame(7, struct.pack(">BHH", 5, 1, 0xFF00)), 0) == frame(7, struct.pack(">BHH", 5, 1, 0xFF00))
    assert slave.handle(frame(7, struct.pack(">BHH", 1, 0, 2)), 0) == frame(7, bytes([1, 1, 0b10]))
    assert slave.handle(frame(7, struct.pack(">BHHBB", 15, 0, 2, 1, 0)), 0) == frame(7, struct.pack(">BHH", 15, 0, 2))
    assert slave.handle(frame(7, struct.pack(">BHH", 3, 1000, 2)), 0) == frame(7, struct.pack(">BBHH", 3, 4, 4201, 0))
    assert slave.handle(frame(7, struct.pack(">BHH", 3, 7, 1)), 0) == frame(7, bytes([0x83, 2]))
    assert slave.handle(frame(7, struct.pack(">BHH", 6, 0, 9)), 0) == frame(7, bytes([0x86, 3]))
    assert slave.handle(frame(7, bytes([43, 14, 1, 0])), 0) == frame(7, bytes([0xAB, 1]))  # FC43 unsupported
    assert slave.handle(frame(7, struct.pack(">BHH", 5, 0, 0x1234)), 0) == frame(7, bytes([0x85, 3]))
    assert slave.handle(frame(7, struct.pack(">BHHB", 16, 0, 2, 2) + b"\x00\x01"), 0) == frame(7, bytes([0x90, 3]))


def test_rtu_slave_ignores_other_units_bad_crc_and_answers_no_broadcast() -> None:
    n = Node(unit_id=7, now_ms=0)
    slave = RtuSlave(n)
    assert slave.handle(frame(8, struct.pack(">BHH", 4, 0, 4)), 0) is None
    bad = bytearray(frame(7, struct.pack(">BHH", 4, 0, 4)))
    bad[-1] ^= 1
    assert slave.handle(bytes(bad), 0) is None and slave.crc_errors == 1
    assert slave.handle(b"\x07", 0) is None
    assert slave.handle(frame(0, struct.pack(">BHH", 6, 2, 5)), 0) is None  # broadcast: applied, no reply
    assert n.colour == 5


def test_frame_assembler_splits_by_length_and_drops_at_silence() -> None:
    fa = FrameAssembler(gap_us(115200, 0, 1))
    a = frame(1, struct.pack(">BHH", 4, 0, 4))
    b = frame(2, struct.pack(">BHHB", 16, 0, 1, 2) + b"\x00\x01")
    assert fa.feed(a + b[:5], 0) == [a]
    assert fa.feed(b[5:], 100) == [b]
    assert fa.feed(b"\x01\x04\x00", 200) == []
    assert fa.feed(a, 200 + 1750) == [a]  # the half frame was dropped at the silence
    assert fa.feed(b"\x01\x2b\x00\x00", 5000) == []  # not a request whose length we know: kept until the silence
    assert request_length(b"\x01") == 0 and gap_us(9600, 0, 1) == 3647


def test_firmware_main_loop_off_the_device() -> None:
    node = Node(unit_id=4, now_ms=0)
    bus, led, keys = Rs485(115200, 0, 1), Led(), Keys()
    from firmware_stubs.ptl_node.hardware import Display

    fw = Firmware(node, bus, led, Display(), keys)
    bus.rx_bytes = frame(4, struct.pack(">BHHB5H", 16, 0, 5, 10, 1, 7, 4, 0, 5))
    fw.step(10)
    assert bus.tx_log == [frame(4, struct.pack(">BHH", 16, 0, 5))]
    assert led.state == (1, 1, 0) and fw.display.text == "   7"
    keys.injected.append("confirm")
    fw.step(20)
    assert node.counter == 1


# ---- the driver against the firmware's own framing, over a pty -----------------------------------------


class FirmwareLine:
    """A pty whose far end is a multi-drop line of firmware nodes: every node sees every frame."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.slaves = [RtuSlave(n) for n in nodes]
        self.master, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave_fd)
        self.assembler = FrameAssembler(gap_us(115200, 0, 1))
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        now_ms = int(self.loop.time() * 1000)
        for f in self.assembler.feed(data, now_ms * 1000):
            for s in self.slaves:
                reply = s.handle(f, now_ms)
                if reply:
                    os.write(self.master, reply)

    def close(self) -> None:
        self.loop.remove_reader(self.master)
        for fd in (self.master, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def fw_line() -> AsyncIterator[FirmwareLine]:
    line = FirmwareLine([Node(unit_id=u, serial=f"FW-{u}", now_ms=0) for u in (1, 2, 3)])
    yield line
    line.close()


async def test_driver_against_firmware_framing_over_a_pty(fw_line: FirmwareLine) -> None:
    rec = Recorder()
    settings = BusSettings(id="bus-fw", transport="rtu", port=fw_line.path, poll_ms=5, timeout_ms=50)
    async with PtlBus(settings, on_key=rec.keys.append, on_health=rec.health.append) as bus:
        bus.set_state(2, ModuleState.job(6, Colour.MAGENTA, Pattern.PULSE, 777))
        bus.watch(1)
        bus.watch(9)  # no such node: silence on the line
        async with asyncio.timeout(10):
            await bus.wait_shown(2)
        node = fw_line.nodes[1]
        assert (node.mode, node.quantity, node.colour, node.pattern, node.token) == (1, 6, 5, 3, 777)
        node.press("confirm", int(asyncio.get_running_loop().time() * 1000))
        await until(lambda: len(rec.keys) == 1)
        assert (rec.keys[0].unit, rec.keys[0].token, rec.keys[0].qty) == (2, 777, 6)
        assert (await bus.read_identity(3)).serial == "FW-3"
        await until(lambda: len(rec.offline(9)) == 1)
        assert bus.is_online(1)
