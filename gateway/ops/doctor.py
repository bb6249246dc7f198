"""`floorgate doctor`: everything a technician checks first, each as one row with what is wrong and the fix.

The checks only look: devices are stat()ed, never opened (opening a serial port toggles DTR, and the
running gateway holds them); the database is read through a read-only connection (safe while the gateway
writes, WAL); the broker gets its own connection with a distinct client id, so the gateway's session is
never taken over. The same checks run once a day inside the gateway (`DailyChecks`) and become alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.config import Config, ConfigError, load_config
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal.schema import LATEST
from gateway.ops import dbinfo
from gateway.ops.certs import CertError, credential_expiry, read_certificates
from gateway.ops.lock import holder
from gateway.service import FloorService

log = logging.getLogger("floorgate.doctor")

OK, WARN, FAIL = "ok", "warn", "fail"
CERT_WARN_DAYS = 14
SERVICE_USER = "floorgate"
SERVICE_GROUPS = ("dialout", "input")  # SupplementaryGroups= of floorgate.service
DISK_FAIL_BYTES = 64 * 1024 * 1024
UNSTABLE_TTY = re.compile(r"^/dev/tty(USB|ACM|S|AMA)\d+$")
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
ALARM_PREFIX = "doctor."


@dataclass(frozen=True, slots=True)
class Check:
    id: str  # stable: names the alarm raised for it inside the gateway
    name: str
    status: str  # ok | warn | fail
    what: str  # the finding: what is wrong, or what was found fine
    fix: str = ""
    code: str = ""  # alarm code
    alarm: bool = True  # raise an alarm for it inside the gateway (not for facts only a person needs)
    severity: str = ""  # alarm severity override; default warning for warn, critical for fail

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "id": self.id, "status": self.status, "what": self.what, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose access to devices and files is checked: the service user, not whoever runs `doctor`."""

    name: str
    uid: int
    gids: frozenset[int]

    def group_names(self) -> list[str]:
        out = []
        for g in sorted(self.gids):
            try:
                out.append(grp.getgrgid(g).gr_name)
            except KeyError:
                out.append(str(g))
        return out


def identity(user: str | None = None, service_groups: Sequence[str] = ()) -> Identity:
    if user is None:
        gids = set(os.getgroups()) | {os.getegid()}
        try:
            name = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            name = str(os.geteuid())
        uid = os.geteuid()
    else:
        pw = pwd.getpwnam(user)
        name, uid = pw.pw_name, pw.pw_uid
        gids = set(os.getgrouplist(user, pw.pw_gid))
    for g in service_groups:
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(g).gr_gid)
    return Identity(name, uid, frozenset(gids))


def default_identity() -> Identity:
    """Run by root on an installed box: check for the service user with the unit's groups."""
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            return identity(SERVICE_USER, SERVICE_GROUPS)
    return identity()


def can_access(st: os.stat_result, who: Identity, read: bool, write: bool, execute: bool = False) -> bool:
    """Unix permission bits as the kernel applies them (ACLs aside)."""
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        r, w, x = stat.S_IRUSR, stat.S_IWUSR, stat.S_IXUSR
    elif st.st_gid in who.gids:
        r, w, x = stat.S_IRGRP, stat.S_IWGRP, stat.S_IXGRP
    else:
        r, w, x = stat.S_IROTH, stat.S_IWOTH, stat.S_IXOTH
    mode = st.st_mode
    return (not read or bool(mode & r)) and (not write or bool(mode & w)) and (not execute or bool(mode & x))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def run_command(cmd: Sequence[str], timeout: float = 5.0) -> tuple[int, str]:
    """(returncode, stdout+stderr); 127 when the program is missing. For the CLI thread, never the loop."""
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"{cmd[0]}: not installed"
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]}: no answer within {timeout:.0f} s"
    except OSError as e:
        return 126, f"{cmd[0]}: {e}"
    return p.returncode, (p.stdout + p.stderr).strip()


