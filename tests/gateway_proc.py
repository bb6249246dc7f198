"""A gateway in its own process (`floorgate run`), for tests that SIGKILL it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, data_dir: Path, mqtt_port: int, extra: str = "") -> Path:
    from tests.brokers import free_port

    path.write_text(f'data_dir = "{data_dir}"\n{extra}\n[mqtt]\nport = {mqtt_port}\n'
                    f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n', encoding="utf-8")
    return path


class GatewayProcess:
    def __init__(self, config: Path, args: list[str] | None = None, command: list[str] | None = None) -> None:
        self.config = config
        self.args = args or ["run", "--config", str(config)]
        self.command = command or [sys.executable, "-m", "gateway.cli"]  # or the installed `floorgate` script
        self.proc: subprocess.Popen[str] | None = None
        self.lines: deque[dict[str, Any]] = deque(maxlen=5000)  # the parsed log lines, newest last
        self.raw: deque[str] = deque(maxlen=5000)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60) -> GatewayProcess:
        self._ready.clear()
        self.proc = subprocess.Popen([*self.command, *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(self._tmpdir())})
        self._reader = threading.Thread(target=self._read, args=(self.proc,), name="gateway-proc-reader")
        self._reader.start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError("gateway did not start:\n" + "".join(list(self.raw)[-30:]))
        return self

    def _tmpdir(self) -> Path:
        """The gateway's TMPDIR, beside its config: a gateway a test SIGKILLs leaves its bulk fork server's
        socket directory (`pymp-*`) there, not in the machine's /tmp."""
        d = self.config.parent / "tmp"
        d.mkdir(exist_ok=True)
        return d

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.raw.append(line)
            if '"floorgate.events"' in line:
                continue  # one line per event: not parsed here, a bench may produce 100,000 of them
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            self.lines.append(rec)
            if rec.get("msg") == "gateway started":
                self._ready.set()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._join()

    def terminate(self, timeout: float = 10) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._join()
        return rc

    def _join(self) -> None:
        if self.proc is not None:
            self.proc.wait(30)
        if self._reader is not None:
            self._reader.join(30)
            self._reader = None
