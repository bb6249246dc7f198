"""A simulated PTL bus: N nodes running the reference firmware's register logic behind a pymodbus server.

Modbus TCP on a local port, or Modbus RTU over a pseudo-terminal (`PtyLine`): the driver opens
`sim.path` exactly as it would open /dev/ttyUSB0. Keys are pressed from tests (`press`, `adjust`) or the
CLI; faults are injected per unit (gone, slow, exception replies, corrupted CRC on RTU, reboot) or on
the line (noise bytes on RTU). Counters of requests and good replies per unit let tests assert that a
bus kept serving the healthy modules by counting, never by timing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from firmware_stubs.ptl_node.modbus_rtu import reply_pdu
from firmware_stubs.ptl_node.registers import Node

from .line import PtyLine
from .server import SimSerialServer, SimTcpServer, wait_listening


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class _Monotonic:
    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(slots=True)
class Faults:
    gone: bool = False  # no reply at all
    delay_s: float = 0.0  # reply this late
    exception: int = 0  # reply with this Modbus exception code instead
    corrupt: bool = False  # RTU: reply with a broken CRC


KEYS = ("confirm", "shortage", "up", "down")


class PtlSimulator:
    def __init__(
        self,
        units: Iterable[int] = range(1, 33),
        *,
        transport: Literal["tcp", "rtu"] = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        baudrate: int = 115200,
        clock: MonotonicClock | None = None,
        tick_ms: int = 20,
    ) -> None:
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"transport {transport!r}: expected 'tcp' or 'rtu'")
        self.transport = transport
        self.host = host
        self.port = port
        self.baudrate = baudrate
        self.path = ""  # RTU: the pty the driver opens
        self.clock: MonotonicClock = clock or _Monotonic()
        self.tick_ms = tick_ms
        self._t0 = self.clock.monotonic()
        self.nodes: list[Node] = []
        for u in units:
            self.add_module(u)
        self._faults: dict[int, Faults] = {}
        self._hooks: dict[tuple[int, int], list[Callable[[], object]]] = {}
        self.requests: Counter[int] = Counter()
        self.served: Counter[int] = Counter()
        self.presses: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: SimTcpServer | SimSerialServer | None = None
        self._line: PtyLine | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ---- modules -------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int((self.clock.monotonic() - self._t0) * 1000)

    def add_module(self, unit: int, **identity: Any) -> Node:
        if self.node_for(unit) is not None:
            raise ValueError(f"unit {unit} already on this simulated bus")
        identity.setdefault("serial", f"SIM-{len(self.nodes) + 1:06d}")
        node = Node(unit_id=unit, baud=self.baudrate, now_ms=self.now_ms(), **identity)
        self.nodes.append(node)
        return node

    def remove_module(self, unit: int) -> None:
        self.nodes.remove(self.module(unit))

    def node_for(self, unit: int) -> Node | None:
        for n in self.nodes:
            if n.unit_id == unit:
                return n
        return None

    def module(self, unit: int) -> Node:
        """The firmware state of one node (mode, quantity, colour, pattern, token, counter, ...)."""
        node = self.node_for(unit)
        if node is None:
            raise KeyError(f"no simulated module at unit {unit} (units: {self.units()})")
        return node

    def units(self) -> list[int]:
        return sorted(n.unit_id for n in self.nodes)

    def tick(self) -> None:
        now = self.now_ms()
        for n in self.nodes:
            n.tick(now)

    # ---- keys ------------------------------------------------------------------------------------------

    def press(self, unit: int, key: str = "confirm") -> bool:
        """Press a key; False when the node ignores it (no job shown, keys locked)."""
        if key not in KEYS:
            raise ValueError(f"key {key!r}: expected one of {', '.join(KEYS)}")
        ok = self.module(unit).press(key, self.now_ms())
        if ok and key in ("confirm", "shortage"):
            self.presses[unit] += 1
        return ok

    def adjust(self, unit: int, delta: int) -> bool:
        return self.module(unit).adjust(delta, self.now_ms())

    # ---- faults ----------------------------------------------------------------------------------------

    def faults(self, unit: int) -> Faults:
        return self._faults.setdefault(unit, Faults())

    def set_gone(self, unit: int, gone: bool = True) -> None:
        self.faults(unit).gone = gone

    def set_delay(self, unit: int, seconds: float) -> None:
        self.faults(unit).delay_s = max(0.0, seconds)

    def set_exception(self, unit: int, code: int = 4) -> None:
        self.faults(unit).exception = code

    def set_corrupt(self, unit: int, corrupt: bool = True) -> None:
        if self.transport != "rtu":
            raise ValueError("CRC corruption exists on RTU only; use set_exception on TCP")
        self.faults(unit).corrupt = corrupt

    def set_fault_bit(self, unit: int, on: bool = True) -> None:
        self.module(unit).fault = on

    def reboot(self, unit: int) -> None:
        """Power cycle: the node forgets its job, sets the power-up bit, applies its stored comm block."""
        self.module(unit).reboot(self.now_ms())

    def inject_noise(self, data: bytes | None = None) -> None:
        """Bytes on the RTU line toward the driver, between frames (default: 24 random bytes)."""
        if self._line is None:
            raise ValueError("line noise exists on a running RTU simulator only")
        self._line.inject(os.urandom(24) if data is None else data)

    def after_read(self, unit: int, fn: Callable[[], object], function_code: int = 4) -> None:
        """Run `fn` once, after the node has computed its reply to the next request with this function
        code and before the reply is sent: e.g. a key pressed while the driver is reading."""
        self._hooks.setdefault((unit, function_code), []).append(fn)

    # ---- called by the server -------------------------------------------------------------------------

    async def before_reply(self, unit: int) -> bool:
        self.requests[unit] += 1
        self.tick()
        f = self._faults.get(unit)
        if self.node_for(unit) is None or (f is not None and f.gone):
            return False
        if f is not None and f.delay_s:
            await asyncio.sleep(f.delay_s)
        return True

    def broadcast(self, request: bytes) -> None:
        """Unit 0: every node that is present (not `gone`) applies the request, as every module on a line
        hears it; nobody replies, and a refused write is refused silently by each node on its own."""
        self.requests[0] += 1
        self.tick()
        now = self.now_ms()
        for node in list(self.nodes):
            f = self._faults.get(node.unit_id)
            if f is None or not f.gone:
                reply_pdu(node, request, True, now)

    def after_reply(self, unit: int, function_code: int) -> None:
        for fn in self._hooks.pop((unit, function_code), []):
            fn()

    def count_served(self, unit: int) -> None:
        self.served[unit] += 1

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport == "tcp":
            server: SimTcpServer | SimSerialServer = SimTcpServer(self, self.host, self.port)
            await server.serve_forever(background=True)
            await wait_listening(server)
            listener = cast(asyncio.Server, server.transport)
            self.port = int(listener.sockets[0].getsockname()[1])
        else:
            self._line = PtyLine()
            self._line.start()
            self.path = self._line.driver_path
            server = SimSerialServer(self, self._line.device_path, self.baudrate)
            await server.serve_forever(background=True)
            await wait_listening(server)
        self._server = server
        self._ticker = asyncio.create_task(self._tick_loop(), name="ptl-sim-tick")

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_ms / 1000)
            self.tick()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        await asyncio.sleep(0)  # let the transports finish closing
        if self._line is not None:
            self._line.close()
            self._line = None

    async def __aenter__(self) -> PtlSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
