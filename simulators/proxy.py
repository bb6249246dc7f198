"""A TCP proxy under a test's control, to make network partitions between two real programs (the gateway
and its MQTT broker) without touching the kernel's firewall.

Modes, switched at any moment with `set_mode`:
- `pass`: bytes flow both ways as they come.
- `drop`: every open connection is closed at once and new ones are closed as soon as they arrive (a
  router that resets connections, a broker host that rebooted).
- `blackhole`: new connections are accepted and whatever they send is swallowed, nothing ever answers (a
  firewall that drops packets, a dead link with the ARP entry still cached); open connections stall, as
  TCP would while it retransmits, and carry on with what they held if the partition heals before either
  end gives up.
- `slow`: every chunk waits `delay_s` before it is passed on, in order (a saturated uplink).

Counters (`accepted`, `closed_by_drop`, `bytes_up`, `bytes_down`) let a test assert that a fault really
happened, by counting, never by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("floorgate.proxy")

Mode = Literal["pass", "drop", "blackhole", "slow"]
MODES: tuple[Mode, ...] = ("pass", "drop", "blackhole", "slow")
CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One client connection and, unless it was swallowed, its connection to the upstream server."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def close(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0,
                 delay_s: float = 0.2) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self._port = port
        self.delay_s = delay_s
        self.mode: Mode = "pass"
        self.accepted = 0
        self.swallowed = 0  # connections accepted in blackhole mode, never forwarded
        self.closed_by_drop = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port clients connect to (known once started, when 0 was asked for)."""
        return self._port

    # -- control ----------------------------------------------------------------------------------------------

    def set_mode(self, mode: Mode, delay_s: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"proxy mode {mode!r}: expected one of {', '.join(MODES)}")
        if delay_s is not None:
            if delay_s < 0:
                raise ValueError(f"delay_s must be >= 0, not {delay_s}")
            self.delay_s = delay_s
        self.mode = mode
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "drop":
            for link in list(self._links):
                self.closed_by_drop += 1
                self._end(link)
        log.info("proxy mode", extra={"fields": {"mode": mode, "port": self._port, "links": len(self._links)}})

    @property
    def connections(self) -> int:
        """Connections open right now (swallowed ones included)."""
        return len(self._links)

    # -- life cycle -------------------------------------------------------------------------------------------

    async def start(self) -> TcpProxy:
        if self._server is not None:
            raise RuntimeError("the proxy is already running")
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = [t for link in self._links for t in link.tasks]
        for link in list(self._links):
            self._end(link)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the connections --------------------------------------------------------------------------------------

    def _end(self, link: _Link) -> None:
        link.close()
        self._links.discard(link)
        current = asyncio.current_task()
        for t in link.tasks:
            if t is not current:
                t.cancel()

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The server's callback only sets a connection up; its pumps are the proxy's own tasks (asyncio logs a
        cancelled callback task as an error, and a partition must be able to cancel everything)."""
        self.accepted += 1
        link = _Link(writer)
        if self.mode == "drop":
            self.closed_by_drop += 1
            link.close()
            return
        self._links.add(link)
        if self.mode == "blackhole":
            self.swallowed += 1
            self._spawn(link, self._swallow(link, reader), "proxy-swallow")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            self._end(link)  # nothing listens upstream: the client sees its connection closed, as with a dead host
            return
        link.upstream = up_writer
        if link not in self._links:  # dropped while connecting upstream
            link.close()
            return
        self._spawn(link, self._pump(link, reader, up_writer, up=True), "proxy-up")
        self._spawn(link, self._pump(link, up_reader, writer, up=False), "proxy-down")

    async def _swallow(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(CHUNK):
                pass
        except OSError:
            pass
        finally:
            self._end(link)

    async def _pump(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, up: bool) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # a blackhole holds what it has, as TCP's retransmissions would
                if self.mode == "slow" and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._end(link)
