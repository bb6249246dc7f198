"""`floorgate run`: starts from a config, logs structured lines, stops on SIGTERM well within 10 s."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.brokers import free_port


def test_run_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "floorgate.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nport = 1\n[http]\nhost = "127.0.0.1"\n'
                   f'port = {free_port()}\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        started = None
        for line in proc.stdout:
            rec = json.loads(line)  # every line is one JSON object
            if rec["msg"] == "gateway started":
                started = rec
                break
        assert started is not None and started["site"] == "dc1" and started["journal"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)  # SPEC §5: SIGTERM stops the gateway within 10 s
        assert proc.returncode == 0, err
        assert any(json.loads(ln)["msg"] == "gateway stopped" for ln in out.splitlines())
        assert (tmp_path / "floorgate.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
