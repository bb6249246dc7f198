"""`floorgate support-bundle`: one .tar.gz with what support needs, and no secret.

Secrets are kept out twice: the config is rewritten with every value whose key names a password, secret
or token replaced (and URLs cut to scheme and host, since webhook URLs carry their token in the path);
then every text in the bundle is scrubbed of every secret value known (those values and the contents of
the password files), so a password that leaked into a log line is masked too. Key and certificate files
are never read; their paths stay, since a wrong path is a common fault.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import socket
import ssl
import sys
import tarfile
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import __version__
from gateway.config import Config, ConfigError, load_config
from gateway.ops import dbinfo
from gateway.ops.doctor import Options, doctor, render_table, run_command
from gateway.ops.lock import holder

SECRET_KEY = re.compile(r"pass|secret|token|credential|api_?key|private", re.I)
PATH_KEY = re.compile(r"(_file|_path|_dir)$", re.I)
REDACTED = "***"
# What the running gateway tells anyone on its HTTP port (docs/web.md: public by design, no session, no
# operator id in them): health (journal integrity, last seq, MQTT link) and /metrics (per-scanner scans and
# rejects, PTL bus and module transactions and misses, devices online by kind, sync backlog, storage).
# The technician page's `/api/v1/technician/devices` has more, but it needs a login, and its last raw scans
# may hold badge codes, which are credentials of a kind: it stays out of a bundle sent off site.
GATEWAY_ENDPOINTS = (("/healthz", "gateway-healthz.json"), ("/metrics", "gateway-metrics.txt"))
LOG_LINES = 50_000
DEVICE_DIRS = ("/dev/floorgate", "/dev/serial/by-id", "/dev/input/by-id")


# -- redaction ----------------------------------------------------------------------------------------------

def _is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key)) and not PATH_KEY.search(key)


def redact_url(url: str) -> str:
    """Scheme and host only: user info, path and query of a webhook URL are often the credential."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    rest = "/" + REDACTED if (parts.path not in ("", "/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _redact_value(key: str, value: Any, found: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _redact_value(k, v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(key, v, found) for v in value]
    if _is_secret_key(key):
        if isinstance(value, str) and value:
            found.append(value)
        return REDACTED
    if isinstance(value, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        return redact_url(value)
    return value


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))  # dates and times


def to_toml(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, t in tables:
        name = ".".join(_toml_key(p) for p in (*prefix, k))
        lines += ["", f"[{name}]", to_toml(t, (*prefix, k))]
    for k, items in arrays:
        name = ".".join(_toml_key(p) for p in (*prefix, k))
        for item in items:
            lines += ["", f"[[{name}]]", to_toml(item, (*prefix, k))]
    return "\n".join(x for x in lines if x is not None).strip("\n") + ("\n" if not prefix else "")


LINE_KV = re.compile(r"^(\s*)([A-Za-z0-9_.\"'-]+)(\s*=\s*)(.*)$")


def redact_config_text(text: str) -> tuple[str, list[str]]:
    """The config with secrets replaced; when it is not valid TOML, line by line (and it says so)."""
    found: list[str] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        out = [f"# NOTE: this config is not valid TOML ({e}); secrets were removed line by line"]
        for line in text.splitlines():
            m = LINE_KV.match(line)
            if m and _is_secret_key(m.group(2).strip("\"'").split(".")[-1]):
                value = m.group(4).strip().strip("\"'")
                if value:
                    found.append(value)
                out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}\"{REDACTED}\"")
            elif m:
                out.append(re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"']+", lambda u: redact_url(u.group(0)), line))
            else:
                out.append(line)
        return "\n".join(out) + "\n", found
    redacted = _redact_value("", data, found)
    return "# secrets replaced by *** (support bundle)\n" + to_toml(redacted), found


def secret_file_paths(data: dict[str, Any]) -> list[str]:
    """Paths of files that hold a secret (`password_file` and the like), anywhere in the config."""
    out: list[str] = []

    def walk(key: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k, x)
        elif isinstance(v, list):
            for x in v:
                walk(key, x)
        elif isinstance(v, str) and v and SECRET_KEY.search(key) and PATH_KEY.search(key):
            out.append(v)

    walk("", data)
    return out


def scrub(text: str, secrets: Sequence[str]) -> str:
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= 3:
            text = text.replace(s, REDACTED)
    return text


# -- collecting -------------------------------------------------------------------------------------------------

def _logs(unit: str, manifest: list[str]) -> dict[str, str]:
    out = {}
    rc, text = run_command(["journalctl", "-u", unit, "--since", "-24h", "--no-pager", "-o", "short-iso-precise",
                            "-n", str(LOG_LINES)], 60)
    empty = not text.strip() or ("No entries" in text and len(text.splitlines()) <= 2)
    if rc != 0 or empty:
        why = "journalctl is not installed" if rc == 127 else (text.strip() or f"exit {rc}")
        out["logs/README.txt"] = (f"No logs of {unit}.service from the last day could be collected:\n{why}\n\n"
                                  "If the gateway does not run under systemd, attach its stdout (JSON lines).\n")
        manifest.append(f"logs: not available ({why.splitlines()[0] if why else rc})")
    else:
        out[f"logs/{unit}.log"] = text + "\n"
        manifest.append(f"logs: {len(text.splitlines())} lines of journalctl -u {unit} (last 24 h)")
    rc, text = run_command(["journalctl", "-k", "--since", "-24h", "--no-pager", "-o", "short-iso-precise",
                            "-n", str(LOG_LINES)], 60)
    if rc == 0 and text.strip() and "No entries" not in text[:200]:
        out["logs/kernel.log"] = text + "\n"
        manifest.append("kernel log: last 24 h (USB plug/unplug, serial errors)")
    rc, text = run_command(["systemctl", "status", unit, "--no-pager", "-l", "-n", "0"], 10)
    out["logs/systemctl-status.txt"] = text + "\n"
    return out


