"""A raw-port (9100) label printer that keeps every job: the bytes, and a parsed view of its ZPL fields.

One connection is one job, as on a real printer: the job is stored when the sender closes (or half-closes)
its side. With `directory`, each job is also written to `job-000001.zpl`, ... (small synchronous writes:
this is a test and demo tool). `stall = True` makes it stop reading, as a printer out of labels does,
and `recv_buffer` shrinks the socket buffer so a stalled printer pushes back on the sender quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simulators.printer.zpl import ZplLabel, parse_zpl


@dataclass(frozen=True)
class PrintJob:
    number: int
    data: bytes
    peer: str
    labels: list[ZplLabel] = field(default_factory=list)
    path: Path | None = None
    truncated: bool = False


class PrinterSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, directory: str | Path | None = None, *,
                 recv_buffer: int | None = None, max_job_bytes: int = 16 * 1024 * 1024,
                 on_job: Callable[[PrintJob], None] | None = None) -> None:
        self.host, self._port = host, port
        self.directory = Path(directory) if directory is not None else None
        self.recv_buffer = recv_buffer
        self.max_job_bytes = max_job_bytes
        self.on_job = on_job
        self.jobs: list[PrintJob] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose when created with port 0)."""
        return self._port

    @property
    def stall(self) -> bool:
        return not self._running.is_set()

    @stall.setter
    def stall(self, value: bool) -> None:
        if value:
            self._running.clear()
        else:
            self._running.set()

    async def start(self) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.recv_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
            sock.bind((self.host, self._port))
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_server(self._handle, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for t in list(self._handlers):
            t.cancel()
        for t in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> PrinterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_for_jobs(self, count: int, timeout_s: float = 10.0) -> list[PrintJob]:
        """Wait until at least `count` jobs are stored; TimeoutError names how many came."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.jobs) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"printer simulator got {len(self.jobs)} job(s), expected {count}") from None
        return self.jobs[:count]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        data = bytearray()
        truncated = False
        try:
            while True:
                await self._running.wait()
                chunk = await reader.read(65536)
                if not chunk:
                    break
                room = self.max_job_bytes - len(data)
                data += chunk[:room]
                if len(chunk) > room:
                    truncated = True
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self._handlers.discard(task)
            if truncated:
                writer.transport.abort()
            else:
                writer.close()
        if data:
            self._store(bytes(data), peer, truncated)

    def _store(self, data: bytes, peer: str, truncated: bool) -> None:
        number = len(self.jobs) + 1
        path = None
        if self.directory is not None:
            path = self.directory / f"job-{number:06d}.zpl"
            path.write_bytes(data)
        job = PrintJob(number, data, peer, parse_zpl(data), path, truncated)
        self.jobs.append(job)
        self._changed.set()
        if self.on_job is not None:
            self.on_job(job)
