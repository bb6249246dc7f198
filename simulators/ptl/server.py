"""pymodbus 3.16 server glue: requests go to the firmware register logic of the addressed simulated node.

Two things are replaced in pymodbus, each for a reason found in its 3.16 source:
- the datastore: `ModbusServerContext` in "old simulator" mode lets us answer every read and write from
  the firmware's `Node` (a register map with rules, not a memory block), without the deprecated
  datastore classes and their warnings;
- the request handler: `ServerRequestHandler.handle_request` reads `self.last_pdu` again *after* awaiting
  the datastore, so a deliberately slow reply would go out labelled with the next request's unit id.
  Ours captures the request first, names its task, and applies the simulator's faults (silence, delay,
  exception, corrupted CRC) per unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from firmware_stubs.ptl_node.registers import EX_ILLEGAL_FUNCTION, ModbusError

if TYPE_CHECKING:
    from .sim import PtlSimulator

SUPPORTED = (1, 3, 4, 5, 6, 15, 16)


class SimContext(ModbusServerContext):
    """Routes the server's datastore calls to the simulated nodes."""

    def __init__(self, sim: PtlSimulator) -> None:  # no super().__init__: it only builds the deprecated store
        self.sim = sim
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}
        self._echo: list[Any] | None = None

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code in (5, 6) and self._echo is not None:
            # FC05/FC06 replies echo the request; pymodbus builds them by reading back, and HR 5/6 read as 0.
            echo, self._echo = self._echo, None
            return echo
        node = self.sim.node_for(device_id)
        if node is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        now = self.sim.now_ms()
        try:
            if func_code == 4:
                return node.read_input(address, count, now)
            if func_code == 3:
                return node.read_holding(address, count, now)
            if func_code == 1:
                return node.read_coils(address, count)
        except ModbusError as e:
            return ExcCodes(e.code)
        return ExcCodes.ILLEGAL_FUNCTION

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        node = self.sim.node_for(device_id)
        if node is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        now = self.sim.now_ms()
        try:
            if func_code in (6, 16):
                node.write_holding(address, [int(v) for v in values], now)
            elif func_code in (5, 15):
                node.write_coils(address, [bool(v) for v in values])
            else:
                return ExcCodes.ILLEGAL_FUNCTION
        except ModbusError as e:
            return ExcCodes(e.code)
        if func_code in (5, 6):
            self._echo = list(values)
        return None

    def device_ids(self) -> list[int]:
        return self.sim.units()


class SimRequestHandler(ServerRequestHandler):
    def __init__(self, owner: Any) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]

    def handle_later(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        self.last_pdu = None
        if pdu is None:
            return
        self.server.sim.spawn(self._serve(pdu, addr), "ptl-sim-request")

    async def _serve(self, pdu: ModbusPDU, addr: Any) -> None:
        sim: PtlSimulator = self.server.sim
        unit = pdu.dev_id
        if not await sim.before_reply(unit):
            return  # gone: silence, as on a real bus
        if pdu.function_code not in SUPPORTED:
            response: ModbusPDU = ExceptionResponse(pdu.function_code, EX_ILLEGAL_FUNCTION)
        else:
            response = await pdu.datastore_update(self.server.context, unit)
        code = sim.faults(unit).exception
        if code:
            response = ExceptionResponse(pdu.function_code, code)
        response.transaction_id = pdu.transaction_id
        response.dev_id = unit
        sim.after_reply(unit, pdu.function_code)
        if not self.transport:
            return
        if sim.faults(unit).corrupt and sim.transport == "rtu":
            packet = bytearray(self.framer.buildFrame(response))
            packet[-1] ^= 0x5A  # CRC no longer matches: the driver must count a miss, never a press
            self.send(bytes(packet), addr=addr)
            return
        sim.count_served(unit)
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


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
