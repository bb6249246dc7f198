"""Private Mosquitto brokers for the demo, tests and benches: each on its own free loopback port, started and
stopped by PID, killable (SIGKILL) and restartable on the same port to make real outages."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def available() -> bool:
    return os.path.exists(MOSQUITTO) and os.access(MOSQUITTO, os.X_OK)


def free_port() -> int:
    """A free loopback port for a server started a moment later, chosen below the kernel's ephemeral range. Port
    0 hands out an ephemeral port, which any outgoing connection made in between (a broker client, a Modbus
    link) may take before the server binds it: a test's web server once failed so ("address already in use")."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(64) if low > 10_001 else ():
        port = rng.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


class Broker:
    def __init__(self, workdir: Path, *, port: int | None = None, persistence: bool = False,
                 extra: str = "", tls: dict[str, str] | None = None, password_file: Path | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra = extra
        self.tls = tls
        self.password_file = password_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / f"mosquitto-{self.port}.log"

    def _conf(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user and cannot read the test's files
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}",
                      "require_certificate true", "use_identity_as_username false"]
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines += ["allow_anonymous true"]
        lines += [f"persistence {'true' if self.persistence else 'false'}",
                  f"persistence_location {self.workdir}/", "max_queued_messages 1000000", "max_inflight_messages 0",
                  "max_packet_size 20000000", "log_type error", "log_type warning", "log_dest stderr",
                  "autosave_interval 1", self.extra]
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 20.0) -> Broker:
        conf = self._conf()
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
