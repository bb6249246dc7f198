"""Label printers on the raw TCP port (9100, "JetDirect"/"raw" printing), as Zebra, Honeywell, SATO and
TSC network printers take jobs: connect, send the job's bytes, close. The printer starts the job when the
connection closes (or as soon as it has parsed a complete format), so one connection is one job.

Everything is asyncio with deadlines: a printer that is off, unreachable, or stops reading (out of paper
with a full buffer) costs the caller a typed error after the timeout, never a stalled loop. Jobs to one
printer go one at a time, since many printers accept a single connection and would refuse or interleave
a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class PrinterError(Exception):
    """The job was not (completely) delivered. Whether a partial job printed is unknown."""

    def __init__(self, message: str, host: str = "", port: int = 0) -> None:
        super().__init__(message)
        self.message, self.host, self.port = message, host, port


class PrinterRefused(PrinterError):
    """Nothing listens on the port: the printer is booting, or raw printing is disabled on it."""


class PrinterTimeout(PrinterError):
    """The printer did not accept the connection, or stopped taking bytes, within the timeout."""


class PrinterUnreachable(PrinterError):
    """No route to the printer, or its name does not resolve: wrong address, or the network is down."""


class RawTcpPrinter:
    def __init__(self, host: str, port: int = 9100, *, connect_timeout_s: float = 5.0,
                 send_timeout_s: float = 15.0) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"printer port must be 1-65535, not {port}")
        self.host, self.port = host, port
        self.connect_timeout_s, self.send_timeout_s = connect_timeout_s, send_timeout_s
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, job: bytes) -> None:
        """Deliver one job; returns when the bytes are handed to the kernel and the connection is closed."""
        if not job:
            raise ValueError("empty print job")
        async with self._lock:
            writer = await self._connect()
            delivered = False
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    writer.write(job)
                    await writer.drain()
                    if writer.can_write_eof():
                        writer.write_eof()
                    writer.close()
                    await writer.wait_closed()
                delivered = True
            except TimeoutError:
                raise PrinterTimeout(
                    f"printer {self.where} stopped taking data for {self.send_timeout_s} s (out of paper or "
                    "labels, head open, or busy?)", self.host, self.port) from None
            except OSError as e:
                raise PrinterError(f"printer {self.where} dropped the connection while receiving the job: "
                                   f"{e.strerror or e}", self.host, self.port) from None
            finally:
                if not delivered:
                    writer.transport.abort()  # a plain close would wait for the printer to take the rest

    async def probe(self) -> None:
        """Connect and close: raises the same typed errors as `send`, for the doctor and the status page."""
        async with self._lock:
            writer = await self._connect()
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self.connect_timeout_s):
                    await writer.wait_closed()

    async def _connect(self) -> asyncio.StreamWriter:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise PrinterTimeout(f"printer {self.where} did not accept a connection within "
                                 f"{self.connect_timeout_s} s (switched off, or a firewall drops it?)",
                                 self.host, self.port) from None
        except ConnectionRefusedError:
            raise PrinterRefused(f"printer {self.where} refused the connection (booting, or raw port "
                                 f"{self.port} disabled?)", self.host, self.port) from None
        except socket.gaierror as e:
            raise PrinterUnreachable(f"printer host {self.host!r} does not resolve: {e.strerror}",
                                     self.host, self.port) from None
        except OSError as e:
            raise PrinterUnreachable(f"printer {self.where} is unreachable: {e.strerror or e}",
                                     self.host, self.port) from None
        return writer


async def print_raw(host: str, port: int, job: bytes, *, connect_timeout_s: float = 5.0,
                    send_timeout_s: float = 15.0) -> None:
    """One job to one printer, without keeping a client around."""
    await RawTcpPrinter(host, port, connect_timeout_s=connect_timeout_s, send_timeout_s=send_timeout_s).send(job)
