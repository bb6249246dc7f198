"""systemd integration without libsystemd: `sd_notify` datagrams and a watchdog that means something.

The watchdog ping is the gateway's proof of life, so it is sent only after the gateway has shown it can
still do its one essential job: the event loop runs this coroutine, and the journal writer is alive and
commits a barrier within a bound. A hung SQLite write, a dead writer task or a blocked loop stops the pings
and systemd restarts the process (WatchdogSec=). Anything the gateway survives on its own (an MQTT outage,
a missing scanner, a full disk that only refuses new work) must never stop them: a restart would not help.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

from gateway.clock import Clock
from gateway.journal import Journal, JournalError

log = logging.getLogger("floorgate.systemd")


def notify_address(env: Mapping[str, str] | None = None) -> str | None:
    """The socket systemd listens on for this service, as a path or an abstract name ('\\0...')."""
    addr = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    return None  # unset, or a transport we do not speak (vsock:)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of WatchdogSec (as systemd recommends), or None when no watchdog is set for this process."""
    e = os.environ if env is None else env
    usec = e.get("WATCHDOG_USEC", "")
    pid = e.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (we were started by a wrapper)
    return int(usec) / 2e6


class Notifier:
    """One datagram socket to $NOTIFY_SOCKET; sending never blocks and never raises."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.address = notify_address(env)
        self._sock: socket.socket | None = None
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("cannot notify systemd", extra={"fields": {"error": str(e), "failures": self.failed}})
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def sd_notify(*fields: str, env: Mapping[str, str] | None = None) -> bool:
    """One-shot notify (e.g. `sd_notify("READY=1")`); False when not run by systemd or on any error."""
    n = Notifier(env)
    try:
        return n.send(*fields)
    finally:
        n.close()


def _writer_alive(journal: Journal) -> bool:
    return journal.writer_alive


class SystemdNotifier:
    """A part: READY=1 once up, WATCHDOG=1 every WatchdogSec/2 while healthy, STOPPING=1 on shutdown.

    `ready` (optional) is awaited before READY=1, e.g. the App's `ready` event; without it READY=1 goes out
    as soon as this part runs, which the App does only after the journal is open.
    """

    name = "systemd-notify"

    def __init__(self, journal: Journal, clock: Clock, *, env: Mapping[str, str] | None = None,
                 ready: asyncio.Event | None = None, interval_s: float | None = None,
                 barrier_timeout_s: float | None = None) -> None:
        self.journal = journal
        self.clock = clock
        self.notifier = Notifier(env)
        self.ready = ready
        self.interval_s = interval_s if interval_s is not None else watchdog_interval(env)
        # Half an interval: a barrier slower than that means the next ping would be late anyway.
        self.barrier_timeout_s = barrier_timeout_s if barrier_timeout_s is not None else (
            max(self.interval_s / 2, 0.05) if self.interval_s else 5.0)
        self.pings = 0
        self.skipped = 0
        self.problem = ""
        self._stopping = False

    async def healthy(self) -> str:
        """'' when healthy, else what is wrong (and so why no ping was sent)."""
        if not _writer_alive(self.journal):
            return "the journal writer is not running"
        try:
            async with asyncio.timeout(self.barrier_timeout_s):
                await self.journal.barrier()
        except TimeoutError:
            return f"the journal did not commit a barrier within {self.barrier_timeout_s:.1f} s"
        except JournalError as e:
            return f"the journal is unavailable: {e}"
        return ""

    async def run(self) -> None:
        if not self.notifier.enabled:
            log.debug("not started by systemd (no NOTIFY_SOCKET): no readiness or watchdog notifications")
            return
        try:
            if self.ready is not None:
                await self.ready.wait()
            self.notifier.send("READY=1", f"STATUS=running, journal {self.journal.journal_id}, "
                                          f"last seq {self.journal.last_seq}")
            log.info("told systemd the gateway is ready",
                     extra={"fields": {"watchdog_s": self.interval_s * 2 if self.interval_s else None}})
            if self.interval_s:
                await self._watchdog(self.interval_s)
            else:
                await asyncio.Event().wait()  # nothing more to send until shutdown
        finally:
            self._send_stopping()
            self.notifier.close()

    async def _watchdog(self, interval: float) -> None:
        while True:
            started = self.clock.monotonic()
            problem = await self.healthy()
            if self._stopping:
                return
            if problem:
                self.skipped += 1
                if problem != self.problem:
                    log.error("not feeding the systemd watchdog: %s", problem)
                self.problem = problem
            else:
                if self.problem:
                    log.warning("journal healthy again; feeding the systemd watchdog",
                                extra={"fields": {"skipped": self.skipped}})
                self.problem = ""
                self.pings += 1
                self.notifier.send("WATCHDOG=1", f"STATUS=running, last seq {self.journal.last_seq}")
            spent = self.clock.monotonic() - started
            await asyncio.sleep(max(interval - spent, 0.0) if not problem else min(interval, 1.0))

    def reloading(self) -> None:
        """Call when a SIGHUP reload starts; `reloaded()` when done (systemctl shows the reload meanwhile)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def reloaded(self) -> None:
        self.notifier.send("READY=1", "STATUS=running (reloaded)")

    def _send_stopping(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.notifier.send("STOPPING=1", "STATUS=stopping")

    async def shutdown(self) -> None:
        self._send_stopping()
