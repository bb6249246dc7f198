"""scripts/install.sh and uninstall.sh: shellcheck-clean, and a DESTDIR install lays out the right tree."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
UNINSTALL = ROOT / "scripts" / "uninstall.sh"


def _run(script: Path, destdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "PREFIX")}
    e.update({"DESTDIR": str(destdir), **env})
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=e, timeout=60,
                          check=False)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck() -> None:
    r = subprocess.run(["shellcheck", "--severity=style", str(INSTALL), str(UNINSTALL)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_destdir_install_lays_out_the_tree(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    r = _run(INSTALL, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    expect = {
        "etc/floorgate": 0o750,
        "etc/floorgate/floorgate.toml": 0o640,
        "etc/floorgate/floorgate.toml.example": 0o644,
        "etc/systemd/system/floorgate.service": 0o644,
        "etc/systemd/system/floorgate-sim@.service": 0o644,
        "etc/systemd/system/floorgate-demo.service": 0o644,
        "etc/udev/rules.d/99-floorgate.rules": 0o644,
        "opt/floorgate/share/floorgate.toml.example": 0o644,
        "opt/floorgate/share/install.md": 0o644,
        "opt/floorgate/uninstall.sh": 0o755,
        "var/lib/floorgate": 0o750,
    }
    for rel, mode in expect.items():
        p = dest / rel
        assert p.exists(), f"{rel} missing"
        assert _mode(p) == mode, f"{rel}: mode {_mode(p):04o}, expected {mode:04o}"
    unit = (dest / "etc/systemd/system/floorgate.service").read_text(encoding="utf-8")
    assert unit == (ROOT / "systemd/floorgate.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/floorgate/venv/bin/floorgate run --config /etc/floorgate/floorgate.toml" in unit
    # No venv, no user, no systemctl under DESTDIR: only the tree.
    assert not (dest / "opt/floorgate/venv").exists()
    assert "tree laid out" in r.stdout
    cfg = load_config(dest / "etc/floorgate/floorgate.toml")  # the shipped example is a valid config
    assert cfg.data_dir == "/var/lib/floorgate"


def test_reinstall_keeps_the_config_and_prefix_is_honoured(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    assert _run(INSTALL, dest).returncode == 0
    conf = dest / "etc/floorgate/floorgate.toml"
    conf.write_text('site = "dc9"\n', encoding="utf-8")
    r = _run(INSTALL, dest, PREFIX="/srv/fg")
    assert r.returncode == 0, r.stderr
    assert conf.read_text(encoding="utf-8") == 'site = "dc9"\n'
    assert "keeping the existing" in r.stdout
    unit = (dest / "etc/systemd/system/floorgate.service").read_text(encoding="utf-8")
    assert "ExecStart=/srv/fg/venv/bin/floorgate run" in unit and "/opt/floorgate" not in unit.split("[Unit]")[1]


def test_uninstall_removes_what_install_put_and_keeps_data(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    assert _run(INSTALL, dest).returncode == 0
    (dest / "var/lib/floorgate/floorgate.db").write_bytes(b"journal")
    r = _run(UNINSTALL, dest)
    assert r.returncode == 0, r.stderr
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert left == ["etc/floorgate/floorgate.toml", "etc/floorgate/floorgate.toml.example",
                    "var/lib/floorgate/floorgate.db"]
    assert _run(UNINSTALL, dest, "--purge").returncode == 0
    assert [p for p in dest.rglob("*") if p.is_file()] == []


def test_bad_arguments_are_refused_clearly(tmp_path: Path) -> None:
    r = _run(INSTALL, tmp_path / "root", "--bogus")
    assert r.returncode != 0 and "unknown option --bogus" in r.stderr
    r = _run(INSTALL, Path("relative/dir"))
    assert r.returncode != 0 and "DESTDIR must be an absolute path" in r.stderr
    r = _run(INSTALL, tmp_path / "root", "--wheel", str(tmp_path / "missing.whl"))
    assert r.returncode != 0 and "no such wheel" in r.stderr