def _system_info(cfg: Config | None) -> str:
    lines = [f"floorgate {__version__}", f"python {sys.version.split()[0]} ({sys.executable})",
             f"host {socket.gethostname()}", f"platform {platform.platform()}", f"machine {platform.machine()}"]
    with contextlib.suppress(OSError):
        lines.append("uptime_s " + Path("/proc/uptime").read_text().split()[0])
    with contextlib.suppress(OSError):
        lines += ["", "# /etc/os-release", Path("/etc/os-release").read_text(errors="replace").strip()]
    lines += ["", "# device names"]
    for d in DEVICE_DIRS:
        try:
            names = sorted(os.listdir(d))
        except OSError as e:
            lines.append(f"{d}: {e.strerror}")
            continue
        for n in names:
            p = Path(d) / n
            target = os.readlink(p) if p.is_symlink() else ""
            lines.append(f"{p}" + (f" -> {target}" if target else ""))
    if cfg is not None:
        with contextlib.suppress(OSError):
            import shutil

            u = shutil.disk_usage(cfg.data_dir)
            lines += ["", f"# disk of {cfg.data_dir}: {u.free / 1e6:.0f} MB free of {u.total / 1e6:.0f} MB"]
    lines += ["", "# python packages"]
    dists = sorted((d.metadata["Name"] or "?", d.version) for d in metadata.distributions())
    lines += [f"{n}=={v}" for n, v in dists]
    return "\n".join(lines) + "\n"


def _journal(cfg: Config) -> dict[str, Any]:
    try:
        stats = dbinfo.journal_stats(cfg.db_path)
    except Exception as e:
        return {"error": str(e)}
    pid = holder(cfg.data_dir)
    stats["gateway_running"] = pid is not None
    if pid:
        stats["gateway_pid"] = pid
    return stats


def _device_stats(cfg: Config, timeout: float) -> dict[str, str]:
    host = cfg.http.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    tls = bool(cfg.http.tls_cert_file and cfg.http.tls_key_file)
    base = f"{'https' if tls else 'http'}://{host}:{cfg.http.port}"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own gateway on loopback, often with a self-signed certificate
    out = {}
    for path, name in GATEWAY_ENDPOINTS:
        try:
            with urllib.request.urlopen(base + path, timeout=timeout, context=ctx if tls else None) as r:
                if r.status != 200:
                    continue
                text = r.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
            if name.endswith(".json"):
                json.loads(text)
            elif not text.startswith("# HELP"):
                continue  # not Floorgate's Prometheus text: something else answers on that port
        except Exception:
            continue  # no gateway answering, or not this endpoint: skip quietly
        out[name] = text
    return out


def build_bundle(config_path: str, out: Path, *, unit: str = "floorgate", run_doctor: bool = True,
                 http_timeout_s: float = 1.5, now: datetime | None = None) -> list[str]:
    """Write the bundle; returns the manifest lines (what is in it, what was skipped and why)."""
    now = now or datetime.now(UTC)
    manifest = [f"Floorgate support bundle, {now:%Y-%m-%d %H:%M:%S} UTC, floorgate {__version__}"]
    members: dict[str, str] = {}
    secrets: list[str] = []
    cfg: Config | None = None
    try:
        raw = Path(config_path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raw = ""
        manifest.append(f"config: cannot read {config_path}: {e.strerror}")
    if raw:
        text, found = redact_config_text(raw)
        secrets += found
        members["config/floorgate.toml"] = text
        with contextlib.suppress(tomllib.TOMLDecodeError):
            for p in secret_file_paths(tomllib.loads(raw)):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    content = Path(p).read_text(encoding="utf-8")
                    secrets += [content, content.strip(), *content.strip().splitlines()]
        manifest.append(f"config: {config_path}, secrets replaced by {REDACTED}")
    try:
        cfg = load_config(config_path)
        members["config/check.txt"] = "ok: the config loads\n"
    except ConfigError as e:
        members["config/check.txt"] = f"the config does not load:\n{e}\n"
    if run_doctor:
        members["doctor.txt"] = render_table(doctor(config_path, Options(timeout_s=3.0)), width=160) + "\n"
        manifest.append("doctor: doctor.txt")
    members.update(_logs(unit, manifest))
    if cfg is not None:
        members["journal.json"] = json.dumps(_journal(cfg), indent=2, default=str) + "\n"
        manifest.append("journal statistics: journal.json (meta, counts, sizes, pending, quick_check)")
        devices = _device_stats(cfg, http_timeout_s)
        members.update(devices)
        manifest.append("gateway and device statistics: " + (", ".join(devices) if devices else
                                                               "no gateway answered on its HTTP port (skipped)"))
    members["system.txt"] = _system_info(cfg)
    members["MANIFEST.txt"] = "\n".join(manifest) + "\n"
    root = f"floorgate-support-{cfg.gateway if cfg else 'unknown'}-{now:%Y%m%dT%H%M%SZ}"
    tmp = out.with_name(f".{out.name}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, text in members.items():
                data = scrub(text, secrets).encode("utf-8")
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return manifest