@dataclass
class Options:
    who: Identity = field(default_factory=default_identity)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    timeout_s: float = 5.0
    run: Callable[[Sequence[str], float], tuple[int, str]] = run_command
    timesync_flag: str = TIMESYNC_FLAG
    in_gateway: bool = False  # DailyChecks: skip what only makes sense from outside


# -- config ---------------------------------------------------------------------------------------------

def check_config(path: str) -> tuple[Config | None, Check]:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        fix = (f"edit {e.file}" + (f" and correct `{e.key}`" if e.key else "")
               + "; every key is described in /etc/floorgate/floorgate.toml.example")
        if "file not found" in e.expected:
            fix = "give the right --config path (installed: /etc/floorgate/floorgate.toml)"
        return None, Check("config", "config", FAIL, str(e), fix, "config_invalid")
    notes = []
    if not cfg.packing.sscc_company_prefix:
        notes.append("packing.sscc_company_prefix is not set: SSCCs use GS1's demo prefix")
    if notes:
        return cfg, Check("config", "config", WARN, f"{path} loads, but " + "; ".join(notes),
                          "set packing.sscc_company_prefix to your GS1 company prefix", "config_warning")
    return cfg, Check("config", "config", OK, f"{path} loads ({cfg.site}/{cfg.gateway})")


# -- files, disk, database ----------------------------------------------------------------------------

