"""`floorgate demo` runs headless for 60 s: orders get packed and the hub simulator holds every event with no
gap in seq (and nothing against the contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_headless_60_s(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--headless", "--seconds", "60",
                           "--http-port", str(free_port()), "--data-dir", str(tmp_path), "--speed", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["demo"]["orders"].get("packed", 0) >= 5, report["demo"]
    assert report["hub_holds_all"] is True
    hub = report["hub"]
    assert hub["conflicts"] == 0 and hub["invalid"] == []
    (journal,) = hub["journals"].values()
    assert journal["gaps"] == 0 and journal["contiguous_to"] == report["demo"]["last_seq"]
    assert report["floor"]["wrong_packed"] == 0
