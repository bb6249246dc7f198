"""No secret in any log line. Two runs, each with every secret it can carry, grepped whole (stdout and stderr)
for every secret value:

- the gateway as in production (`floorgate run`, log level debug) with MQTT over TLS with a client certificate
  and a password (a Mosquitto TLS listener that requires both), webhooks whose URLs carry tokens (one answers
  500 before it accepts, one is unreachable), SMTP with a password, a supervisor whose argon2id hash comes
  from master data and a technician with a local hash (`floorgate user set-password`, whose output is grepped
  too), page logins through the HTTP API (right, wrong, a password typed into the id field), the sessions'
  cookies and CSRF tokens, and alarms delivered to every channel;
- `floorgate demo` (its private broker, hub and floor) with page logins through its API: its one-time
  passwords appear only in the banner, and neither their hashes nor the sessions appear anywhere.

The TLS client key has no passphrase (the config has no key for one): the key's own bytes are grepped for
instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.clock import SystemClock
from gateway.journal import Journal
from gateway.sync.mqtt import MqttSettings
from gateway.users import hash_password
from simulators.hub import HubSim
from tests.alarms.conftest import SMTP_PASSWORD, SMTP_USER, HttpReceiver, SmtpReceiver
from tests.brokers import Broker, free_port
from tests.conftest import SKUS, until
from tests.demo.test_demo import demo
from tests.sync.test_security import make_pki

ROOT = Path(__file__).resolve().parents[2]
SAFETY_S = 120.0  # a generous limit for anything to happen on a busy 2-core machine, never a measurement
pytestmark = pytest.mark.timeout(600)


def toml_str(s: str) -> str:
    return json.dumps(s)


def find_secrets(text: str, named: dict[str, str]) -> list[str]:
    """The names of the secrets found in `text`."""
    return sorted(name for name, value in named.items() if value and value in text)


def hash_parts(name: str, hashed: str) -> dict[str, str]:
    """An argon2id hash, and its salt and digest alone (a log line might carry either)."""
    assert hashed.startswith("$argon2"), hashed
    *_, salt, digest = hashed.split("$")
    return {name: hashed, f"{name} (salt)": salt, f"{name} (digest)": digest}


def login_secrets(client: httpx.AsyncClient | httpx.Client, body: dict[str, Any], who: str) -> dict[str, str]:
    return {f"{who} session cookie": client.cookies.get("fg_session") or "", f"{who} CSRF token": body["csrf"]}


# -- the gateway as in production ---------------------------------------------------------------------------------

async def prefill(db: Path, kb: int) -> None:
    """About `kb` KB of audit rows, so the storage check at start-up raises its alarm (sync.max_db_mb = 1)."""
    j = await Journal.open(db, site="dc1", gateway="zone-a", clock=SystemClock())
    try:
        async def job(conn: Any) -> None:
            await conn.executemany("INSERT INTO audit(ts, kind, body) VALUES ('2020-01-01T00:00:00Z', 'filler', ?)",
                                   [("x" * 1000,)] * kb)
        await j.run_job(job)
    finally:
        await j.close()


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[tuple[HttpReceiver, SmtpReceiver]]:
    http = await HttpReceiver().start()
    smtp = await SmtpReceiver().start()
    try:
        yield http, smtp
    finally:
        await smtp.stop()
        await http.stop()


def broker_passwords(path: Path, users: dict[str, str]) -> None:
    for k, (user, pw) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if k == 0 else []), str(path), user, pw], check=True,
                       timeout=30)


async def run_cli(*args: str, stdin: str = "") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), SAFETY_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8", "replace")


async def test_gateway_logs_carry_no_secret(tmp_path: Path) -> None:
    mqtt_pw, hub_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    path_token, query_token, dead_token = (secrets.token_urlsafe(24) for _ in range(3))
    s1_pw, t1_pw, wrong_pw = (secrets.token_urlsafe(12) for _ in range(3))
    s1_hash = hash_password(s1_pw)
    pki = await asyncio.to_thread(make_pki, tmp_path / "pki")
    broker_pw = tmp_path / "broker.passwd"
    await asyncio.to_thread(broker_passwords, broker_pw, {"zone-a": mqtt_pw, "hub": hub_pw})
    mqtt_pw_file, smtp_pw_file = tmp_path / "mqtt.password", tmp_path / "smtp.password"
    mqtt_pw_file.write_text(mqtt_pw + "\n")
    smtp_pw_file.write_text(SMTP_PASSWORD + "\n")
    for f in (mqtt_pw_file, smtp_pw_file):
        f.chmod(0o600)
    data = tmp_path / "gw"
    await prefill(data / "floorgate.db", 900)
    tls = {"ca": str(pki["ca.crt"]), "cert": str(pki["server.crt"]), "key": str(pki["server.key"])}
    http_port = free_port()
    out_path, err_path = tmp_path / "gateway.stdout", tmp_path / "gateway.stderr"
    with Broker(tmp_path / "broker", tls=tls, password_file=broker_pw) as broker:
        async with receivers() as (hook, smtp):
            hook.statuses = [500]  # the first delivery fails (its error is logged), the retry is accepted
            hook_url = f"http://127.0.0.1:{hook.port}/hook/{path_token}?access_token={query_token}"
            dead_url = f"http://127.0.0.1:{free_port()}/services/{dead_token}"
            conf = tmp_path / "gw.toml"
            conf.write_text("\n".join([
                f"data_dir = {toml_str(str(data))}", 'log_level = "debug"',
                "[mqtt]", f"port = {broker.port}", 'username = "zone-a"',
                f"password_file = {toml_str(str(mqtt_pw_file))}", "tls = true",
                f"ca_file = {toml_str(str(pki['ca.crt']))}", f"cert_file = {toml_str(str(pki['client.crt']))}",
                f"key_file = {toml_str(str(pki['client.key']))}",
                "[sync]", "max_db_mb = 1", "telemetry_interval_s = 2",
                "[http]", 'host = "127.0.0.1"', f"port = {http_port}",
                "[[alarms.webhooks]]", f"url = {toml_str(hook_url)}", "timeout_s = 5",
                "[[alarms.webhooks]]", f"url = {toml_str(dead_url)}", "timeout_s = 5",
                "[alarms.smtp]", 'host = "127.0.0.1"', f"port = {smtp.port}", 'to = ["ops@example.test"]',
                'sender = "gw@example.test"', f"username = {toml_str(SMTP_USER)}",
                f"password_file = {toml_str(str(smtp_pw_file))}",
            ]) + "\n", encoding="utf-8")
            rc, set_pw_out = await run_cli("user", "set-password", "--config", str(conf), "--operator", "t1",
                                           "--password-stdin", stdin=t1_pw + "\n")
            assert rc == 0, set_pw_out
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "run", "--config", str(conf), cwd=ROOT, stdout=out,
                    stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                await until(lambda: "gateway started" in out_path.read_text(errors="replace"), "the gateway", SAFETY_S)
                sessions = await work_the_gateway(http_port, broker.port, pki, hub_pw, s1_pw, s1_hash, t1_pw,
                                                  wrong_pw)
                await until(lambda: bool(hook.accepted) and bool(smtp.mails), "alarms delivered", SAFETY_S)
                assert any(r.status == 500 for r in hook.requests), "the failing delivery never happened"
                assert smtp.mails[0].authenticated
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 30)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
            assert proc.returncode == 0, err_path.read_text(errors="replace")[-3000:]
    t1_hash = local_hash(data / "floorgate.db", "t1")
    key_lines = [ln for ln in pki["client.key"].read_text().splitlines() if ln and not ln.startswith("-----")]
    named = {"MQTT password": mqtt_pw, "hub's MQTT password": hub_pw, "webhook path token": path_token,
             "webhook query token": query_token, "unreachable webhook's token": dead_token,
             "SMTP password": SMTP_PASSWORD, "s1 password": s1_pw, "t1 password": t1_pw,
             "a wrong password tried": wrong_pw, "TLS client key": key_lines[1],
             **hash_parts("s1 hash", s1_hash), **hash_parts("t1 local hash", t1_hash), **sessions}
    logs = out_path.read_text(errors="replace") + err_path.read_text(errors="replace")
    assert '"page login"' in logs and '"page login refused"' in logs and "alarm delivered" in logs, logs[-3000:]
    assert find_secrets(logs, named) == [], [ln for ln in logs.splitlines() if find_secrets(ln, named)][:5]
    assert find_secrets(set_pw_out, named) == [], set_pw_out


def local_hash(db: Path, operator_id: str) -> str:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT body FROM docs WHERE kind = 'user' AND id = ?", (operator_id,)).fetchone()
    finally:
        conn.close()
    return str(json.loads(body)["password_hash"])


async def work_the_gateway(http_port: int, mqtt_port: int, pki: dict[str, Path], hub_pw: str, s1_pw: str,
                           s1_hash: str, t1_pw: str, wrong_pw: str) -> dict[str, str]:
    """Master data from the hub over TLS, then page logins; returns the session secrets handed out."""
    hub = HubSim(MqttSettings(port=mqtt_port, client_id="hub-secrets", tls=True, ca_file=str(pki["ca.crt"]),
                              cert_file=str(pki["client.crt"]), key_file=str(pki["client.key"]), username="hub",
                              password=hub_pw), "dc1", "zone-a")
    hub_task = asyncio.create_task(hub.run(), name="hub-secrets")
    try:
        await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "online", SAFETY_S)
        operators = [
            {"operator_id": "s1", "name": "Sue", "roles": ["supervisor"], "zones": ["zone-a"],
             "password_hash": s1_hash},
            {"operator_id": "t1", "name": "Tom", "roles": ["technician"], "zones": ["zone-a"]},
            {"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"], "zones": ["zone-a"]}]
        r = await hub.command("masterdata.sync", {"mode": "replace", "sync_id": "md", "part": 1, "parts": 1,
                                                  "skus": SKUS, "operators": operators}, timeout=SAFETY_S)
        assert r["ok"], r
        done = await hub.wait_result(r["cmd_id"], timeout=SAFETY_S, count=2)
        assert done["ok"] and not done["rejected"], done
    finally:
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hub_task
    base = f"http://127.0.0.1:{http_port}"
    found: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as anon:
        for op, pw in (("s1", wrong_pw), (s1_pw, s1_pw), ("nobody", wrong_pw)):  # wrong, in the id field, unknown
            assert (await anon.post("/api/v1/auth/login", json={"operator_id": op, "password": pw})).status_code == 401
    for op, pw in (("s1", s1_pw), ("t1", t1_pw)):
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            login = await c.post("/api/v1/auth/login", json={"operator_id": op, "password": pw})
            assert login.status_code == 200, login.text
            found.update(login_secrets(c, login.json(), op))
            c.headers["X-CSRF-Token"] = login.json()["csrf"]
            assert (await c.get("/api/v1/auth/me")).json()["operator_id"] == op
            assert (await c.get("/metrics")).status_code == 200
            assert (await c.post("/api/v1/auth/logout")).status_code == 200
            c.cookies.set("fg_session", found[f"{op} session cookie"])  # a logged-out session's cookie, again
            assert (await c.get("/api/v1/auth/me")).status_code == 401
    return found


# -- the demo -----------------------------------------------------------------------------------------------------

def demo_hashes(data: Path) -> dict[str, str]:
    conn = sqlite3.connect(data / "gateway" / "floorgate.db")
    try:
        rows = conn.execute("SELECT id, body FROM masterdata WHERE kind = 'operator'").fetchall()
    finally:
        conn.close()
    out: dict[str, str] = {}
    for op, body in rows:
        hashed = json.loads(body).get("password_hash")
        if hashed:
            out.update(hash_parts(f"{op} hash", hashed))
    return out


def lines_with(text: Iterable[str], named: dict[str, str]) -> list[str]:
    return [ln.strip() for ln in text if find_secrets(ln, named)]


def test_demo_logs_carry_no_secret(tmp_path: Path) -> None:
    port = free_port()
    found: dict[str, str] = {}
    with demo("--http-port", str(port), "--data-dir", str(tmp_path), "--speed", "20") as d:
        shown = [d.wait_line(rf"{role}\s+http://\S+\s+log in: (\S+) / (\S+)") for role in ("Supervisor", "Technician")]
        banner = {m.group(1): (m.group(0), m.group(2)) for m in shown}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as anon:
            wrong = anon.post("/api/v1/auth/login", json={"operator_id": "s1", "password": banner["s1"][1] + "x"})
            assert wrong.status_code == 401
            typo = anon.post("/api/v1/auth/login", json={"operator_id": banner["t1"][1], "password": "x"})
            assert typo.status_code == 401
        for op, (_, pw) in banner.items():
            with httpx.Client(base_url=base, timeout=30) as c:
                r = c.post("/api/v1/auth/login", json={"operator_id": op, "password": pw})
                assert r.status_code == 200, r.text
                found.update(login_secrets(c, r.json(), op))
                c.headers["X-CSRF-Token"] = r.json()["csrf"]
                assert c.get("/api/v1/auth/me").json()["operator_id"] == op
                assert c.post("/api/v1/auth/logout").status_code == 200
        d.stop()
    named = {f"{op} password": pw for op, (_, pw) in banner.items()}
    named.update(demo_hashes(tmp_path))
    named.update(found)
    assert any("hash" in k for k in named), "the demo's master data carried no password hash"
    banner_lines = {line.strip() for line, _ in banner.values()}
    assert lines_with((ln for ln in d.out if ln.strip() not in banner_lines), named) == []
    assert lines_with(d.err.splitlines(), named) == []
    assert sum(bool(re.search(r"log in: \S+ / \S+", ln)) for ln in d.out) == 2  # the banner, once
