"""Peak RSS (VmHWM) of the idle gateway, beside the same interpreter importing the same libraries and doing
nothing else (the floor that no gateway on this stack can go below), in the same run.

    python -m bench.rss [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = ("import asyncio, sqlite3, aiosqlite, paho.mqtt.client, pymodbus.client, serial, pydantic, "
           "fastapi, uvicorn, biip; import evdev")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def measure(cmd: list[str], seconds: float, ready: str | None = None, env: dict[str, str] | None = None) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        if ready is not None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if ready in line:
                    break
        time.sleep(seconds)
        return hwm_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "floorgate.toml"
        cfg.write_text(f'data_dir = "{d}"\n[http]\nport = {free_port()}\n', encoding="utf-8")
        base = measure([sys.executable, "-c", IMPORTS + "; import time; print('up', flush=True); time.sleep(1e6)"],
                       args.seconds, ready="up")
        gw = measure([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], args.seconds,
                     ready="gateway started", env={**os.environ})
    print("rss: peak resident memory of the idle gateway (VmHWM)")
    print(f"{'process':40} {'MB':>8}")
    print(f"{'python + the same imports, idle':40} {base / 1024:8.1f}")
    print(f"{'floorgate run (idle, default config)':40} {gw / 1024:8.1f}   (goal <= 80 MB)")
    print(f"{'gateway over imports':40} {gw / base:8.2f}x")
    print(json.dumps({"bench": "rss", "gateway_peak_mb": round(gw / 1024, 1), "imports_peak_mb": round(base / 1024, 1),
                      "ratio": round(gw / base, 2)}))


if __name__ == "__main__":
    main()