def _existing_ancestor(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_data_dir(cfg: Config, o: Options) -> list[Check]:
    d = Path(cfg.data_dir)
    out = []
    if not d.exists():
        out.append(Check("data_dir", "data directory", WARN, f"{d} does not exist yet",
                         f"it is made at the first start of the service (StateDirectory=); by hand: "
                         f"sudo install -d -o {o.who.name} -m 0750 {d}", "data_dir_missing", alarm=False))
    else:
        st = d.stat()
        if not can_access(st, o.who, True, True, True):
            out.append(Check("data_dir", "data directory", FAIL,
                             f"{o.who.name} cannot write {d} (owner {_user_name(st.st_uid)}, group "
                             f"{_group_name(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o})",
                             f"sudo chown -R {o.who.name}: {d}", "data_dir_access"))
        else:
            # A `sqlite3 floorgate.db` run as root leaves root-owned -wal/-shm files behind: the gateway then
            # fails with "attempt to write a readonly database".
            stuck = []
            for suffix in ("", "-wal", "-shm"):
                f = Path(str(cfg.db_path) + suffix)
                with contextlib.suppress(FileNotFoundError):
                    if not can_access(f.stat(), o.who, True, True):
                        stuck.append(f.name)
            if stuck:
                out.append(Check("data_dir", "data directory", FAIL,
                                 f"{o.who.name} cannot write {', '.join(stuck)} in {d}",
                                 f"sudo chown {o.who.name}: {d}/floorgate.db*", "data_dir_access"))
            else:
                out.append(Check("data_dir", "data directory", OK, f"{d} is writable for {o.who.name}"))
    try:
        usage = shutil.disk_usage(_existing_ancestor(d))
    except OSError as e:
        return [*out, Check("disk", "disk space", WARN, f"cannot measure free space at {d}: {e}")]
    used = 0
    with contextlib.suppress(OSError):
        used = sum(dbinfo.file_sizes(cfg.db_path).values())
    headroom = cfg.sync.max_db_mb * 1024 * 1024 - used
    free_mb = usage.free / 1e6
    if usage.free < DISK_FAIL_BYTES:
        out.append(Check("disk", "disk space", FAIL, f"only {free_mb:.0f} MB free on the disk of {d}",
                         "free disk space (old logs: sudo journalctl --vacuum-size=200M; old backups), "
                         "or move data_dir to a bigger disk", "disk_low"))
    elif usage.free < headroom:
        out.append(Check("disk", "disk space", WARN,
                         f"{free_mb:.0f} MB free, but sync.max_db_mb lets the database grow "
                         f"{headroom / 1e6:.0f} MB more: the disk fills before the cap protects it",
                         "free disk space or lower sync.max_db_mb", "disk_low"))
    else:
        out.append(Check("disk", "disk space", OK, f"{free_mb:.0f} MB free ({usage.free * 100 // usage.total}%)"))
    return out


def check_database(cfg: Config, o: Options) -> list[Check]:
    path = cfg.db_path
    if not path.exists():
        return [Check("database", "database", OK, f"{path} not created yet (the gateway creates it at start)")]
    try:
        conn = dbinfo.connect_ro(path, timeout_s=o.timeout_s)
    except Exception as e:
        return [Check("database", "database", FAIL, f"cannot open {path}: {e}",
                      f"check its owner and mode (ls -l {path}*)", "db_open")]
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > LATEST:
            return [Check("database", "database", FAIL,
                          f"schema version {version} is newer than this Floorgate understands ({LATEST})",
                          "install the Floorgate version that wrote it, or restore a backup", "db_version")]
        result = dbinfo.integrity(conn)
        meta = dbinfo.read_meta(conn)
    except sqlite3.OperationalError as e:  # busy, locked, I/O: not proof of damage
        return [Check("database", "database", WARN, f"could not check {path}: {e}",
                      "run doctor again; if it persists, look at `journalctl -u floorgate`", "db_check")]
    except sqlite3.DatabaseError as e:
        result, meta = [str(e)], {}
    finally:
        conn.close()
    if result != ["ok"]:
        return [Check("database", "database", FAIL, "quick_check found damage: " + "; ".join(result[:3]),
                      "stop the gateway, keep a copy (floorgate backup), then floorgate restore --from the "
                      "last good backup (see docs/install.md)", "db_integrity")]
    return [Check("database", "database", OK,
                  f"quick_check ok; journal {meta.get('journal_id', '?')[:8]}, last seq {meta.get('last_seq', '0')}, "
                  f"hub acked {meta.get('hub_acked_seq', '0')}")]


def check_running(cfg: Config, o: Options) -> list[Check]:
    pid = holder(cfg.data_dir)
    if pid is None:
        return [Check("gateway", "gateway", WARN, "no gateway holds the run lock of this data_dir (not running)",
                      "sudo systemctl start floorgate; then: journalctl -u floorgate -n 50", alarm=False)]
    return [Check("gateway", "gateway", OK, "running" + (f" (pid {pid})" if pid > 0 else ""), alarm=False)]


# -- devices --------------------------------------------------------------------------------------------

def device_paths(cfg: Config) -> list[tuple[str, str, str, bool]]:
    """(check id, label, path, needs write) for every device file the config names."""
    out = []
    for s in cfg.scanners:
        if s.kind == "serial":
            out.append((f"device.{s.id}", f"scanner {s.id}", s.port, True))
        else:
            out.append((f"device.{s.id}", f"scanner {s.id}", s.path, False))
    for b in cfg.ptl.buses:
        if b.transport == "rtu":
            out.append((f"device.{b.id}", f"PTL bus {b.id}", str(b.port), True))
    for sc in cfg.scales:
        out.append((f"device.{sc.id}", f"scale {sc.id}", sc.port, True))
    return out


def check_device(cid: str, label: str, path: str, write: bool, o: Options) -> Check:
    p = Path(path)
    plug_fix = ("plug the device in; `ls -l /dev/floorgate/ /dev/serial/by-id/ /dev/input/by-id/` lists what "
                "is connected, `sudo dmesg | tail` shows what the kernel saw")
    if not p.exists():
        if p.is_symlink():
            what = f"{path} points to {os.readlink(p)}, which is not there: the device is unplugged"
        else:
            what = f"{path} does not exist"
        fix = plug_fix
        if path.startswith("/dev/floorgate/"):
            fix += ("; names under /dev/floorgate/ come from /etc/udev/rules.d/99-floorgate.rules (installed by "
                    "scripts/install.sh; reload: sudo udevadm control --reload && sudo udevadm trigger)")
        return Check(cid, label, FAIL, what, fix, "device_missing")
    try:
        st = p.stat()
    except OSError as e:
        return Check(cid, label, FAIL, f"cannot stat {path}: {e}", plug_fix, "device_missing")
    if not stat.S_ISCHR(st.st_mode):
        return Check(cid, label, FAIL, f"{path} is not a device file", "point the config at the device under "
                     "/dev (e.g. /dev/floorgate/scanner-<serial>)", "device_not_char")
    mode = "read/write" if write else "read"
    if not can_access(st, o.who, True, write):
        group = _group_name(st.st_gid)
        what = (f"{o.who.name} cannot {mode} {path} (owner {_user_name(st.st_uid)}, group {group}, "
                f"mode {stat.S_IMODE(st.st_mode):04o})")
        if group == "root" or not st.st_mode & stat.S_IRGRP:
            fix = ("install the udev rules so the device gets group dialout (serial) or input (HID): "
                   "scripts/install.sh, or copy systemd/99-floorgate.rules to /etc/udev/rules.d/ and run "
                   "sudo udevadm control --reload && sudo udevadm trigger")
        else:
            fix = (f"the device needs group {group}: sudo usermod -aG {group} {o.who.name} (the service unit "
                   f"already adds SupplementaryGroups={' '.join(SERVICE_GROUPS)}); log in again / restart")
        return Check(cid, label, FAIL, what, fix, "device_access")
    if UNSTABLE_TTY.match(path):
        return Check(cid, label, WARN, f"{path} is present, but its number can change after a reboot or replug",
                     "use the stable name: /dev/floorgate/rs485-<serial> or /dev/floorgate/scanner-<serial> "
                     "(udev rules), or /dev/serial/by-id/...", "device_unstable_name", severity="info")
    return Check(cid, label, OK, f"{path} present, {mode} for {o.who.name}")


def check_devices(cfg: Config, o: Options) -> list[Check]:
    out = [check_device(cid, label, path, write, o) for cid, label, path, write in device_paths(cfg)]
    targets: list[tuple[str, str, str, int]] = [
        (f"device.{b.id}", f"PTL bus {b.id}", b.host, int(b.port)) for b in cfg.ptl.buses if b.transport == "tcp"]
    targets += [(f"device.{p.id}", f"printer {p.id}", p.host, p.port) for p in cfg.printers]
    for cid, label, host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=min(o.timeout_s, 3.0)):
                pass
        except OSError as e:
            out.append(Check(cid, label, FAIL, f"cannot connect to {host}:{port}: {e.strerror or e}",
                             "check the device's power and network cable, its address in the config, "
                             f"and `nc -vz {host} {port}`", "device_unreachable"))
        else:
            out.append(Check(cid, label, OK, f"{host}:{port} accepts connections"))
    return out


