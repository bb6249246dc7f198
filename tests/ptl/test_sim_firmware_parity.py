"""The simulator answers every request exactly as the reference firmware does (SPEC §4: "the simulator runs
the same logic"), request by request, byte for byte.

The same raw RTU frames go to the simulator over its pty and to the firmware's own main loop
(`Firmware.step`, hardware stubs, a test clock), and the same pymodbus client calls go to the simulator
and to the firmware running on a pty; the answers are compared, never written down twice. Three modules
(units 1-3) with the same serials on both sides. A frame that must get no answer is followed by a
sentinel read: whatever arrives before the sentinel's reply is that frame's answer. Every frame in the
table is a whole frame by its length (or a function cut by the silence, which the simulator counts before
the sentinel is sent), so the sentinel can never be taken for the rest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

from firmware_stubs.ptl_node.hardware import Display, Keys, Led, Rs485
from firmware_stubs.ptl_node.main import Firmware
from firmware_stubs.ptl_node.modbus_rtu import with_crc
from firmware_stubs.ptl_node.registers import Node
from simulators.ptl import PtlSimulator

from .conftest import LIMIT, until

UNITS = (1, 2, 3)
SENTINEL = with_crc(bytes([2]) + struct.pack(">BHH", 3, 0, 5))  # HR 0-4 of unit 2: shows what a write did


def firmware_nodes() -> list[Firmware]:
    """The nodes PtlSimulator(UNITS) builds, each behind its own main loop with stub hardware."""
    out = []
    for i, unit in enumerate(UNITS, start=1):
        node = Node(unit_id=unit, serial=f"SIM-{i:06d}", baud=115200, now_ms=0)
        out.append(Firmware(node, Rs485(node.baud, node.parity, node.stopbits), Led(), Display(), Keys()))
    return out


def state(nodes: list[Node]) -> list[tuple[list[int], list[bool]]]:
    return [(n.read_holding(0, 5, 0), n.read_coils(0, 2)) for n in nodes]


class FirmwareLine:
    """Several firmware main loops on one line, stepped by a test clock: every node hears every frame."""

    def __init__(self) -> None:
        self.fws = firmware_nodes()
        self.now_ms = 0

    def _step(self, data: bytes) -> bytes:
        self.now_ms += 5  # more than the 1.75 ms silence between any two steps
        out = b""
        for fw in self.fws:
            fw.bus.rx_bytes += data
            fw.step(self.now_ms)
            out += b"".join(fw.bus.tx_log)
            fw.bus.tx_log.clear()
        return out

    def send(self, frame: bytes) -> bytes:
        """The frame, then a silence on the line; everything the nodes sent back."""
        return self._step(frame) + self._step(b"")


class SimLine:
    """The simulator's RTU line seen from the master's end of its pty."""

    def __init__(self, sim: PtlSimulator) -> None:
        self.sim = sim
        self.fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.rx = bytearray()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.rx += os.read(self.fd, 4096)

    def taken(self) -> int:
        return sum(self.sim.requests.values())

    async def send(self, frame: bytes, answer_len: int, counted: bool) -> None:
        """Write `frame`; wait until the simulator has taken it (when it counts it) and `answer_len` bytes are in."""
        before = self.taken()
        os.write(self.fd, frame)
        if counted:  # also: a frame that ends at the silence is cut before the sentinel can follow it
            await until(lambda: self.taken() > before)
        await until(lambda: len(self.rx) >= answer_len)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


@dataclass(frozen=True)
class Case:
    name: str
    unit: int
    pdu: str  # hex
    crc: bool = True

    def frame(self) -> bytes:
        raw = bytes([self.unit]) + bytes.fromhex(self.pdu)
        return with_crc(raw) if self.crc else raw + b"\x00\x00"


CASES = [
    Case("FC03 count 0", 2, "03 0000 0000"),
    Case("FC03 count 126", 2, "03 03E8 007E"),
    Case("FC03 count 125 into registers that do not exist", 2, "03 0000 007D"),
    Case("FC03 identity block", 2, "03 03E8 0036"),
    Case("FC04 the poll", 2, "04 0000 0004"),
    Case("FC05 value 0x1234", 2, "05 0000 1234"),
    Case("FC05 keys locked ON", 2, "05 0001 FF00"),
    Case("FC06 colour", 2, "06 0002 0005"),
    Case("FC06 unit id 0 refused", 2, "06 17D4 0000"),
    Case("FC15 both coils", 2, "0F 0000 0002 01 03"),
    Case("FC16 a job", 2, "10 0000 0005 0A 0001 0007 0002 0000 002A"),
    Case("FC16 register count short of the data", 2, "10 0000 0001 04 0001 0002"),
    Case("FC06 broadcast mode 2", 0, "06 0000 0002"),
    Case("FC16 broadcast job", 0, "10 0000 0005 0A 0002 0003 0004 0000 0009"),
    Case("FC05 broadcast buzzer", 0, "05 0000 FF00"),
    Case("FC03 broadcast read", 0, "03 0000 0001"),
    Case("FC02 (not in the map)", 2, "02 0000 0001"),
    Case("FC11 report server id (not in the map)", 2, "11"),
    Case("FC2B/0E device identification (not in the map)", 2, "2B 0E 01 00"),
    Case("FC41 user-defined (unknown to pymodbus too)", 2, "41 0001 0002"),
    Case("FC02 broadcast (not in the map)", 0, "02 0000 0001"),
    Case("unit not on the bus", 9, "03 0000 0001"),
    Case("bad CRC", 2, "04 0000 0004", crc=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_raw_rtu_frames_get_the_same_answer(case: Case) -> None:
    fw = FirmwareLine()
    expected = fw.send(case.frame())
    expected_sentinel = fw.send(SENTINEL)
    async with PtlSimulator(UNITS, transport="rtu") as sim:
        line = SimLine(sim)
        try:
            await line.send(case.frame(), len(expected), counted=case.crc)
            await line.send(SENTINEL, len(expected) + len(expected_sentinel), counted=True)
            assert (bytes(line.rx[:len(expected)]).hex(), bytes(line.rx[len(expected):]).hex()) == (
                expected.hex(), expected_sentinel.hex())
            assert state(sim.nodes) == state([f.node for f in fw.fws])
        finally:
            line.close()


def test_the_cases_cover_the_reported_differences() -> None:
    """The table above must keep the cases the differences were found with (and their firmware answers)."""
    fw = FirmwareLine()
    answers = {c.name: fw.send(c.frame()) for c in CASES}
    assert answers["FC03 count 0"] == answers["FC03 count 126"] == with_crc(bytes([2, 0x83, 3]))
    assert answers["FC05 value 0x1234"] == with_crc(bytes([2, 0x85, 3]))
    assert answers["FC06 broadcast mode 2"] == b""
    assert answers["FC02 (not in the map)"] == with_crc(bytes([2, 0x82, 1]))
    assert answers["FC11 report server id (not in the map)"] == with_crc(bytes([2, 0x91, 1]))
    assert answers["FC2B/0E device identification (not in the map)"] == with_crc(bytes([2, 0xAB, 1]))
    assert [f.node.mode for f in fw.fws] == [2, 2, 2]  # the broadcasts reached every node


def test_the_firmware_sees_a_silence_shorter_than_two_milliseconds() -> None:
    """The 1.75 ms silence measured with the microsecond clock: 1.8 ms that a 1 ms tick reads as 1 ms still
    ends the half request the master gave up on, so the next request is answered, not merged with it."""
    fw = firmware_nodes()[1]  # unit 2
    poll = with_crc(bytes([2]) + struct.pack(">BHH", 4, 0, 4))
    fw.bus.rx_bytes = poll[:3]
    fw.step(1, 1_100)
    fw.bus.rx_bytes = poll
    fw.step(2, 2_900)
    assert len(fw.bus.tx_log) == 1 and fw.bus.tx_log[0][:3] == bytes([2, 4, 8])


# ---- the same pymodbus client calls --------------------------------------------------------------------


class FirmwareOnPty:
    """The firmware main loops behind a pty, stepped continuously like the device's `run()`."""

    def __init__(self) -> None:
        self.fws = firmware_nodes()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self._run(), name="firmware-on-pty")

    async def _run(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, InterruptedError):
                data = b""
            t = self.loop.time()
            for fw in self.fws:
                fw.bus.rx_bytes += data
                fw.step(int(t * 1000), int(t * 1e6))
                for reply in fw.bus.tx_log:
                    os.write(self.master, reply)
                fw.bus.tx_log.clear()
            await asyncio.sleep(0.0005)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


