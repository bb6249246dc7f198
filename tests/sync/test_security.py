"""TLS with a client certificate made by the test, against a Mosquitto TLS listener; username and password
from a file; never a password in a log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.sync.mqtt import MqttSettings
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.sync.conftest import gateway_config, running_gateway

PASSWORD = "s3cret-Pa55-for-test"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
            "-subj", "/CN=Floorgate Test CA", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'localhost' if name == 'server' else 'zone-a'}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "30", "-extfile", "san.cnf", cwd=d)
    return {k: d / f"{k}" for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path / "pki")


def password_file(tmp_path: Path) -> tuple[Path, Path]:
    broker_pw = tmp_path / "broker.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(broker_pw), "zone-a", PASSWORD], check=True, timeout=30)
    subprocess.run(["mosquitto_passwd", "-b", str(broker_pw), "hub", PASSWORD], check=True, timeout=30)
    gw_pw = tmp_path / "mqtt.password"
    gw_pw.write_text(PASSWORD + "\n")
    gw_pw.chmod(0o600)
    return broker_pw, gw_pw


async def test_tls_client_certificate_and_password(tmp_path: Path, pki: dict[str, Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker_pw, gw_pw = password_file(tmp_path)
    tls = {"ca": str(pki["ca.crt"]), "cert": str(pki["server.crt"]), "key": str(pki["server.key"])}
    with Broker(tmp_path / "broker", tls=tls, password_file=broker_pw) as broker:
        cfg = gateway_config(tmp_path, broker, mqtt={
            "tls": True, "ca_file": str(pki["ca.crt"]), "cert_file": str(pki["client.crt"]),
            "key_file": str(pki["client.key"]), "username": "zone-a", "password_file": str(gw_pw)})
        hub = HubSim(MqttSettings(port=broker.port, client_id="hub-tls", tls=True, ca_file=str(pki["ca.crt"]),
                                  cert_file=str(pki["client.crt"]), key_file=str(pki["client.key"]),
                                  username="hub", password=PASSWORD), "dc1", "zone-a")
        hub_task = asyncio.create_task(hub.run(), name="hub-tls")
        try:
            async with running_gateway(cfg) as app:
                assert app.link is not None
                await hub.wait_until(lambda: hub.status is not None and hub.status["state"] == "online", 30)
                r = await hub.command("sync.snapshot", {})
                assert r["ok"]
                assert app.link.mqtt.connected.is_set()
        finally:
            hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hub_task
    assert PASSWORD not in caplog.text


async def test_wrong_password_is_refused_clearly_and_not_logged(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker_pw, _ = password_file(tmp_path)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-" + PASSWORD)
    with Broker(tmp_path / "broker", password_file=broker_pw) as broker:
        cfg = gateway_config(tmp_path, broker, mqtt={"username": "zone-a", "password_file": str(wrong)})
        async with running_gateway(cfg) as app:
            assert app.link is not None
            await asyncio_wait(lambda: "refused" in app.link.mqtt.last_error if app.link else False)
            assert not app.link.mqtt.connected.is_set()
    assert "broker refused the connection" in caplog.text
    assert PASSWORD not in caplog.text


async def asyncio_wait(pred: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)


async def test_untrusted_server_certificate_is_refused(tmp_path: Path, pki: dict[str, Path]) -> None:
    other = make_pki(tmp_path / "other")
    tls = {"ca": str(pki["ca.crt"]), "cert": str(pki["server.crt"]), "key": str(pki["server.key"])}
    with Broker(tmp_path / "broker", tls=tls) as broker:
        cfg = gateway_config(tmp_path, broker, mqtt={
            "tls": True, "ca_file": str(other["ca.crt"]), "cert_file": str(other["client.crt"]),
            "key_file": str(other["client.key"])})
        async with running_gateway(cfg) as app:
            assert app.link is not None
            await asyncio_wait(lambda: "certificate" in app.link.mqtt.last_error.lower() if app.link else False)
            assert not app.link.mqtt.connected.is_set()
