"""The peer's own venv: ThingsBoard IoT Gateway and the pymodbus it pins, never in Floorgate's venv.

It lives in a cache directory outside the work tree ($FLOORGATE_PEER_VENV, default
~/.cache/floorgate-bench/tb-venv) and is made on first use with pip from the configured index. Its pymodbus is
installed up front at the exact version the gateway's Modbus connector demands, because otherwise the
connector runs `pip install --force-reinstall` by itself when it is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TB_VERSION = "3.8.5"
REQUIREMENTS = [f"thingsboard-gateway=={TB_VERSION}", "pymodbus==3.9.2", "pyserial==3.5", "pyserial-asyncio==0.6"]
CHECK = ("import importlib.metadata as m, pymodbus, thingsboard_gateway; "
         f"assert m.version('thingsboard-gateway') == '{TB_VERSION}', m.version('thingsboard-gateway'); "
         "assert pymodbus.__version__ == '3.9.2', pymodbus.__version__")


class PeerUnavailable(RuntimeError):
    """The peer cannot be run here; the message says exactly why (it goes into the report)."""


def venv_dir() -> Path:
    if os.environ.get("FLOORGATE_PEER_VENV"):
        return Path(os.environ["FLOORGATE_PEER_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "floorgate-bench" / "tb-venv"


def _ok(python: Path) -> bool:
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", CHECK], capture_output=True, timeout=120).returncode == 0


def ensure_tb_venv(log: bool = True) -> Path:
    """The venv's python, with the peer installed; made (or repaired) when needed."""
    d = venv_dir()
    python = d / "bin" / "python"
    if _ok(python):
        return python
    if log:
        print(f"peer: making {d} with {', '.join(REQUIREMENTS)} (first run only)", file=sys.stderr, flush=True)
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(d)], capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            raise PeerUnavailable(f"cannot create a venv at {d}: {(made.stderr or made.stdout).strip()[-800:]}")
    pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS],
                         capture_output=True, text=True, timeout=1800)
    if pip.returncode != 0:
        tail = (pip.stderr.strip() or pip.stdout.strip())[-1500:]
        raise PeerUnavailable(f"pip install {' '.join(REQUIREMENTS)} failed (exit {pip.returncode}):\n{tail}")
    if not _ok(python):
        check = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=120)
        raise PeerUnavailable(f"the peer installed but does not import: {check.stderr.strip()[-1500:]}")
    return python