Call = Callable[[AsyncModbusSerialClient], Awaitable[Any]]

CALLS: list[tuple[str, Call]] = [
    ("identity", lambda c: c.read_holding_registers(1000, count=54, device_id=2)),
    ("poll", lambda c: c.read_input_registers(0, count=5, device_id=2)),
    ("buzzer on", lambda c: c.write_coil(0, True, device_id=2)),
    ("coils", lambda c: c.read_coils(0, count=2, device_id=2)),
    ("job", lambda c: c.write_registers(0, [1, 12, 3, 1, 99], device_id=3)),
    ("broadcast mode 2", lambda c: c.write_register(0, 2, device_id=0, no_response_expected=True)),
    ("unit 1 after broadcast", lambda c: c.read_holding_registers(0, count=5, device_id=1)),
    ("unit 3 after broadcast", lambda c: c.read_holding_registers(0, count=5, device_id=3)),
    ("register 7", lambda c: c.read_holding_registers(7, count=1, device_id=2)),
    ("unit id 0", lambda c: c.write_register(6100, 0, device_id=2)),
    ("mode 5", lambda c: c.write_registers(0, [5], device_id=2)),
    ("FC02", lambda c: c.read_discrete_inputs(0, count=1, device_id=2)),
    ("FC11", lambda c: c.report_device_id(device_id=2)),
    ("FC2B", lambda c: c.read_device_information(device_id=2)),
    ("poll after all that", lambda c: c.read_input_registers(0, count=5, device_id=2)),
]


