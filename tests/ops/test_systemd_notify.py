"""sd_notify and the watchdog: READY once up, WATCHDOG only while the journal commits, never stopped by an
MQTT outage, STOPPING on the way out. Received on a real notify socket, as systemd would."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiosqlite
import pytest

from gateway.clock import SystemClock
from gateway.config import Config
from gateway.journal import Journal
from gateway.ops.systemd import Notifier, SystemdNotifier, notify_address, sd_notify, watchdog_interval
from tests.brokers import Broker
from tests.ops.conftest import NotifySocket, app_wires, floorgate_run, wired_gateway, write_config


def test_sd_notify_to_a_path_socket(notify_socket: NotifySocket) -> None:
    assert sd_notify("READY=1", "STATUS=hello", env={"NOTIFY_SOCKET": notify_socket.env_value})
    notify_socket.wait_for("READY=1")
    assert notify_socket.messages == [["READY=1", "STATUS=hello"]]


def test_sd_notify_to_an_abstract_socket() -> None:
    name = f"@floorgate-test-{os.getpid()}-{id(object())}"
    ns = NotifySocket(name)
    try:
        assert sd_notify("WATCHDOG=1", env={"NOTIFY_SOCKET": name})
        ns.wait_for("WATCHDOG=1")
    finally:
        ns.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert notify_address({}) is None
    assert not sd_notify("READY=1", env={})
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    # A socket path nobody listens on: a failed send is counted, never raised.
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert not n.send("READY=1")
    assert n.failed == 1
    n.close()


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


async def _recv_until(sock: socket.socket, field: str, seen: list[list[str]], timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while not any(field in m for m in seen):
            data = await loop.sock_recv(sock, 4096)
            seen.append(data.decode().split("\n"))


async def test_watchdog_stops_while_the_journal_writer_hangs_and_resumes(cfg: Config, tmp_path: Path) -> None:
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=SystemClock())
    ns = NotifySocket(str(tmp_path / "n.sock"))
    env = {"NOTIFY_SOCKET": ns.env_value, "WATCHDOG_USEC": "100000"}  # pings every 50 ms
    part = SystemdNotifier(journal, SystemClock(), env=env)
    task = asyncio.create_task(part.run(), name="notifier-under-test")
    seen: list[list[str]] = []
    hang = asyncio.Event()
    release = asyncio.Event()
    stuck: asyncio.Task[None] | None = None
    try:
        await _recv_until(ns.sock, "READY=1", seen)
        await _recv_until(ns.sock, "WATCHDOG=1", seen)

        async def hung_write(db: aiosqlite.Connection) -> None:  # a write that never returns
            hang.set()
            await release.wait()

        stuck = asyncio.create_task(journal.run_job(hung_write), name="hung-write")
        await hang.wait()
        skipped = part.skipped
        while part.skipped < skipped + 1:  # the notifier has noticed (a ping may have been on its way)
            await asyncio.sleep(0.01)
        ns.drain()
        ns.messages.clear()
        while part.skipped < skipped + 4:
            await asyncio.sleep(0.01)
        assert ns.count("WATCHDOG=1") == 0, "pinged while the journal could not commit"
        assert "barrier" in part.problem

        release.set()
        await stuck
        seen.clear()
        await _recv_until(ns.sock, "WATCHDOG=1", seen)  # healthy again: pings resume
        assert part.problem == ""
        await part.shutdown()
        await _recv_until(ns.sock, "STOPPING=1", seen)
    finally:
        release.set()
        if stuck is not None:
            await stuck
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await journal.close()
        ns.close()


async def test_no_watchdog_once_the_journal_writer_is_gone(cfg: Config, tmp_path: Path) -> None:
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=SystemClock())
    part = SystemdNotifier(journal, SystemClock(), env={}, interval_s=0.05)
    assert await part.healthy() == ""
    await journal.close()
    assert "not running" in await part.healthy()


async def test_without_notify_socket_the_part_just_ends(cfg: Config) -> None:
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=SystemClock())
    try:
        part = SystemdNotifier(journal, SystemClock(), env={})
        async with asyncio.timeout(10):
            await part.run()
        assert part.pings == 0
    finally:
        await journal.close()


def _gateway_under_systemd(proc_factory: object, tmp_path: Path, broker: Broker, ns: NotifySocket) -> None:
    cfg = write_config(tmp_path / "floorgate.toml", tmp_path / "data", broker.port)
    env = {"NOTIFY_SOCKET": ns.env_value, "WATCHDOG_USEC": "400000"}  # WatchdogSec=0.4 s: pings every 0.2 s
    gw = proc_factory(cfg, env)  # type: ignore[operator]
    gw.start()
    try:
        ns.wait_for("READY=1")
        gw.wait_log(lambda r: r.get("msg") == "connected to broker")
        ns.wait_for("WATCHDOG=1", 2)
        broker.kill()
        gw.wait_log(lambda r: r.get("msg") == "disconnected from broker")
        before = ns.count("WATCHDOG=1")
        # The uplink is down (and the gateway keeps retrying it): the pings must go on.
        ns.wait_for("WATCHDOG=1", before + 5)
        gw.wait_log(lambda r: "cannot reach broker" in str(r.get("msg")))
        ns.wait_for("WATCHDOG=1", ns.count("WATCHDOG=1") + 3)
        assert gw.terminate() == 0
        ns.wait_for("STOPPING=1")
        assert ns.messages[0][0] == "READY=1"
    finally:
        gw.close()


def test_gateway_process_keeps_pinging_while_the_broker_is_down(tmp_path: Path, broker: Broker,
                                                               notify_socket: NotifySocket) -> None:
    """The reference wiring (tests/ops/gateway_main.py), independent of app.py."""
    _gateway_under_systemd(wired_gateway, tmp_path, broker, notify_socket)


@pytest.mark.skipif(not app_wires("SystemdNotifier"), reason="SystemdNotifier is not wired into App yet")
def test_floorgate_run_keeps_pinging_while_the_broker_is_down(tmp_path: Path, broker: Broker,
                                                            notify_socket: NotifySocket) -> None:
    _gateway_under_systemd(floorgate_run, tmp_path, broker, notify_socket)
