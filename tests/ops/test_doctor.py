"""`floorgate doctor`: every problem is one row that names it and says how to fix it; DailyChecks turns the
same rows into alarms inside the gateway."""

from __future__ import annotations

import asyncio
import base64
import grp
import json
import os
import pwd
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import Config, parse_config
from gateway.ops.certs import credential_expiry, read_certificates
from gateway.ops.doctor import (
    FAIL,
    OK,
    WARN,
    Check,
    DailyChecks,
    Identity,
    Options,
    check_broker,
    check_certificates,
    check_clock,
    check_database,
    check_device,
    check_secrets,
    doctor,
    identity,
)
from gateway.service import FloorService
from gateway.sync.mqtt import AsyncMqtt, MqttSettings
from tests.brokers import Broker, free_port
from tests.ops.conftest import ops_cli

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def opts(**kw: object) -> Options:
    base: dict[str, object] = {"who": identity(), "now": lambda: NOW, "timeout_s": 3.0,
                               "run": lambda cmd, t: (1, "unavailable in this test")}
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


def row(checks: list[Check], cid: str) -> Check:
    found = [c for c in checks if c.id == cid]
    assert found, f"no row {cid}: {[c.id for c in checks]}"
    return found[0]


def config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "floorgate.toml"
    p.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text, encoding="utf-8")
    return p


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate valid 5 days and a client certificate valid 200 days (EC keys: fast)."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "400", "-subj", "/CN=Test CA", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, days in (("server", "5"), ("client", "200")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", days, "-extfile", "san.cnf", cwd=d)
    for k in d.glob("*.key"):
        k.chmod(0o600)
    return {p.name: p for p in d.iterdir()}


