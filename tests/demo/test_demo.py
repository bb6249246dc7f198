"""`floorgate demo`: headless for 60 s, orders get packed and the hub simulator holds every event with no gap
in seq (and nothing against the contract); the logins and the API address its banner prints work; and it
runs offline, without a broker, as on a machine without Mosquitto."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
SAFETY_S = 180.0  # a safety limit for a demo on a busy 2-core machine, not an expectation


def test_demo_headless_60_s(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--headless", "--seconds", "60",
                           "--http-port", str(free_port()), "--data-dir", str(tmp_path), "--speed", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["demo"]["orders"].get("packed", 0) >= 5, report["demo"]
    # The demo waits until the hub holds the journal's last seq (re-read on every check, since the gateway
    # still commits meanwhile), then takes its summary and the hub's report at one moment.
    assert report["hub_holds_all"] is True
    hub = report["hub"]
    assert hub["conflicts"] == 0 and hub["invalid"] == []
    (journal,) = hub["journals"].values()
    assert journal["gaps"] == 0 and journal["contiguous_to"] == report["demo"]["last_seq"] > 0
    assert report["floor"]["wrong_packed"] == 0
    # every simulated device answers (a PTL bus counts by its link: it showed "49 / 50" all along)
    assert report["demo"]["devices_online"] == report["demo"]["devices"] > 0, report["demo"]


class DemoProc:
    """`floorgate demo --headless` in its own process; stdout and stderr are read line by line as they come,
    each by its own thread (never also by `communicate`, which would take lines from under the reader)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--headless", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
        self.out: list[str] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), name="demo-stdout"),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), name="demo-stderr")]
        for t in self._readers:
            t.start()

    @property
    def err(self) -> str:
        return "".join(self.errors)

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = SAFETY_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.out:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or not self._readers[0].is_alive():
                    raise AssertionError(f"no line matching {pattern!r}; stdout:\n" + "".join(self.out[-30:]) +
                                         "\nstderr:\n" + self.err[-3000:])
                self._cond.wait(min(left, 0.5))

    def stop(self, timeout: float = SAFETY_S, sig: int = signal.SIGTERM) -> dict[str, Any]:
        """Ctrl-C's twin (SIGTERM; SIGHUP when its terminal closes): the demo stops everything and prints its
        final report."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._join()
        assert rc == 0, self.err[-3000:]
        report: dict[str, Any] = json.loads(self.out[-1])
        return report

    def _join(self) -> None:
        for t in self._readers:
            t.join(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._join()


@contextlib.contextmanager
def demo(*args: str) -> Iterator[DemoProc]:
    d = DemoProc(*args)
    try:
        yield d
    finally:
        d.close()


def _runs_here(proc: Path, where: Path) -> bool:
    """A process whose command line names `where` (the demo's broker is started in a session of its own)."""
    try:
        return str(where) in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _login(base: str, operator_id: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=30)
    r = c.post("/api/v1/auth/login", json={"operator_id": operator_id, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def test_the_banner_logins_and_api_address_work(tmp_path: Path) -> None:
    with demo("--http-port", str(free_port()), "--data-dir", str(tmp_path), "--speed", "20") as d:
        sup = d.wait_line(r"Supervisor\s+(http://\S+)\s+log in: (\S+) / (\S+)")
        tech = d.wait_line(r"Technician\s+(http://\S+)\s+log in: (\S+) / (\S+)")
        api = d.wait_line(r"API\s+(http://\S+)")
        base = sup.group(1).rsplit("/", 1)[0]
        with httpx.Client(timeout=30) as anon:
            page = anon.get(sup.group(1))
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert anon.get(tech.group(1)).status_code == 200
            docs = anon.get(api.group(1))  # the address printed is the one served
            assert docs.status_code == 200 and docs.json()["paths"], docs.text[:300]
            # A wrong password is refused: the printed one is what opens the page.
            wrong = anon.post(base + "/api/v1/auth/login", json={"operator_id": sup.group(2),
                                                                 "password": sup.group(3) + "x"})
            assert wrong.status_code == 401
        with contextlib.closing(_login(base, sup.group(2), sup.group(3))) as s:
            assert s.get("/api/v1/auth/me").json()["roles"] == ["supervisor"]
            assert s.get("/api/v1/supervisor/snapshot").status_code == 200
        with contextlib.closing(_login(base, tech.group(2), tech.group(3))) as t:
            assert t.get("/api/v1/auth/me").json()["roles"] == ["technician"]
            assert t.get("/api/v1/technician/devices").status_code == 200
        d.stop(sig=signal.SIGHUP)  # the terminal closed: it killed the demo on the spot, its broker left running
    assert not [p for p in Path("/proc").glob("[0-9]*") if _runs_here(p, tmp_path)], "a process of the demo is left"
    # The passwords were shown once, in the banner: in no log line, and only their hashes were stored.
    for password, banner in ((sup.group(3), sup.group(0)), (tech.group(3), tech.group(0))):
        assert [line.strip() for line in d.out if password in line] == [banner.strip()]
        assert password not in d.err
        for f in (tmp_path / "gateway").iterdir():
            if f.is_file():
                assert password.encode() not in f.read_bytes(), f"password stored in {f}"


def test_demo_runs_offline_without_a_broker(tmp_path: Path) -> None:
    port = free_port()
    with demo("--no-broker", "--http-port", str(port), "--data-dir", str(tmp_path), "--speed", "20") as d:
        d.wait_line(r"running offline")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/healthz").json()["mqtt"] is False
            deadline = time.monotonic() + SAFETY_S  # until an order is packed, with no uplink at all
            while 'floorgate_orders{state="packed"} 0' in c.get("/metrics").text:
                assert time.monotonic() < deadline, "no order packed while offline"
                time.sleep(0.5)
        report = d.stop()
    assert "hub" not in report and report["demo"]["orders"].get("packed", 0) >= 1
    assert report["demo"]["last_seq"] > 0 and report["floor"]["wrong_packed"] == 0
    assert not (tmp_path / "broker").exists()
