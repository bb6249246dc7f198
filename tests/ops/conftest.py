"""Fixtures for the ops tests: a notify socket like systemd's, gateway processes, configs."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker

ROOT = Path(__file__).resolve().parents[2]


class NotifySocket:
    """The receiving end of $NOTIFY_SOCKET: collects every datagram as a list of `KEY=value` lines."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        got = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            got.append(data.decode().split("\n"))
        self.messages += got
        return got

    def count(self, field: str) -> int:
        self.drain()
        return sum(field in m for m in self.messages)

    def wait_for(self, field: str, n: int = 1, timeout: float = 30.0) -> None:
        """Block (sync tests only) until `field` has arrived `n` times in all."""
        deadline = time.monotonic() + timeout
        while self.count(field) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{field} x{n} did not arrive; got {self.messages[-10:]}")
            select.select([self.sock], [], [], min(left, 0.2))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    yield ns
    ns.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def write_config(path: Path, data_dir: Path, mqtt_port: int = 1, extra: str = "") -> Path:
    path.write_text(f'data_dir = "{data_dir}"\n{extra}\n[mqtt]\nport = {mqtt_port}\nreconnect_max_s = 0.2\n'
                    f'[http]\nport = 1\n', encoding="utf-8")
    return path


class GatewayProc:
    """A gateway process (`floorgate run` or the wired reference in tests/ops/gateway_main.py)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()

    def start(self) -> GatewayProc:
        self.proc = subprocess.Popen([sys.executable, "-m", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=self.env)
        self._reader = threading.Thread(target=self._read, name="ops-gateway-reader")
        self._reader.start()
        self.wait_log(lambda r: r.get("msg") == "gateway started", 60)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw.append(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if isinstance(rec, dict):
                    self.lines.append(rec)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.lines:
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                assert self.proc is not None
                if left <= 0 or (self.proc.poll() is not None and not self._reader_alive()):
                    raise AssertionError("log line not seen; output:\n" + "".join(self.raw[-40:]))
                self._cond.wait(min(left, 0.2))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(30)
        if self._reader is not None:
            self._reader.join(30)
            self._reader = None


def wired_gateway(config: Path, env: dict[str, str] | None = None, load: bool = False) -> GatewayProc:
    return GatewayProc(["tests.ops.gateway_main", "--config", str(config), *(["--load"] if load else [])], env)


def floorgate_run(config: Path, env: dict[str, str] | None = None) -> GatewayProc:
    return GatewayProc(["gateway.cli", "run", "--config", str(config)], env)


def app_wires(name: str) -> bool:
    """Whether the lead has wired an ops part into the real `floorgate run` yet."""
    text = (ROOT / "gateway" / "app.py").read_text(encoding="utf-8") + \
        (ROOT / "gateway" / "cli.py").read_text(encoding="utf-8")
    return name in text


def ops_cli(*args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The ops subcommands as a technician runs them (through gateway.ops.cli until the lead wires them)."""
    return subprocess.run([sys.executable, "-m", "gateway.ops.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, input=stdin, check=False)