# -- config -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "names"), [
    ("[mqtt\nport = 1\n", ["is not valid TOML"]),
    ("[mqtt]\nprot = 1883\n", ["mqtt.prot", "unknown key"]),
    ("[mqtt]\nport = 99999\n", ["mqtt.port"]),
    ('[[scanners]]\nid = "scan-1"\nkind = "serial"\n', ["scanners[0]", "expected port"]),
])
def test_a_broken_config_is_one_clear_row_not_a_traceback(tmp_path: Path, text: str, names: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    r = ops_cli("doctor", "--config", str(path), "--json")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    rows = json.loads(r.stdout)
    cfg_row = next(x for x in rows if x["id"] == "config")
    assert cfg_row["status"] == FAIL
    assert str(path) in cfg_row["what"]
    for n in names:
        assert n in cfg_row["what"]
    assert "edit" in cfg_row["fix"] and str(path) in cfg_row["fix"]


def test_a_missing_config_file(tmp_path: Path) -> None:
    r = ops_cli("doctor", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 1
    assert "file not found" in r.stdout and "--config" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


# -- devices -----------------------------------------------------------------------------------------------------

def test_a_missing_device_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = config(tmp_path, f'[mqtt]\nport = {free_port()}\n[[scanners]]\nid = "scan-1"\n'
                            'port = "/dev/floorgate/scanner-NOSUCH1"\n[[ptl.buses]]\nid = "bus-a"\n'
                            'transport = "rtu"\nport = "/dev/floorgate/rs485-NOSUCH2"\n')
    r = ops_cli("doctor", "--config", str(path))
    assert r.returncode == 1
    assert "scanner scan-1" in r.stdout and "/dev/floorgate/scanner-NOSUCH1" in r.stdout  # whole, not wrapped
    rows = json.loads(ops_cli("doctor", "--config", str(path), "--json").stdout)
    scan = next(x for x in rows if x["id"] == "device.scan-1")
    assert scan["status"] == FAIL and "/dev/floorgate/scanner-NOSUCH1 does not exist" in scan["what"]
    assert "plug the device in" in scan["fix"] and "99-floorgate.rules" in scan["fix"]
    bus = next(x for x in rows if x["id"] == "device.bus-a")
    assert bus["status"] == FAIL and "rs485-NOSUCH2" in bus["what"]


@pytest.fixture
def pty_slave() -> Iterator[str]:
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_device_access_names_the_group_needed(pty_slave: str) -> None:
    """A real character device (a pty made to look like a serial port: group dialout, mode 0660) checked for
    a user outside that group, then for one in it."""
    if os.geteuid() != 0:
        pytest.skip("giving the pty group dialout needs root")
    dialout = grp.getgrnam("dialout").gr_gid
    os.chown(pty_slave, 0, dialout)
    os.chmod(pty_slave, 0o660)
    nobody = pwd.getpwnam("nobody")
    who = Identity("nobody", nobody.pw_uid, frozenset({nobody.pw_gid}))
    c = check_device("device.scan-1", "scanner scan-1", pty_slave, True, opts(who=who))
    assert c.status == FAIL and c.code == "device_access"
    assert f"nobody cannot read/write {pty_slave}" in c.what and "group dialout" in c.what
    assert "sudo usermod -aG dialout nobody" in c.fix
    member = Identity("nobody", nobody.pw_uid, frozenset({nobody.pw_gid, dialout}))
    assert check_device("device.scan-1", "scanner scan-1", pty_slave, True, opts(who=member)).status == OK
    reader = check_device("device.scan-2", "scanner scan-2", pty_slave, False, opts(who=member))
    assert reader.status == OK and "read for nobody" in reader.what
    os.chmod(pty_slave, 0o600)  # as a device without the udev rules: root only
    c = check_device("device.scan-1", "scanner scan-1", pty_slave, True, opts(who=member))
    assert c.status == FAIL and "install the udev rules" in c.fix


def test_unplugged_device_behind_a_stable_name(tmp_path: Path, pty_slave: str) -> None:
    link = tmp_path / "scanner-A1"
    link.symlink_to(tmp_path / "ttyACM9")
    c = check_device("device.s", "scanner s", str(link), True, opts())
    assert c.status == FAIL and "which is not there: the device is unplugged" in c.what
    regular = tmp_path / "not-a-device"
    regular.write_text("")
    c = check_device("device.s", "scanner s", str(regular), True, opts())
    assert c.status == FAIL and "is not a device file" in c.what
    link.unlink()
    link.symlink_to(pty_slave)
    assert check_device("device.s", "scanner s", str(link), True, opts()).status == OK


# -- broker -------------------------------------------------------------------------------------------------------

def _cfg(tmp_path: Path, **over: object) -> Config:
    return parse_config({"data_dir": str(tmp_path / "data"), **over}, "<test>")


def test_an_unreachable_broker_names_host_port_and_the_fix(tmp_path: Path) -> None:
    port = free_port()
    c = check_broker(_cfg(tmp_path, mqtt={"port": port}), opts())[0]
    assert c.status == FAIL and c.code == "broker_unreachable"
    assert f"cannot reach 127.0.0.1:{port}" in c.what
    assert "check that the broker runs" in c.fix and "mqtt.host/mqtt.port" in c.fix
    c = check_broker(_cfg(tmp_path, mqtt={"host": "no-such-host.invalid"}), opts())[0]
    assert c.status == FAIL and "cannot resolve mqtt.host" in c.what


def test_a_port_that_does_not_speak_mqtt(tmp_path: Path) -> None:
    with socket.socket() as srv:  # listens (the kernel completes the TCP handshake) but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        c = check_broker(_cfg(tmp_path, mqtt={"port": srv.getsockname()[1]}), opts(timeout_s=1.0))[0]
    assert c.status == FAIL and "no MQTT CONNACK" in c.what and "mqtt.tls" in c.fix


async def test_a_real_broker_and_the_gateway_session_is_not_kicked(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        cfg = _cfg(tmp_path, mqtt={"port": broker.port})
        gw = AsyncMqtt(MqttSettings(port=broker.port, client_id=cfg.client_id), name="gw-under-test")
        drops: list[int] = []
        gw.on_disconnect.append(lambda: drops.append(1))
        task = asyncio.create_task(gw.run(), name="gw-mqtt")
        try:
            async with asyncio.timeout(20):
                await gw.connected.wait()
            checks = await asyncio.to_thread(check_broker, cfg, opts())
            assert checks[0].status == OK, checks
            assert "MQTT CONNECT accepted" in checks[0].what
            # A PUBACK on the gateway's connection after the doctor's CONNACK: that session was not taken over.
            acked = asyncio.Event()
            gw.on_puback = lambda mid: acked.set()
            assert gw.publish("floorgate/test", b"still here", qos=1) is not None
            async with asyncio.timeout(20):
                await acked.wait()
            assert gw.connected.is_set() and drops == [] and gw.connects == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_tls_broker_ok_and_with_the_wrong_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    tls = {"ca": str(pki["ca.crt"]), "cert": str(pki["server.crt"]), "key": str(pki["server.key"])}
    with Broker(tmp_path / "broker", tls=tls) as broker:
        good = {"port": broker.port, "tls": True, "ca_file": str(pki["ca.crt"]),
                "cert_file": str(pki["client.crt"]), "key_file": str(pki["client.key"])}
        c = check_broker(_cfg(tmp_path, mqtt=good), opts())[0]
        assert c.status == OK and "over TLS" in c.what
        wrong = {**good, "ca_file": str(pki["client.crt"])}  # not the CA that signed the broker's cert
        c = check_broker(_cfg(tmp_path, mqtt=wrong), opts())[0]
        assert c.status == FAIL and "certificate was not accepted" in c.what and "mqtt.ca_file" in c.fix
        plain = {"port": broker.port}  # TLS port, tls = false
        c = check_broker(_cfg(tmp_path, mqtt=plain), opts(timeout_s=1.0))[0]
        assert c.status == FAIL


# -- certificates, secrets ---------------------------------------------------------------------------------------------

def test_certificate_days_left(tmp_path: Path, pki: dict[str, Path]) -> None:
    server = read_certificates(pki["server.crt"])[0]
    assert server.subject == "server"
    now = server.not_after - timedelta(days=5)
    mqtt = {"tls": True, "ca_file": str(pki["ca.crt"]), "cert_file": str(pki["server.crt"]),
            "key_file": str(pki["server.key"])}
    rows = check_certificates(_cfg(tmp_path, mqtt=mqtt), opts(now=lambda: now))
    cert = row(rows, "cert.mqtt.cert_file")
    assert cert.status == WARN and cert.code == "cert_expiring" and "5 days left" in cert.what
    assert "renewed certificate" in cert.fix
    assert row(rows, "cert.mqtt.ca_file").status == OK
    assert row(rows, "key.mqtt.key_file").status == OK
    later = server.not_after + timedelta(days=1)
    cert = row(check_certificates(_cfg(tmp_path, mqtt=mqtt), opts(now=lambda: later)), "cert.mqtt.cert_file")
    assert cert.status == FAIL and "expired on" in cert.what
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    cert = row(check_certificates(_cfg(tmp_path, mqtt={**mqtt, "cert_file": str(bad)}), opts()), "cert.mqtt.cert_file")
    assert cert.status == FAIL and cert.code == "cert_unreadable"
    pki["server.key"].chmod(0o644)
    try:
        key = row(check_certificates(_cfg(tmp_path, mqtt=mqtt), opts(now=lambda: now)), "key.mqtt.key_file")
        assert key.status == WARN and "readable by every user" in key.what and "chmod 0640" in key.fix
    finally:
        pki["server.key"].chmod(0o600)


def _jwt(exp: datetime) -> str:
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'HS256'})}.{b64({'exp': int(exp.timestamp())})}.c2ln"