def check_conflicts(cfg: Config, o: Options) -> list[Check]:
    """Services that grab USB serial devices behind the gateway's back."""
    serial = [p for _, _, p, w in device_paths(cfg) if w]
    if not serial or o.in_gateway:
        return []
    out = []
    _, text = o.run(["systemctl", "is-active", "ModemManager"], o.timeout_s)
    if text.strip() == "active":
        out.append(Check("modemmanager", "ModemManager", WARN,
                         "ModemManager is running: it probes new serial devices with AT commands, which "
                         "scanners and RS-485 adapters may take as data",
                         "sudo systemctl disable --now ModemManager (the udev rules also mark our devices "
                         "ID_MM_DEVICE_IGNORE)", alarm=False))
    if shutil.which("brltty"):
        out.append(Check("brltty", "brltty", WARN,
                         "brltty (braille display daemon) is installed: its udev rules can claim CH340/CP210x "
                         "USB-serial adapters, which then vanish a second after plugging in",
                         "sudo apt purge brltty", alarm=False))
    return out


# -- broker, certificates, secrets -------------------------------------------------------------------------

def _doctor_client_id() -> str:
    # 18 characters: fits brokers that cap ids at 23, and never equals the gateway's own id.
    return "fg-doctor-" + secrets.token_hex(4)