def outcome(reply: Any) -> tuple[Any, ...]:
    if reply is None:
        return ("no reply expected",)
    if reply.isError():
        return ("exception", reply.function_code, reply.exception_code)
    return ("ok", reply.function_code, list(getattr(reply, "registers", [])), list(getattr(reply, "bits", [])))


async def outcomes(path: str) -> list[tuple[Any, ...]]:
    client = AsyncModbusSerialClient(path, framer=FramerType.RTU, baudrate=115200, timeout=LIMIT / 2, retries=0)
    try:
        async with asyncio.timeout(LIMIT):
            assert await client.connect()
        out = []
        for name, call in CALLS:
            async with asyncio.timeout(LIMIT):
                out.append((name, *outcome(await call(client))))
        return out
    finally:
        client.close()


@pytest.fixture
async def firmware_on_pty() -> AsyncIterator[FirmwareOnPty]:
    fw = FirmwareOnPty()
    yield fw
    await fw.close()


async def test_pymodbus_client_calls_get_the_same_answers(firmware_on_pty: FirmwareOnPty) -> None:
    from_firmware = await outcomes(firmware_on_pty.path)
    async with PtlSimulator(UNITS, transport="rtu") as sim:
        from_sim = await outcomes(sim.path)
        assert state(sim.nodes) == state([f.node for f in firmware_on_pty.fws])
    assert from_sim == from_firmware
    assert dict((o[0], o[1:]) for o in from_firmware)["FC2B"][0] == "exception"
