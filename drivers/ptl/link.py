"""One Modbus transaction at a time over pymodbus 3.16, with every failure turned into a typed miss.

pymodbus is used for framing, CRC and the transport, but not for its policies, which do not suit a
light bus (read from the 3.16 source, transaction/transaction.py and transport/transport.py):
- `retries` (default 3) repeats a silent request, so one dead module stalls the bus for 4 x timeout.
  We pass retries=0 and let the scheduler decide what to retry and when.
- after `retries + 3` silent requests in a row, on any unit, the TCP connection is closed. One dead
  module among live ones would tear down the link for all of them, so the limit is raised out of reach
  (`set_max_no_responses`).
- the automatic reconnect (reconnect_delay) runs in a background task with its own timing; we set it to
  0 and reconnect from the bus loop with our own backoff, so link state is known in one place.
- the reply is not checked against the request's function code (a late reply to an earlier request can
  be taken for the current one), so we check it here; a late FC04 never passes for an FC06 reply.
- a reply with a broken CRC is dropped by the RTU framer in silence (a debug line), and the request then
  times out like one nobody answered. A garbled reply is what two modules at one address, noise or a bad A/B
  pair look like, and a technician told "no reply" looks for an unpowered module. The framer's `decode` is
  wrapped to count the frames it drops (`_count_garbled`), and a timeout after one is a `BadReply`.
- the timeout is one figure for every request, but on RTU a reply takes its length in wire time: the
  identity block (113 bytes) takes 118 ms at 9600 baud, so with `timeout_ms = 100` it could never be read
  while polls worked. Each request's timeout is `timeout_ms` plus the wire time of the request and its reply
  at the bus's rate (`_wire_s`), set on the transaction manager before the request (one at a time).
- every silence is logged at ERROR, which would flood the log with one line per probe of an unplugged
  module; those expected messages are filtered from the "pymodbus.logging" logger (health changes are
  logged once each by the bus).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from .errors import BadReply, ExceptionReply, LinkDown, NoResponse
from .model import BusSettings

_EXPECTED_PYMODBUS_NOISE = (
    "No response received",
    "ERROR: request ask for",
    "ERROR: received pdu without a corresponding request",
    "ERROR: request uses",
    "Unable to decode",
    "Failed to connect",
    "Not connected, trying to connect",
    "Repeating....",
    "requested device id does not exist",
    "Cancel send, because not connected",
)


class _QuietExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(msg.startswith(p) for p in _EXPECTED_PYMODBUS_NOISE)


_quiet_installed = False


def quiet_pymodbus_noise() -> None:
    """Drop pymodbus's per-miss log lines; idempotent."""
    global _quiet_installed
    if not _quiet_installed:
        logging.getLogger("pymodbus.logging").addFilter(_QuietExpected())
        _quiet_installed = True


