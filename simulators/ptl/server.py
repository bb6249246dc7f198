"""pymodbus 3.16 server glue: requests go to the firmware's own request logic for the addressed node.

pymodbus does the transport and the MBAP framing on TCP; on RTU the firmware's `FrameAssembler` cuts the
frames, and everything after the frame is the reference firmware's `reply_pdu`, fed with the raw request
PDU, so the simulator answers exactly as the firmware does ("the simulator runs the same logic", SPEC §4).
Replaced in pymodbus, each for a reason found in its 3.16 source:
- request decoding and the datastore: pymodbus validates a request while decoding it and, when that
  fails (FC03 count 0 or 126), answers with function code 0x80 and exception 1 instead of the request's
  code + 0x80 and exception 3; it echoes FC05 values other than 0x0000/0xFF00 as a write of ON; and its
  datastore API (`ModbusServerContext` in "old simulator" mode) is only kept because the server
  constructor requires one;
- the RTU framer (see `SimRequestHandler.__init__` for why);
- the request handler: `ServerRequestHandler.handle_request` reads `self.last_pdu` again *after* awaiting
  the datastore, so a deliberately slow reply would go out labelled with the next request's unit id, and
  broadcasts (`broadcast_enable`) are only executed there. Ours takes each frame as it is cut, names its
  task, applies a broadcast (unit 0) to every present node without a reply, and applies the simulator's
  faults (silence, delay, exception, corrupted CRC) per unit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from firmware_stubs.ptl_node.hardware import gap_us
from firmware_stubs.ptl_node.modbus_rtu import FrameAssembler, crc_ok, reply_pdu

if TYPE_CHECKING:
    from .sim import PtlSimulator


class SimContext(ModbusServerContext):
    """Satisfies the server constructor; the handler below never calls a datastore."""

    def __init__(self, sim: PtlSimulator) -> None:  # no super().__init__: it only builds the deprecated store
        self.sim = sim
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    def device_ids(self) -> list[int]:
        return self.sim.units()


class SimRequestHandler(ServerRequestHandler):
    def __init__(self, owner: Any) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]
        sim: PtlSimulator = owner.sim
        self._gap_s = gap_us(sim.baudrate, 0, 1) / 1e6
        # RTU frames are cut by the firmware's own assembler (length of the functions it knows, the
        # 3.5-character silence for the rest), not by pymodbus's RTU framer, which has no notion of
        # silence (a half frame swallows the next request), consumes a whole read as one frame (a second
        # request in the same read is lost) and skips functions it cannot size.
        self._assembler = FrameAssembler(gap_us(sim.baudrate, 0, 1)) if sim.transport == "rtu" else None
        self._silence: asyncio.TimerHandle | None = None

    def _now_us(self) -> int:
        return int(self.loop.time() * 1e6)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Cut the received bytes into request frames; returns how many bytes were used."""
        if self._assembler is not None:
            self._rtu_frames(self._assembler.feed(data, self._now_us()), addr)
            return len(data)
        used = 0
        while used < len(data):
            n, unit, tid, pdu = self.framer.decode(data[used:])  # MBAP
            if not n:
                break
            used += n
            if pdu:
                self.server.sim.spawn(self._serve(unit, tid, pdu, addr), "ptl-sim-request")
        return used

    def _rtu_frames(self, frames: list[bytes], addr: Any) -> None:
        for frame in frames:
            if crc_ok(frame):  # a corrupt frame gets no reply from a node, whoever it was for
                self.server.sim.spawn(self._serve(frame[0], 0, frame[1:-2], addr), "ptl-sim-request")
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._assembler is not None and self._assembler.buf:
            # The device's main loop feeds its assembler on every turn; here a timer looks at the line
            # once the silence can have passed (and again if the event loop fired it a little early).
            self._silence = self.loop.call_later(self._gap_s, self._line_silent, addr)

    def _line_silent(self, addr: Any) -> None:
        self._silence = None
        if self._assembler is not None:
            self._rtu_frames(self._assembler.feed(b"", self._now_us()), addr)

    def callback_disconnected(self, exc: Exception | None) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        super().callback_disconnected(exc)

    async def _serve(self, unit: int, tid: int, request: bytes, addr: Any) -> None:
        sim: PtlSimulator = self.server.sim
        fc = request[0]
        if unit == 0:
            sim.broadcast(request)
            return
        if not await sim.before_reply(unit):
            return  # gone: silence, as on a real bus
        node = sim.node_for(unit)
        if node is None:
            return  # removed or re-addressed while the reply was delayed
        reply = reply_pdu(node, request, False, sim.now_ms())
        if reply is None:
            return  # not a request (an exception reply's function code): a node stays silent
        code = sim.faults(unit).exception
        if code:
            reply = bytes([fc | 0x80, code])
        sim.after_reply(unit, fc)
        if not self.transport:
            return
        packet = bytearray(self.framer.encode(reply, unit, tid))
        if sim.faults(unit).corrupt and sim.transport == "rtu":
            packet[-1] ^= 0x5A  # CRC no longer matches: the driver must count a miss, never a press
        else:
            sim.count_served(unit)
        self.send(bytes(packet), addr=addr)


class _Owned:
    sim: PtlSimulator

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)


class SimTcpServer(_Owned, ModbusTcpServer):
    def __init__(self, sim: PtlSimulator, host: str, port: int) -> None:
        self.sim = sim
        super().__init__(SimContext(sim), framer=FramerType.SOCKET, address=(host, port),
                         ignore_missing_devices=True)


class SimSerialServer(_Owned, ModbusSerialServer):
    def __init__(self, sim: PtlSimulator, path: str, baudrate: int) -> None:
        self.sim = sim
        super().__init__(SimContext(sim), framer=FramerType.RTU, port=path, baudrate=baudrate,
                         ignore_missing_devices=True, reconnect_delay=0)


async def wait_listening(server: ModbusTcpServer | ModbusSerialServer) -> None:
    for _ in range(200):
        if server.transport:
            return
        await asyncio.sleep(0.005)
    raise RuntimeError("the PTL simulator's Modbus server did not start")