def test_credentials_that_expire(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt-password"
    pw.write_text(_jwt(NOW + timedelta(days=3)) + "\n")
    pw.chmod(0o640)
    c = row(check_secrets(_cfg(tmp_path, mqtt={"username": "gw", "password_file": str(pw)}), opts()),
            "secret.mqtt.password_file")
    assert c.status == WARN and "3 days left" in c.what and c.code == "credential_expiring"
    assert _jwt(NOW)[:10] not in c.what  # the secret itself is never shown
    sas = f"SharedAccessSignature sr=hub%2Fdevices%2Fgw&sig=abc&se={int((NOW - timedelta(days=1)).timestamp())}"
    assert credential_expiry(sas) == (NOW - timedelta(days=1))
    pw.write_text(sas)
    c = row(check_secrets(_cfg(tmp_path, mqtt={"username": "gw", "password_file": str(pw)}), opts()),
            "secret.mqtt.password_file")
    assert c.status == FAIL and "expired" in c.what
    pw.write_text("plain-password")
    pw.chmod(0o644)
    c = row(check_secrets(_cfg(tmp_path, mqtt={"username": "gw", "password_file": str(pw)}), opts()),
            "secret.mqtt.password_file")
    assert c.status == WARN and "readable by every user" in c.what
    missing = _cfg(tmp_path, mqtt={"username": "gw", "password_file": str(tmp_path / "gone")})
    assert row(check_secrets(missing, opts()), "secret.mqtt.password_file").status == FAIL


# -- clock, database --------------------------------------------------------------------------------------------------

def test_clock_states(tmp_path: Path) -> None:
    assert check_clock(opts(run=lambda c, t: (0, "yes")))[0].status == OK
    no = check_clock(opts(run=lambda c, t: (0, "no")))[0]
    assert no.status == WARN and "timedatectl set-ntp true" in no.fix
    unknown = check_clock(opts(run=lambda c, t: (127, "timedatectl: not installed")))[0]
    assert unknown.status == WARN and "unknown" in unknown.what and not unknown.alarm  # a warning, not a failure
    flag = tmp_path / "synchronized"
    flag.write_text("")
    assert check_clock(opts(timesync_flag=str(flag)))[0].status == OK
    wrong = check_clock(opts(now=lambda: datetime(2001, 1, 1, tzinfo=UTC)))[0]
    assert wrong.status == FAIL and "wrong" in wrong.what


def test_a_damaged_database_is_named_with_the_fix(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    cfg.db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(cfg.db_path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t(v)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"value-{i:06d}" * 4,) for i in range(5000)])
    conn.commit()
    conn.close()
    assert check_database(cfg, opts())[0].status == OK
    with open(cfg.db_path, "r+b") as f:  # scribble over an index page in the middle of the file
        size = os.fstat(f.fileno()).st_size
        f.seek((size // 4096 // 2) * 4096)
        f.write(b"\xff" * 4096)
    c = check_database(cfg, opts())[0]
    assert c.status == FAIL and c.code == "db_integrity"
    assert "floorgate restore" in c.fix and "floorgate backup" in c.fix


def test_full_doctor_on_a_good_setup(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        path = config(tmp_path, f'[mqtt]\nport = {broker.port}\n[packing]\nsscc_company_prefix = "4012345"\n')
        (tmp_path / "data").mkdir()
        checks = doctor(str(path), opts(run=lambda c, t: (0, "yes")))
    bad = [c for c in checks if c.status != OK and c.id != "gateway"]
    assert bad == [], bad
    r = ops_cli("doctor", "--config", str(path))
    assert "CHECK" in r.stdout and "STATUS" in r.stdout and "FIX" in r.stdout


# -- inside the gateway ------------------------------------------------------------------------------------------------

async def _until(pred: object, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_daily_checks_raise_and_clear_alarms(tmp_path: Path, pki: dict[str, Path], pty_slave: str) -> None:
    from gateway.journal import Journal

    scanner = tmp_path / "scanner-A1"
    scanner.symlink_to(tmp_path / "ttyACM9")  # unplugged
    server = read_certificates(pki["server.crt"])[0]
    clock = ManualClock(server.not_after - timedelta(days=4, hours=12))
    cfg = _cfg(tmp_path, mqtt={"port": free_port(), "tls": True, "ca_file": str(pki["server.crt"])},
               scanners=[{"id": "scan-1", "port": str(scanner)}])
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    service = FloorService(cfg, journal, clock)
    await service.start()
    part = DailyChecks(cfg, service, clock, first_after_s=60, poll_s=0.01,
                       options=Options(who=identity(), now=clock.now, in_gateway=True, timeout_s=3,
                                       run=lambda c, t: (0, "yes")))
    task = asyncio.create_task(part.run(), name="daily-checks")
    try:
        await asyncio.sleep(0.05)
        assert part.runs == 0  # not before first_after_s on the injected clock
        clock.advance(61)
        await _until(lambda: part.runs == 1)
        alarms = service.floor.alarms
        cert = alarms["doctor.cert.mqtt.ca_file"]
        assert cert.severity == "warning" and cert.code == "cert_expiring" and "4 days left" in cert.message
        dev = alarms["doctor.device.scan-1"]
        assert dev.severity == "critical" and dev.code == "device_missing"
        assert alarms["doctor.broker"].code == "broker_unreachable"
        assert "doctor.clock" not in alarms

        scanner.unlink()
        scanner.symlink_to(pty_slave)  # plugged in
        clock.advance(86400)
        await _until(lambda: part.runs == 2)
        assert "doctor.device.scan-1" not in service.floor.alarms
        assert "doctor.cert.mqtt.ca_file" in service.floor.alarms  # 3 days left now: still up
        events = await journal.read_events(1)
        cleared = [json.loads(e.body)["data"] for e in events if e.type == "alarm.cleared"]
        assert [d["alarm_id"] for d in cleared] == ["doctor.device.scan-1"]
        raised = [json.loads(e.body)["data"]["alarm_id"] for e in events if e.type == "alarm.raised"]
        assert raised.count("doctor.device.scan-1") == 1  # raised once, not again on the second run
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await journal.close()


async def test_daily_checks_follow_the_config_a_sighup_applied(tmp_path: Path) -> None:
    """Found by replacing a scanner on a running gateway: the checks kept the start's config, so they raised an
    alarm for the scanner the technician had removed (it could not clear without a restart) and never looked at
    the new one. A SIGHUP hands them the config it applied, and they run `first_after_s` later."""
    from gateway.app import App
    from gateway.clock import SystemClock
    from gateway.config import load_config

    base = f'data_dir = "{tmp_path / "gw"}"\n[http]\nhost = "127.0.0.1"\nport = {free_port()}\n'

    def scanner(name: str) -> str:
        return f'[[scanners]]\nid = "{name}"\nport = "{tmp_path / name}"\n'  # neither is plugged in

    path = tmp_path / "gw.toml"
    path.write_text(base + scanner("scan-old"), encoding="utf-8")
    app = App(load_config(path), SystemClock(), config_path=path, connect_mqtt=False, web=False)
    task = asyncio.create_task(app.run(install_signals=False), name="daily-reload-gateway")
    try:
        await _until(app.ready.is_set)
        part = next(p for p in app.parts if isinstance(p, DailyChecks))
        part.options = Options(who=identity(), now=app.clock.now, in_gateway=True, timeout_s=3,
                               run=lambda c, t: (0, "yes"))
        part.due = 0.0  # now
        await _until(lambda: part.runs == 1)
        assert app.service is not None
        alarms = app.service.floor.alarms
        assert "doctor.device.scan-old" in alarms
        path.write_text(base + scanner("scan-new"), encoding="utf-8")
        app.reload()
        assert part.cfg is app.cfg and [s.id for s in part.cfg.scanners] == ["scan-new"]
        part.due = 0.0  # the run a reload schedules, without waiting its 120 s
        await _until(lambda: part.runs == 2)
        assert "doctor.device.scan-old" not in alarms and "doctor.device.scan-new" in alarms
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)


def test_database_files_the_service_user_cannot_write(tmp_path: Path) -> None:
    """The classic: `sudo sqlite3 floorgate.db` leaves root-owned -wal/-shm files behind."""
    from gateway.ops.doctor import check_data_dir

    if os.geteuid() != 0:
        pytest.skip("making root-owned files needs root")
    cfg = _cfg(tmp_path)
    data = Path(cfg.data_dir)
    data.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    who = Identity("nobody", nobody.pw_uid, frozenset({nobody.pw_gid}))
    assert row(check_data_dir(cfg, opts(who=who)), "data_dir").status == OK
    shm = data / "floorgate.db-shm"
    shm.write_bytes(b"")
    shm.chmod(0o644)
    c = row(check_data_dir(cfg, opts(who=who)), "data_dir")
    assert c.status == FAIL and "floorgate.db-shm" in c.what and "sudo chown nobody:" in c.fix
