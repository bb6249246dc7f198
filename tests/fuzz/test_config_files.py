"""Config files fuzzed through `load_config`, the very function `floorgate run` starts with: any bytes, and
valid configs with one key set to anything TOML can hold (or a key that does not exist). Either a `Config`
comes back, or a `ConfigError` naming the file (and, for a value, the key); never another exception, since a
traceback at start-up is what a technician cannot act on."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config, ConfigError, load_config
from tests.fuzz.common import fuzz_settings, nasty_text

BASE: dict[str, Any] = {
    "site": "dc1", "gateway": "zone-a", "data_dir": "/tmp/fg-fuzz",
    "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": False, "max_payload_bytes": 16777216},
    "sync": {"snapshot_interval_s": 300, "retention_h": 72, "max_db_mb": 2048},
    "http": {"host": "0.0.0.0", "port": 8080},
    "ptl": {"buses": [{"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": 5020, "poll_ms": 20,
                       "timeout_ms": 100, "misses_offline": 3}]},
    "scanners": [{"id": "scan-1", "kind": "serial", "port": "/dev/ttyACM0", "baudrate": 9600, "station": "pick",
                  "terminator": "any", "good_feedback": "06"}],
    "picking": {"location_scan": "optional", "error_signal_ms": 1000, "tote_pattern": "^TOTE-[A-Z0-9]{1,16}$"},
    "packing": {"weight_tolerance_pct": 15},
    "dispatch": {"breaker_threshold": 60, "escalate_after_min": 30},
}


def paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


KEY_PATHS = paths(BASE)

toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
              st.floats(allow_nan=False), nasty_text, st.datetimes(timezones=st.just(UTC))),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                                                                          inner, max_size=3)),
    max_leaves=6)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else "nan"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string (or TOML refuses it)
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    """Everything as inline values under the top table: enough TOML for any document this test builds."""
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def set_path(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def check(text: bytes) -> Config | ConfigError:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "floorgate.toml"
        p.write_bytes(text)
        try:
            return load_config(p)
        except ConfigError as e:
            assert e.file == str(p) and str(p) in str(e) and e.expected, e
            return e


def test_the_base_config_loads() -> None:
    assert isinstance(check(to_toml(BASE).encode()), Config)


@fuzz_settings(300)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_any_bytes_load_or_fail_with_the_file_named(data: bytes) -> None:
    check(data)


@fuzz_settings(400)
@given(path=st.sampled_from(KEY_PATHS), value=toml_values,
       unknown=st.none() | st.from_regex(r"[a-z_]{1,10}", fullmatch=True))
def test_one_key_set_to_anything(path: tuple[str | int, ...], value: Any, unknown: str | None) -> None:
    doc = json.loads(json.dumps(BASE))
    if unknown is not None and isinstance(value, bool):
        parent: Any = doc
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and unknown not in parent:
            parent[unknown] = value  # a key nobody defined: refused as unknown, never ignored
            r = check(to_toml(doc).encode())
            assert isinstance(r, ConfigError) and "unknown key" in r.expected and r.key.endswith(unknown), r
            return
    set_path(doc, path, value)
    r = check(to_toml(doc).encode())
    if isinstance(r, ConfigError) and "not valid TOML" not in r.expected:
        assert r.key, r  # a schema error names the key (or "(top level)")