def _mqtt_connect(cfg: Config, password: str, timeout: float) -> tuple[str, str, str]:
    """One MQTT CONNECT: (status, what, fix)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    m = cfg.mqtt
    result: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=_doctor_client_id(), clean_session=True,
                    protocol=paho.MQTTv311)
    c.on_connect = on_connect
    c.connect_timeout = timeout
    if m.username:
        c.username_pw_set(m.username, password or None)
    if m.tls:
        try:
            ctx = ssl.create_default_context(cafile=m.ca_file or None)
            if m.cert_file:
                ctx.load_cert_chain(m.cert_file, m.key_file or None)
        except (OSError, ssl.SSLError) as e:
            return FAIL, f"cannot load the TLS files (ca_file/cert_file/key_file): {e}", \
                "check the paths in [mqtt] and that the service user can read them"
        c.tls_set_context(ctx)
    where = f"{m.host}:{m.port}"
    try:
        c.connect(m.host, m.port, keepalive=max(int(timeout) * 2, 5))
        deadline = time.monotonic() + timeout
        while "reason" not in result and time.monotonic() < deadline:
            c.loop(timeout=0.1)
    except ssl.SSLCertVerificationError as e:
        return FAIL, f"TLS to {where}: the broker's certificate was not accepted: {e.verify_message}", \
            "mqtt.ca_file must hold the CA that signed the broker's certificate, and mqtt.host must be a " \
            "name in that certificate"
    except ssl.SSLError as e:
        hint = " (is mqtt.port a TLS port? 8883 usually is, 1883 is not)" if "WRONG_VERSION" in str(e).upper() else ""
        return FAIL, f"TLS handshake with {where} failed: {e.reason or e}{hint}", \
            "check mqtt.tls, mqtt.port and the certificate files"
    except (OSError, ValueError) as e:
        return FAIL, f"MQTT connection to {where} failed: {e}", "check mqtt.host, mqtt.port and mqtt.tls"
    finally:
        with contextlib.suppress(Exception):
            c.disconnect()
        with contextlib.suppress(Exception):
            c.loop(timeout=0.05)
        with contextlib.suppress(Exception):
            c._sock_close()  # paho keeps the socket until its loop runs again; do not leak it
    reason = result.get("reason")
    if reason is None:
        return FAIL, f"{where} accepts TCP but sent no MQTT CONNACK within {timeout:.0f} s", \
            "is this the broker's MQTT port? with TLS on the broker, set mqtt.tls = true"
    if reason.is_failure:
        text = str(reason)
        if "identifier" in text.lower():
            return WARN, f"the broker refused the doctor's client id ({text}); it may allow only fixed ids", \
                "nothing to do if the gateway itself connects; else check the broker's client id rules"
        return FAIL, f"the broker refused the connection: {text}", \
            "check mqtt.username and the password in mqtt.password_file, and the broker's ACL for this user"
    return OK, f"{where}: MQTT CONNECT accepted" + (" over TLS" if m.tls else ""), ""


def check_broker(cfg: Config, o: Options) -> list[Check]:
    m = cfg.mqtt
    where = f"{m.host}:{m.port}"
    try:
        with socket.create_connection((m.host, m.port), timeout=o.timeout_s):
            pass
    except socket.gaierror as e:
        return [Check("broker", "MQTT broker", FAIL, f"cannot resolve mqtt.host {m.host!r}: {e.strerror}",
                      "check mqtt.host and the DNS settings (/etc/resolv.conf)", "broker_unreachable")]
    except OSError as e:
        return [Check("broker", "MQTT broker", FAIL, f"cannot reach {where}: {e.strerror or e}",
                      f"check that the broker runs and listens on {where}, mqtt.host/mqtt.port in the config, "
                      f"and firewalls (try: nc -vz {m.host} {m.port})", "broker_unreachable")]
    password = ""
    if m.password_file:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            password = Path(m.password_file).read_text(encoding="utf-8").strip()
    status, what, fix = _mqtt_connect(cfg, password, o.timeout_s)
    code = "" if status == OK else ("broker_tls" if "TLS" in what else "broker_refused")
    return [Check("broker", "MQTT broker", status, what, fix, code)]


def _file_access(cid: str, label: str, path: str, o: Options, secret: bool) -> Check | None:
    """None when fine; else a row saying why the service user cannot use the file."""
    p = Path(path)
    if not p.exists():
        return Check(cid, label, FAIL, f"{path} does not exist", "fix the path in the config", "file_missing")
    st = p.stat()
    if not can_access(st, o.who, True, False):
        return Check(cid, label, FAIL, f"{o.who.name} cannot read {path} (owner {_user_name(st.st_uid)}, "
                     f"group {_group_name(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o})",
                     f"sudo chgrp {o.who.name} {path} && sudo chmod 0640 {path}", "file_access")
    if secret and st.st_mode & stat.S_IROTH:
        return Check(cid, label, WARN, f"{path} is readable by every user on this box "
                     f"(mode {stat.S_IMODE(st.st_mode):04o})",
                     f"sudo chgrp {o.who.name} {path} && sudo chmod 0640 {path}", "file_mode", severity="info")
    return None


def _expiry_row(cid: str, label: str, not_after: datetime, detail: str, now: datetime, what_kind: str,
                fix: str) -> Check:
    days = (not_after - now).total_seconds() / 86400
    until = not_after.strftime("%Y-%m-%d")
    if days < 0:
        return Check(cid, label, FAIL, f"{detail}expired on {until}", fix, f"{what_kind}_expired")
    if days < CERT_WARN_DAYS:
        return Check(cid, label, WARN, f"{detail}{int(days)} days left (until {until})", fix,
                     f"{what_kind}_expiring")
    return Check(cid, label, OK, f"{detail}{int(days)} days left (until {until})")


def check_certificates(cfg: Config, o: Options) -> list[Check]:
    files: list[tuple[str, str, str]] = []
    if cfg.mqtt.tls:
        files += [("mqtt.ca_file", "MQTT CA certificate", cfg.mqtt.ca_file),
                  ("mqtt.cert_file", "MQTT client certificate", cfg.mqtt.cert_file)]
    if cfg.http.tls_cert_file and cfg.http.tls_key_file:
        files.append(("http.tls_cert_file", "HTTPS certificate", cfg.http.tls_cert_file))
    now = o.now()
    out = []
    for key, label, path in files:
        if not path:
            continue
        cid = f"cert.{key}"
        bad = _file_access(cid, label, path, o, secret=False)
        if bad is not None:
            out.append(bad)
            continue
        try:
            certs = read_certificates(path)
        except (OSError, CertError) as e:
            out.append(Check(cid, label, FAIL, f"{path}: cannot read a certificate: {e}",
                             f"{key} must be a PEM certificate file", "cert_unreadable"))
            continue
        first = min(certs, key=lambda c: c.not_after)
        fix = f"get a renewed certificate, replace {path}, then sudo systemctl restart floorgate"
        if first.not_before > now:
            out.append(Check(cid, label, WARN, f"{path}: not valid before {first.not_before:%Y-%m-%d}",
                             "check the clock of this box (doctor's clock row) or the certificate", "cert_not_yet"))
            continue
        name = f"{path} (CN={first.subject}): " if first.subject else f"{path}: "
        out.append(_expiry_row(cid, label, first.not_after, name, now, "cert", fix))
    for key, label, path in (("mqtt.key_file", "MQTT client key", cfg.mqtt.key_file if cfg.mqtt.tls else ""),
                             ("http.tls_key_file", "HTTPS key", cfg.http.tls_key_file)):
        if path:
            bad = _file_access(f"key.{key}", label, path, o, secret=True)
            out.append(bad or Check(f"key.{key}", label, OK, f"{path} readable for {o.who.name} only"))
    return out


def check_secrets(cfg: Config, o: Options) -> list[Check]:
    out = []
    for key, label, path in (("mqtt.password_file", "MQTT password file", cfg.mqtt.password_file),
                             ("alarms.smtp.password_file", "SMTP password file", cfg.alarms.smtp.password_file)):
        if not path:
            continue
        cid = f"secret.{key}"
        bad = _file_access(cid, label, path, o, secret=True)
        if bad is not None and bad.status == FAIL:
            out.append(bad)
            continue
        expiry = None
        with contextlib.suppress(OSError, UnicodeDecodeError):
            expiry = credential_expiry(Path(path).read_text(encoding="utf-8"))
        if expiry is not None:
            row = _expiry_row(cid, label, expiry, f"{path}: the credential in it ", o.now(), "credential",
                              f"get a new credential from the broker's operator and write it to {path}")
            out.append(row if row.status != OK or bad is None else bad)
        else:
            out.append(bad or Check(cid, label, OK, f"{path} readable for {o.who.name}, not for others"))
    return out


# -- clock ----------------------------------------------------------------------------------------------------

def check_clock(o: Options) -> list[Check]:
    now = o.now()
    if now.year < 2025:
        return [Check("clock", "clock", FAIL, f"the clock says {now:%Y-%m-%d %H:%M} UTC, which is wrong",
                      "connect the box to an NTP server (timedatectl set-ntp true) or set the time; "
                      "a Raspberry Pi has no battery clock", "clock_wrong")]
    if Path(o.timesync_flag).exists():
        return [Check("clock", "clock", OK, "synchronized (systemd-timesyncd)")]
    rc, text = o.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], o.timeout_s)
    if rc == 0 and text.strip() == "yes":
        return [Check("clock", "clock", OK, "synchronized (NTP)")]
    if rc == 0 and text.strip() == "no":
        return [Check("clock", "clock", WARN, "not synchronized with NTP: event times may drift",
                      "sudo timedatectl set-ntp true; check that the box reaches an NTP server "
                      "(timedatectl timesync-status)", "clock_unsynced")]
    first = text.splitlines()[0] if text else f"exit {rc}"
    return [Check("clock", "clock", WARN, f"synchronization unknown ({first})",
                  "install and enable systemd-timesyncd or chrony", "clock_unknown", alarm=False)]


# -- all of it -------------------------------------------------------------------------------------------------

def run_checks(cfg: Config, o: Options) -> list[Check]:
    """Every check after the config; blocking (sockets, subprocesses): call from a thread in the gateway."""
    out: list[Check] = []
    groups: list[Callable[[Config, Options], list[Check]]] = [
        check_data_dir, check_database, check_devices, check_conflicts, check_broker, check_certificates,
        check_secrets]
    if not o.in_gateway:
        groups.insert(2, check_running)
    for fn in groups:
        try:
            out.extend(fn(cfg, o))
        except Exception as e:  # a bug in one check must not hide the others
            log.exception("check failed")
            out.append(Check(fn.__name__, fn.__name__.removeprefix("check_"), WARN, f"check crashed: {e!r}",
                             "please report this with a support bundle", alarm=False))
    out.extend(check_clock(o))
    return out


def doctor(config_path: str, o: Options) -> list[Check]:
    cfg, row = check_config(config_path)
    if cfg is None:
        return [row, *check_clock(o)]
    return [row, *run_checks(cfg, o)]


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def render_table(checks: Sequence[Check], width: int | None = None) -> str:
    width = width or max(shutil.get_terminal_size((120, 24)).columns, 80)
    name_w = min(max(len(c.name) for c in checks), 24) if checks else 10
    status_w = 6
    rest = width - name_w - status_w - 6
    what_w = max(rest // 2, 24)
    fix_w = max(rest - what_w, 24)
    head = f"{'CHECK':<{name_w}}  {'STATUS':<{status_w}}  {'WHAT':<{what_w}}  FIX"
    lines = [head, "-" * min(width, len(head) + fix_w)]
    for c in checks:
        # Paths and commands must stay whole to be copied: wrap only at spaces.
        name = textwrap.wrap(c.name, name_w, break_on_hyphens=False, break_long_words=False) or [""]
        what = textwrap.wrap(c.what, what_w, break_on_hyphens=False, break_long_words=False) or [""]
        fix = textwrap.wrap(c.fix, fix_w, break_on_hyphens=False, break_long_words=False) or [""]
        n = max(len(name), len(what), len(fix))
        for i in range(n):
            cells = (name[i] if i < len(name) else "", c.status.upper() if i == 0 else "",
                     what[i] if i < len(what) else "", fix[i] if i < len(fix) else "")
            lines.append(f"{cells[0]:<{name_w}}  {cells[1]:<{status_w}}  {cells[2]:<{what_w}}  {cells[3]}".rstrip())
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    lines.append("")
    lines.append(f"{len(checks)} checks: {fails} failed, {warns} warnings")
    return "\n".join(lines)


# -- inside the gateway -----------------------------------------------------------------------------------------

class DailyChecks:
    """A part: the doctor's checks shortly after start and then daily, as alarms through the domain.

    A row that is no longer a problem clears its alarm; so does a row that disappears (a device removed from
    the config). Timing runs on `clock.monotonic()`, so a ManualClock drives it in tests.
    """

    name = "daily-checks"

    def __init__(self, cfg: Config, service: FloorService, clock: Clock, *, first_after_s: float = 120.0,
                 every_s: float = 86400.0, poll_s: float = 1.0, options: Options | None = None) -> None:
        self.cfg = cfg
        self.service = service
        self.clock = clock
        self.first_after_s = first_after_s
        self.every_s = every_s
        self.poll_s = poll_s
        self.options = options or Options(who=identity(), now=clock.now, in_gateway=True)
        self.runs = 0
        self.last: list[Check] = []
        self.due = clock.monotonic() + first_after_s

    def reconfigure(self, cfg: Config) -> None:
        """A SIGHUP applied `cfg`: check what it configures, `first_after_s` from now (the devices it adds have
        started by then). Kept to the start's config, the checks went on raising an alarm for a scanner the
        technician had removed (it could not clear without a restart) and never looked at the new one."""
        self.cfg = cfg
        self.due = min(self.due, self.clock.monotonic() + self.first_after_s)

    async def run(self) -> None:
        while True:
            if self.clock.monotonic() >= self.due:
                self.due = self.clock.monotonic() + self.every_s
                try:
                    await self.run_once()
                except Exception:
                    log.exception("daily checks failed")
            await asyncio.sleep(self.poll_s)

    async def run_once(self) -> list[Check]:
        checks = await asyncio.to_thread(run_checks, self.cfg, self.options)
        now = self.clock.now()
        wanted = {ALARM_PREFIX + c.id: c for c in checks if c.alarm and c.status in (WARN, FAIL)}
        fine = {ALARM_PREFIX + c.id for c in checks if c.alarm and c.status == OK}

        def apply(floor: Floor, change: Change) -> None:
            for alarm_id, c in wanted.items():
                severity = c.severity or ("critical" if c.status == FAIL else "warning")
                message = f"{c.name}: {c.what}" + (f". Fix: {c.fix}" if c.fix else "")
                raise_alarm(floor, change, alarm_id, c.code or c.id, severity, message, now)
            for alarm_id in [a for a in floor.alarms if a.startswith(ALARM_PREFIX) and a not in wanted]:
                clear_alarm(floor, change, alarm_id, "check passed" if alarm_id in fine else "no longer checked")

        await self.service.execute(apply)
        self.runs += 1
        self.last = checks
        bad = [c for c in checks if c.status != OK]
        log.info("daily checks done", extra={"fields": {
            "checks": len(checks), "problems": [f"{c.name}: {c.status}" for c in bad][:10]}})
        return checks