class ModbusLink:
    """The transport of one bus; not safe for concurrent use (the bus loop is its only caller)."""

    def __init__(self, settings: BusSettings) -> None:
        quiet_pymodbus_noise()
        self.settings = settings
        self.bus_id = settings.id
        self.timeout_s = settings.timeout_ms / 1000
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        # After a silence on RTU a late reply may still be on the wire; let it land (and be dropped as
        # unexpected) before the next request, so it cannot be taken for that request's reply.
        self.settle_s = 0.005 if settings.transport == "rtu" else 0.0
        self.garbled = 0  # RTU frames dropped for a CRC error, since the start
        # RTU: seconds per character on the wire (start bit, 8 data bits, parity, stop bits)
        self.char_s = ((10 + (settings.parity != "N") + (settings.stopbits - 1)) / settings.baudrate
                       if settings.transport == "rtu" else 0.0)

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        s = self.settings
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if s.transport == "tcp":
            client = AsyncModbusTcpClient(
                s.host, port=int(s.port), framer=FramerType.SOCKET, name=f"ptl-{s.id}",
                timeout=self.timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0)
        else:
            client = AsyncModbusSerialClient(
                str(s.port), framer=FramerType.RTU, baudrate=s.baudrate, parity=s.parity,
                stopbits=s.stopbits, bytesize=8, name=f"ptl-{s.id}",
                timeout=self.timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0)
        client.set_max_no_responses(1 << 30)
        if s.transport == "rtu":
            self._count_garbled(client)
        return client

    def _count_garbled(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
        """Count the frames the RTU framer drops for a CRC error. In pymodbus 3.16 `FramerRTU.decode` returns
        bytes used with an empty frame only then (framer/rtu.py); where that changes, nothing is counted and a
        garbled reply stays a silence, as before."""
        framer = getattr(getattr(client, "ctx", None), "framer", None)
        decode = getattr(framer, "decode", None)
        if framer is None or decode is None:
            return

        def counted(data: bytes) -> tuple[int, int, int, bytes]:
            used, dev_id, tid, frame = decode(data)
            if used and not frame:
                self.garbled += 1
            return used, dev_id, tid, frame
        framer.decode = counted

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open the TCP connection or serial port; LinkDown with the reason if that fails."""
        self.close()
        client = self._make_client()
        try:
            ok = await client.connect()
        except Exception as e:  # pyserial raises its own errors for a missing device
            client.close()
            raise LinkDown(f"bus {self.bus_id}: cannot open {self._where()}: {e}") from e
        if not ok:
            client.close()
            raise LinkDown(f"bus {self.bus_id}: cannot open {self._where()}"
                           + (" (is the simulator or PTL gateway running, and the port right?)"
                              if self.settings.transport == "tcp" else " (is the adapter plugged in?)"))
        if self.settings.transport == "rtu":
            # The serial transport opens in a loop callback: wait until it is really there.
            for _ in range(100):
                if client.connected:
                    break
                await asyncio.sleep(0.001)
        self._client = client

    def _where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port}" if s.transport == "tcp" else f"{s.port} at {s.baudrate} baud"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _wire_s(self, request_bytes: int, reply_bytes: int) -> float:
        """The wire time of a request and its reply (RTU, with the 3.5-character gap after each); 0 on TCP."""
        return (request_bytes + reply_bytes + 7) * self.char_s

    async def _call(self, unit: int, fc: int, make: Callable[[Any], Awaitable[Any]], request_bytes: int = 8,
                    reply_bytes: int = 8) -> Any:
        client = self._client
        if client is None or not client.connected:
            raise LinkDown(f"bus {self.bus_id}: not connected to {self._where()}")
        garbled = self.garbled
        timeout_s = self.timeout_s + self._wire_s(request_bytes, reply_bytes)
        params = getattr(getattr(client, "ctx", None), "comm_params", None)
        if params is not None and self.char_s:
            params.timeout_connect = timeout_s
        try:
            # pymodbus times out by itself after timeout_s; this outer limit only guards against a hang
            # (asyncio.timeout rather than wait_for: no extra task per transaction).
            async with asyncio.timeout(timeout_s * 4 + 1.0):
                reply = await make(client)
        except ConnectionException as e:
            raise LinkDown(f"bus {self.bus_id}: link lost: {e}") from e
        except TimeoutError:
            await self._settle()
            raise NoResponse(self.bus_id, unit, "no reply (driver safety limit)") from None
        except ModbusIOException as e:
            if not self.connected:
                raise LinkDown(f"bus {self.bus_id}: link lost while waiting for unit {unit}") from e
            text = str(e)
            if "No response" in text:
                await self._settle()
                if self.garbled != garbled:
                    raise BadReply(self.bus_id, unit, "garbled reply (CRC error): two modules at this address, "
                                                      "noise on the line, a bad A/B pair or a wrong parity") from None
                raise NoResponse(self.bus_id, unit, f"no reply within {timeout_s * 1000:.0f} ms") from None
            raise BadReply(self.bus_id, unit, f"unusable reply: {text}") from None
        except ModbusException as e:
            raise BadReply(self.bus_id, unit, f"unusable reply: {e}") from None
        if reply is None:
            raise NoResponse(self.bus_id, unit, "no reply")
        if reply.isError():
            raise ExceptionReply(self.bus_id, unit, fc, int(getattr(reply, "exception_code", 0)))
        if reply.function_code != fc:
            raise BadReply(self.bus_id, unit, f"reply with function {reply.function_code} to function {fc}")
        if getattr(reply, "dev_id", unit) not in (unit, 0):
            raise BadReply(self.bus_id, unit, f"reply from unit {reply.dev_id}")
        return reply

    async def _settle(self) -> None:
        if self.settle_s:
            await asyncio.sleep(self.settle_s)

    async def read_input(self, unit: int, address: int, count: int) -> list[int]:
        r = await self._call(unit, 4, lambda c: c.read_input_registers(address, count=count, device_id=unit),
                             reply_bytes=5 + 2 * count)
        return self._registers(unit, r, count)

    async def read_holding(self, unit: int, address: int, count: int) -> list[int]:
        r = await self._call(unit, 3, lambda c: c.read_holding_registers(address, count=count, device_id=unit),
                             reply_bytes=5 + 2 * count)
        return self._registers(unit, r, count)

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        r = await self._call(unit, 16, lambda c: c.write_registers(address, values, device_id=unit),
                             request_bytes=9 + 2 * len(values))
        if getattr(r, "address", address) != address:
            raise BadReply(self.bus_id, unit, f"FC16 reply for address {r.address}, sent {address}")

    async def write_register(self, unit: int, address: int, value: int) -> None:
        r = await self._call(unit, 6, lambda c: c.write_register(address, value, device_id=unit))
        if getattr(r, "address", address) != address:
            raise BadReply(self.bus_id, unit, f"FC06 reply for address {r.address}, sent {address}")

    async def read_coils(self, unit: int, address: int, count: int) -> list[bool]:
        r = await self._call(unit, 1, lambda c: c.read_coils(address, count=count, device_id=unit),
                             reply_bytes=5 + (count + 7) // 8)
        bits = list(r.bits)
        if len(bits) < count:
            raise BadReply(self.bus_id, unit, f"{len(bits)} coils in reply, asked for {count}")
        return [bool(b) for b in bits[:count]]

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        await self._call(unit, 5, lambda c: c.write_coil(address, value, device_id=unit))

    def _registers(self, unit: int, reply: Any, count: int) -> list[int]:
        regs = list(getattr(reply, "registers", []))
        if len(regs) != count:
            raise BadReply(self.bus_id, unit, f"{len(regs)} registers in reply, asked for {count}")
        return [int(r) for r in regs]
