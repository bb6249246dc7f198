"""The systemd units pass `systemd-analyze verify` and say what the issue asks; the udev rules parse.

The units name /opt/floorgate/venv/bin/floorgate, which exists only on an installed box; verify checks that
ExecStart is executable, so the test points it at this checkout's venv (the only change made).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.udev_syntax import check_rules

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
RULES = UNITS / "99-floorgate.rules"
INSTALLED = "/opt/floorgate/venv/bin/floorgate"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _venv_floorgate() -> str:
    exe = Path(sys.executable).parent / "floorgate"
    assert exe.exists(), "the floorgate entry point is not installed in this venv (pip install -e .)"
    return str(exe)


def _units_for_verify(tmp_path: Path) -> Path:
    d = tmp_path / "units"
    d.mkdir()
    for f in UNITS.glob("*.service"):
        (d / f.name).write_text(f.read_text(encoding="utf-8").replace(INSTALLED, _venv_floorgate()), encoding="utf-8")
    return d


def _verify(*units: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *units], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    d = _units_for_verify(tmp_path)
    # A template is verified through an instance; systemd-analyze finds the template next to it.
    r = _verify(str(d / "floorgate.service"), str(d / "floorgate-demo.service"), str(d / "floorgate-sim@ptl.service"),
                str(d / "floorgate-sim@hub.service"), cwd=d)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """Guard against a verify that passes everything (the test above would then prove nothing)."""
    d = _units_for_verify(tmp_path)
    unit = d / "floorgate.service"
    unit.write_text(unit.read_text(encoding="utf-8").replace("WatchdogSec=30", "WatchdogSecs=30"), encoding="utf-8")
    r = _verify(str(unit), cwd=d)
    assert "WatchdogSecs" in r.stdout + r.stderr


def _service(name: str) -> configparser.SectionProxy:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNITS / name, encoding="utf-8")
    return cp["Service"]


def _all_values(name: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in (UNITS / name).read_text(encoding="utf-8").splitlines()
            if ln.startswith(key + "=")]


def test_gateway_unit_has_what_the_box_needs() -> None:
    s = _service("floorgate.service")
    expect = {"Type": "notify", "WatchdogSec": "30", "Restart": "on-failure", "User": "floorgate",
              "StateDirectory": "floorgate", "ConfigurationDirectory": "floorgate", "ProtectSystem": "strict",
              "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "TimeoutStopSec": "15",
              "SupplementaryGroups": "dialout input", "DevicePolicy": "closed",
              "ExecReload": "/bin/kill -HUP $MAINPID"}
    for k, v in expect.items():
        assert s.get(k) == v, f"{k}={s.get(k)!r}, expected {v!r}"
    assert s["ExecStart"] == f"{INSTALLED} run --config /etc/floorgate/floorgate.toml"
    allowed = _all_values("floorgate.service", "DeviceAllow")
    for dev in ("char-ttyUSB rw", "char-ttyACM rw", "char-input rw", "char-ttySC rw"):  # ttySC: SC16IS752 HATs
        assert dev in allowed
    assert s["RestartPreventExitStatus"].split() == ["2", "3"]  # a bad config, a damaged database: no retries
    assert "PrivateDevices" not in s  # it would hide the serial ports the gateway needs


def test_simulator_and_demo_units() -> None:
    sim = _service("floorgate-sim@.service")
    assert "floorgate sim" in sim["ExecStart"] and "%i" in sim["ExecStart"]
    assert sim["EnvironmentFile"] == "-/etc/floorgate/sim-%i.env"
    demo = _service("floorgate-demo.service")
    assert "floorgate demo" in demo["ExecStart"]
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read(UNITS / "floorgate-demo.service", encoding="utf-8")
    assert cp["Unit"]["Conflicts"] == "floorgate.service"


# -- udev -----------------------------------------------------------------------------------------------------

def test_udev_rules_pass_the_syntax_checker() -> None:
    problems = check_rules(RULES.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(map(str, problems))


def test_udev_rules_do_what_the_issue_asks() -> None:
    text = RULES.read_text(encoding="utf-8")
    assert 'SUBSYSTEM=="usb-serial", DRIVER=="ftdi_sio", ATTR{latency_timer}="1"' in text
    assert 'SYMLINK+="floorgate/scanner-$env{ID_SERIAL_SHORT}"' in text
    assert 'SYMLINK+="floorgate/rs485-$env{ID_SERIAL_SHORT}"' in text
    # Each port of a multi-port adapter (FT4232: four ports, one serial number) has a name of its own.
    assert 'SYMLINK+="floorgate/rs485-$env{ID_SERIAL_SHORT}-if$env{ID_USB_INTERFACE_NUM}"' in text
    assert 'ENV{ID_VENDOR_ID}=="0403|1a86|10c4"' in text  # FTDI, CH340, CP210x
    assert 'GROUP="input"' in text and 'GROUP="dialout"' in text
    assert "by-id" in text  # HID scanners keep their by-id names (the default rules make them)


@pytest.mark.parametrize(("line", "problem"), [
    ('KERNEL=="ttyUSB*", FOO="bar"', "unknown key FOO"),
    ('KERNEL="ttyUSB*", GROUP="dialout"', "KERNEL does not take operator ="),
    ('KERNEL=="ttyUSB*" GROUP="dialout"', "expected ','"),
    ('KERNEL=="ttyUSB*", GROUP="dialout",', "trailing comma"),
    ('KERNEL=="ttyUSB*", ATTR="1"', "ATTR needs"),
    ('KERNEL=="ttyUSB*", MODE="rw"', "not an octal mode"),
    ('KERNEL=="ttyUSB*", GROUP="no-such-group-here"', "does not exist"),
    ('KERNEL=="ttyUSB*", SYMLINK+="x-$envv{A}"', "unknown substitution"),
    ('KERNEL=="ttyUSB*", SYMLINK+="x-$env"', "needs {...}"),
    ('KERNEL=="ttyUSB*", GOTO="nowhere"', "no LABEL"),
    ('KERNEL=="ttyUSB*", IMPORT{magic}="x"', "type must be"),
    ('KERNEL=="ttyUSB*", SUBSYSTEM=="tty"', "does nothing"),
    ("KERNEL=='ttyUSB*', GROUP=\"dialout\"", "cannot parse"),
])
def test_the_syntax_checker_catches_mistakes(line: str, problem: str) -> None:
    problems = check_rules(line + "\n")
    assert any(problem in str(p) for p in problems), problems


def test_the_syntax_checker_joins_continued_lines() -> None:
    assert check_rules('KERNEL=="ttyUSB*", \\\n  GROUP="dialout"\n') == []


def _udevadm_in_private_namespace(rules_dir: Path) -> subprocess.CompletedProcess[str] | None:
    """udev's own parser: `udevadm test` with our rules, in a mount namespace with private /dev and /run so
    it changes nothing on this machine. None where that is not allowed (not root, no unshare)."""
    unshare, udevadm = shutil.which("unshare"), shutil.which("udevadm")
    if os.geteuid() != 0 or unshare is None or udevadm is None or not Path("/sys/class/tty/tty0").exists():
        return None
    script = (f"mount -t tmpfs none /dev && mount -t tmpfs none /run && mount --bind {rules_dir} /etc/udev/rules.d "
              f"&& exec {udevadm} test --action=add /sys/class/tty/tty0")
    r = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, timeout=60, check=False)
    if "Reading rules file" not in r.stdout + r.stderr:
        return None
    return r


def test_udev_itself_parses_the_rules_without_complaint(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    shutil.copy(RULES, d / RULES.name)
    (d / "98-broken.rules").write_text('KERNEL=="x", FLOORGATE_NO_SUCH_KEY="1"\n', encoding="utf-8")
    r = _udevadm_in_private_namespace(d)
    if r is None:
        pytest.skip("udevadm test in a private mount namespace needs root and unshare")
    out = r.stdout + r.stderr
    assert "98-broken.rules:1" in out, "udevadm did not report the planted mistake: this check is blind\n" + out
    ours = [ln for ln in out.splitlines() if ln.startswith(f"/etc/udev/rules.d/{RULES.name}:")]
    assert ours == [], "\n".join(ours)
