"""`floorgate run`: starts from a config, logs structured lines, stops on SIGTERM well within 10 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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
        msgs: list[str] = []
        for line in proc.stdout:
            rec = json.loads(line)  # every line is one JSON object
            msgs.append(rec["msg"])
            if rec["msg"] == "gateway started":
                started = rec
                break
        assert started is not None and started["site"] == "dc1" and started["journal"]
        proc.send_signal(signal.SIGTERM)
        # The rest is read through the same buffered file: `communicate` reads the pipe itself and would miss
        # lines this file already buffered with "gateway started" (CI lost the SSCC warning that way).
        killer = threading.Timer(10, proc.kill)  # SPEC §5: SIGTERM stops the gateway within 10 s
        killer.start()
        try:
            rest = proc.stdout.read()
            err = proc.stderr.read() if proc.stderr is not None else ""
            proc.wait()
        finally:
            killer.cancel()
        assert proc.returncode == 0, err
        msgs += [json.loads(ln)["msg"] for ln in rest.splitlines()]
        assert "gateway stopped" in msgs
        # SPEC §3: without sscc_company_prefix the demo prefix is used, "with a warning"
        assert any(m.startswith("packing.sscc_company_prefix is not set") for m in msgs), msgs
        assert (tmp_path / "floorgate.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("extra", "key", "expected"), [
    ('[mqtt]\ntls = true\nca_file = "/nonexistent/ca.pem"\n', "mqtt.ca_file", "/nonexistent/ca.pem does not exist"),
    ('[mqtt]\npassword_file = "/nonexistent/pw"\n', "mqtt.password_file", "/nonexistent/pw does not exist"),
    ('[mqtt]\npassword_file = "/"\n', "mqtt.password_file", "not a regular file"),
    ('[http]\ntls_cert_file = "/nonexistent/c.pem"\ntls_key_file = "/nonexistent/k.pem"\n', "http.tls_cert_file",
     "does not exist"),
    ('[alarms.smtp]\nhost = "mail"\nto = ["ops@example.com"]\npassword_file = "/nonexistent/pw"\n',
     "alarms.smtp.password_file", "does not exist"),
    ('data_dir = "{file}"\n', "data_dir", "is a file"),
    ('data_dir = "/proc/floorgate-test"\n', "data_dir", "exists or can be made"),
    ('data_dir = "rel/data"\n', "data_dir", "absolute path"),
])
def test_run_refuses_paths_it_cannot_use(tmp_path: Path, extra: str, key: str, expected: str) -> None:
    """A path the gateway needs at start-up is checked before anything starts: a `bad config` naming the key,
    exit 2, instead of a traceback from deep in the start (a TLS context, the run lock)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    extra = extra.replace("{file}", str(a_file))
    data_dir = "" if extra.startswith("data_dir") else f'data_dir = "{tmp_path / "data"}"\n'
    cfg = tmp_path / "floorgate.toml"
    cfg.write_text(data_dir + extra, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"floorgate: bad config: {cfg}: {key}: "), proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "rel").exists()


def test_run_refuses_a_file_it_may_not_read(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0)
    cfg = tmp_path / "floorgate.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[mqtt]\npassword_file = "{secret}"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "mqtt.password_file" in proc.stderr and "cannot be read" in proc.stderr


def test_run_on_a_file_that_is_no_database_says_so_in_one_line(tmp_path: Path) -> None:
    """Found by copying the wrong file into place: a traceback (`file is not a database`), exit 1 (systemd tried
    again 5 times), and "gateway stopped" for a gateway that never started."""
    (tmp_path / "floorgate.db").write_bytes(b"not a database, just text " * 40)
    cfg = tmp_path / "floorgate.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nport = 1\n[http]\nhost = "127.0.0.1"\n'
                   f'port = {free_port()}\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path / 'floorgate.db'} is not a usable Floorgate database" in proc.stderr
    assert "floorgate restore" in proc.stderr
    msgs = [json.loads(ln)["msg"] for ln in proc.stdout.splitlines()]
    assert "gateway stopped" not in msgs and "gateway did not start" in msgs


def test_run_with_the_web_port_taken_says_so_in_one_line(tmp_path: Path) -> None:
    """Found on a box where another program had the port: a logged error, then an ExceptionGroup traceback."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        cfg = tmp_path / "floorgate.toml"
        cfg.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nport = 1\n[http]\nhost = "127.0.0.1"\nport = {port}\n',
                       encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"could not listen on 127.0.0.1:{port}: the port is in use" in proc.stderr
