"""Config validation: every kind of mistake names the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import DEMO_SSCC_PREFIX, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "floorgate.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_are_the_spec_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert (cfg.site, cfg.gateway, cfg.data_dir) == ("dc1", "zone-a", "/var/lib/floorgate")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.max_payload_bytes) == ("127.0.0.1", 1883, 16777216)
    assert cfg.client_id == "floorgate-dc1-zone-a"
    assert (cfg.sync.snapshot_interval_s, cfg.sync.retention_h, cfg.sync.max_db_mb) == (300, 72, 2048)
    assert (cfg.http.host, cfg.http.port) == ("0.0.0.0", 8080)
    assert cfg.picking.location_scan == "optional" and cfg.picking.undo_window_s == 120
    assert cfg.picking.tote_pattern == "^TOTE-[A-Z0-9]{1,16}$"
    assert cfg.packing.weight_tolerance_pct == 15 and cfg.packing.company_prefix == DEMO_SSCC_PREFIX
    assert (cfg.dispatch.index_interval_s, cfg.dispatch.breaker_threshold, cfg.dispatch.breaker_consecutive) == (
        60, 60, 3)
    assert (cfg.dispatch.escalate_after_min, cfg.dispatch.escalate_cold_chain_after_min) == (30, 10)
    assert cfg.topic_prefix == "floorgate/v1/dc1/zone-a"


def test_full_spec_example_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
site = "dc1"
gateway = "zone-a"
data_dir = "/tmp/fg"
[mqtt]
host = "broker.local"
client_id = "short-id"
[[ptl.buses]]
id = "bus-a"
transport = "tcp"
host = "127.0.0.1"
port = 5020
[[ptl.buses]]
id = "bus-b"
transport = "rtu"
port = "/dev/ttyUSB0"
baudrate = 115200
parity = "N"
[[scanners]]
id = "scan-1"
kind = "serial"
port = "/dev/ttyACM0"
good_feedback = "1b07"
[[scanners]]
id = "scan-2"
kind = "hid"
path = "/dev/input/by-id/usb-x-event-kbd"
layout = "de"
station = "pack-1"
[[scales]]
id = "scale-1"
station = "pack-1"
port = "/dev/ttyUSB1"
[[alarms.webhooks]]
url = "https://example.invalid/hook"
[alarms.smtp]
host = ""
to = []
"""))
    assert cfg.client_id == "short-id"
    assert [b.transport for b in cfg.ptl.buses] == ["tcp", "rtu"]
    assert cfg.scanners[1].layout == "de"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        # unknown key
        ("[mqtt]\nhots = 'x'\n", "mqtt.hots", "unknown key"),
        ("colour = 1\n", "colour", "unknown key"),
        # wrong type
        ("[mqtt]\nport = '1883'\n", "mqtt.port", "expected an integer; got '1883'"),
        ("[mqtt]\ntls = 1\n", "mqtt.tls", "expected true or false"),
        ("[sync]\nmax_db_mb = 'big'\n", "sync.max_db_mb", "expected an integer"),
        # bad id
        ("site = 'DC 1'\n", "site", "expected an id of lowercase letters"),
        ("[[ptl.buses]]\nid = 'bus-with-a-name-longer-than-27'\n", "ptl.buses[0].id", "at most 27 characters"),
        ("[[scanners]]\nid = '-x'\nport = '/dev/ttyACM0'\n", "scanners[0].id", "expected an id"),
        # wrong value
        ("[picking]\nlocation_scan = 'sometimes'\n", "picking.location_scan", "'required', 'optional' or 'off'"),
        ("[[ptl.buses]]\nid = 'b'\ntransport = 'rtu'\nport = 502\n", "ptl.buses[0]", "serial device path"),
        ("[[scanners]]\nid = 's'\nkind = 'hid'\n", "scanners[0]", "expected path for a HID scanner"),
        ("[[scanners]]\nid = 's'\nport = 'x'\ngood_feedback = 'zz'\n", "scanners[0].good_feedback", "matching"),
        ("[picking]\ntote_pattern = '('\n", "picking.tote_pattern", "valid regular expression"),
        ("[[scanners]]\nid = 's'\nport = '/dev/a'\n[[scanners]]\nid = 's'\nport = '/dev/b'\n", "scanners[1].id",
         "unique id; 's' is already scanners[0]"),
        # mistakes across sections, named by the key they are about
        ("[[scanners]]\nid = 'd'\nport = '/dev/a'\n[[scales]]\nid = 'd'\nstation = 'pack-1'\nport = '/dev/b'\n",
         "scales[0].id", "unique device id; 'd' is already scanners[0]"),
        ("[[scanners]]\nid = 's1'\nport = '/dev/a'\n[[scanners]]\nid = 's2'\nport = '/dev/a'\n",
         "scanners[1].port", "one device per port; /dev/a is already scanners[0].port"),
        ("[[scanners]]\nid = 's1'\nport = '/dev/a'\n[[ptl.buses]]\nid = 'b'\ntransport = 'rtu'\nport = '/dev/a'\n",
         "ptl.buses[0].port", "one device per port"),
        ("[[scales]]\nid = 'w'\nstation = 'pick'\nport = '/dev/a'\n", "scales[0].station", "packing station"),
        ("[[scales]]\nid = 'w1'\nstation = 'pack-1'\nport = '/dev/a'\n[[scales]]\nid = 'w2'\nstation = 'pack-1'\n"
         "port = '/dev/b'\n", "scales[1].station", "one scale per packing station; 'pack-1' already has scales[0]"),
        # values that would only fail (or silently misbehave) at run time
        ("[[scanners]]\nid = 's'\nport = 'ttyACM0'\n", "scanners[0]", "device path"),
        ("[[scales]]\nid = 'w'\nstation = 'pack-1'\nport = 'ttyUSB1'\n", "scales[0].port", "matching ^/"),
        ("[[ptl.buses]]\nid = 'b'\ntransport = 'rtu'\nport = 'ttyUSB0'\n", "ptl.buses[0]", "got 'ttyUSB0'"),
        ("[[ptl.buses]]\nid = 'b'\ntransport = 'rtu'\nport = '/dev/ttyUSB0'\nbaudrate = 12345\n", "ptl.buses[0]",
         "one a PTL node can store"),
        ("[http]\ntls_cert_file = '/etc/c.pem'\n", "http", "tls_cert_file and tls_key_file together"),
        ("[mqtt]\nhost = ''\n", "mqtt.host", "at least 1 character"),
        ("[mqtt]\nmax_payload_bytes = 999999999999\n", "mqtt.max_payload_bytes", "268435455"),
        ("[alarms.smtp]\nto = ['ops@example.com']\n", "alarms.smtp", "expected host"),
        ("[alarms.smtp]\nhost = 'mail'\nto = ['not-an-address']\n", "alarms.smtp.to[0]", "an address like"),
        ("[alarms.smtp]\nhost = 'mail'\nto = ['a@b']\nsender = \"gw@x\\nBcc: c@d\"\n", "alarms.smtp.sender",
         "an address like"),
        ("[mqtt]\nport = 70000\n", "mqtt.port", "less than or equal to 65535"),
    ],
)
def test_each_mistake_names_file_key_and_expectation(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    err = ei.value
    assert err.file == str(path)
    assert err.key == key
    assert expected in err.expected
    assert str(path) in str(err) and key in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in str(ei.value) and "not found" in str(ei.value)


def test_bad_toml_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "site = \n"))
    assert "not valid TOML" in str(ei.value) and "line 1" in str(ei.value)


def test_run_with_bad_config_exits_nonzero_with_message(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\nport = 'x'\n")
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "mqtt.port" in proc.stderr and "expected an integer" in proc.stderr


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("floorgate ")


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "floorgate.toml"
    p.write_bytes(b"site = \"dc\xe91\"\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p) in str(ei.value) and "not UTF-8" in str(ei.value) and "byte 10" in str(ei.value)
