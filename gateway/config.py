"""The TOML configuration of SPEC §3, validated once at start-up.

A mistake is reported with the file, the key and what was expected, so a technician can fix it from
the message alone. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
BUS_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,26}$"
DEMO_SSCC_PREFIX = "0614141"  # GS1's own example company prefix, used in GS1's documentation

Id = Annotated[str, Field(pattern=ID_PATTERN)]
BusId = Annotated[str, Field(pattern=BUS_ID_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(gt=0)]
HexBytes = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})*$")]


class ConfigError(Exception):
    """A config problem: which file, which key, what was expected."""

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file, self.key, self.expected = file, key, expected
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + expected)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 1883
    client_id: str = ""
    username: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    max_payload_bytes: Positive = 16 * 1024 * 1024
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    inflight: Annotated[int, Field(ge=1, le=65535)] = 200
    reconnect_max_s: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _tls_files(self) -> MqttConfig:
        if (self.cert_file == "") != (self.key_file == ""):
            raise ValueError("expected cert_file and key_file together (both for a client certificate, or neither)")
        return self


class SyncConfig(_Section):
    snapshot_interval_s: Positive = 300
    retention_h: Annotated[float, Field(ge=0)] = 72
    max_db_mb: Positive = 2048
    telemetry_interval_s: Positive = 30
    audit_retention_days: Positive = 90


class HttpConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = 8080
    tls_cert_file: str = ""
    tls_key_file: str = ""
    session_ttl_min: Positive = 720


class BusConfig(_Section):
    id: BusId
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int | str = 5020
    baudrate: Positive = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    poll_ms: Positive = 20
    timeout_ms: Positive = 100
    misses_offline: Positive = 3

    @model_validator(mode="after")
    def _port_matches_transport(self) -> BusConfig:
        if self.transport == "tcp" and not (isinstance(self.port, int) and 1 <= self.port <= 65535):
            raise ValueError("expected port to be a TCP port number (1-65535) with transport = \"tcp\"")
        if self.transport == "rtu" and not isinstance(self.port, str):
            raise ValueError('expected port to be a serial device path such as "/dev/ttyUSB0" with transport = "rtu"')
        return self


class PtlConfig(_Section):
    buses: list[BusConfig] = []


LAYOUTS = ("us", "de")


class ScannerConfig(_Section):
    id: Id
    kind: Literal["serial", "hid"] = "serial"
    port: str = ""
    path: str = ""
    baudrate: Positive = 9600
    station: Id = "pick"
    terminator: Literal["any", "cr", "lf", "crlf"] = "any"
    layout: Literal["us", "de"] = "us"
    gs_substitute: Annotated[str, Field(max_length=1)] = ""
    good_feedback: HexBytes = ""
    bad_feedback: HexBytes = ""

    @model_validator(mode="after")
    def _device_given(self) -> ScannerConfig:
        if self.kind == "serial" and not self.port:
            raise ValueError('expected port for a serial scanner, e.g. "/dev/serial/by-id/usb-..." or "/dev/ttyACM0"')
        if self.kind == "hid" and not self.path:
            raise ValueError("expected path for a HID scanner, e.g. \"/dev/input/by-id/usb-...-event-kbd\"")
        return self


class PickingConfig(_Section):
    location_scan: Literal["required", "optional", "off"] = "optional"
    error_signal_ms: Positive = 1000
    idle_logout_min: Positive = 30
    tote_pattern: str = r"^TOTE-[A-Z0-9]{1,16}$"
    undo_window_s: Positive = 120
    break_code: Annotated[str, Field(min_length=1, max_length=64)] = "BREAK"
    device_offline_alarm_min: Positive = 10

    @field_validator("tote_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"expected a valid regular expression ({e})") from None
        return v


class PackingConfig(_Section):
    sscc_company_prefix: Annotated[str, Field(pattern=r"^(\d{6,12})?$")] = ""
    sscc_extension: Annotated[int, Field(ge=0, le=9)] = 0
    sscc_serial_start: Annotated[int, Field(ge=0)] = 1
    sscc_serial_end: Annotated[int, Field(ge=0)] = 999_999_999
    sscc_restore_gap: Annotated[int, Field(ge=0)] = 100_000
    weight_tolerance_pct: Annotated[float, Field(gt=0, le=100)] = 15
    missing_code: Annotated[str, Field(min_length=1, max_length=64)] = "MISSING"

    @model_validator(mode="after")
    def _range(self) -> PackingConfig:
        if self.sscc_serial_end < self.sscc_serial_start:
            raise ValueError("expected sscc_serial_end >= sscc_serial_start")
        digits = 16 - len(self.company_prefix)
        if self.sscc_serial_end >= 10**digits:
            raise ValueError(
                f"expected sscc_serial_end to fit the {digits} digits left by a "
                f"{len(self.company_prefix)}-digit company prefix"
            )
        return self

    @property
    def company_prefix(self) -> str:
        return self.sscc_company_prefix or DEMO_SSCC_PREFIX


class EscalationEntry(_Section):
    start: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]  # "HH:MM", local time (`timezone`)
    after_min: Annotated[float, Field(gt=0)] = 30
    cold_chain_after_min: Annotated[float, Field(gt=0)] = 10


class AbConfig(_Section):
    candidate: Literal["health", "round_robin"] = "health"
    share: Annotated[float, Field(ge=0, le=1)] = 0.0
    zones: list[Id] = []  # empty: every zone
    salt: str = ""


class DispatchConfig(_Section):
    index_interval_s: Positive = 60
    breaker_threshold: Annotated[float, Field(ge=0, le=100)] = 60
    breaker_consecutive: Positive = 3
    breaker_cooldown_s: Positive = 300
    escalate_after_min: Positive = 30
    escalate_cold_chain_after_min: Positive = 10
    task_cap: Positive = 3
    strategy: Literal["health", "round_robin"] = "health"
    zone_strategies: dict[str, Literal["health", "round_robin"]] = {}
    ab: AbConfig = AbConfig()
    escalation_schedule: list[EscalationEntry] = []
    timezone: str = "UTC"  # for the schedule's times of day
    learned_thresholds: bool = False  # shorten thresholds to the recent p90 of time-to-start, per category

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as \"Europe/Berlin\"; got {v!r}") from None
        return v


class ScaleConfig(_Section):
    id: Id
    station: Id
    port: str
    baudrate: Positive = 9600
    mode: Literal["sics", "continuous"] = "sics"


class PrinterConfig(_Section):
    id: Id
    station: Id
    host: str
    port: Port = 9100


class WebhookConfig(_Section):
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout_s: Annotated[float, Field(gt=0)] = 10


class SmtpConfig(_Section):
    host: str = ""
    port: Port = 25
    sender: str = "floorgate@localhost"
    to: list[str] = []
    username: str = ""
    password_file: str = ""
    starttls: bool = False


class AlarmsConfig(_Section):
    webhooks: list[WebhookConfig] = []
    smtp: SmtpConfig = SmtpConfig()


class Config(_Section):
    site: Id = "dc1"
    gateway: Id = "zone-a"
    data_dir: str = "/var/lib/floorgate"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    mqtt: MqttConfig = MqttConfig()
    sync: SyncConfig = SyncConfig()
    http: HttpConfig = HttpConfig()
    ptl: PtlConfig = PtlConfig()
    scanners: list[ScannerConfig] = []
    picking: PickingConfig = PickingConfig()
    packing: PackingConfig = PackingConfig()
    dispatch: DispatchConfig = DispatchConfig()
    scales: list[ScaleConfig] = []
    printers: list[PrinterConfig] = []
    alarms: AlarmsConfig = AlarmsConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        for what, ids in (
            ("ptl.buses", [b.id for b in self.ptl.buses]),
            ("scanners", [s.id for s in self.scanners]),
            ("scales", [s.id for s in self.scales]),
            ("printers", [p.id for p in self.printers]),
        ):
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"expected unique ids in {what}; {sorted(dup)[0]!r} is used more than once")
        return self

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"floorgate-{self.site}-{self.gateway}"

    @property
    def topic_prefix(self) -> str:
        return f"floorgate/v1/{self.site}/{self.gateway}"

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "floorgate.db"


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


_EXPECT = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "an array",
    "model_type": "a table",
    "dataclass_type": "a table",
    "missing": "a value (this key is required)",
}


def _describe(err: Any, section_fields: dict[str, Any]) -> str:
    t = err["type"]
    got = err.get("input")
    if t == "extra_forbidden":
        known = ", ".join(sorted(section_fields)) if section_fields else ""
        return "unknown key" + (f" (known keys here: {known})" if known else "")
    if t == "string_pattern_mismatch":
        pat = err.get("ctx", {}).get("pattern", "")
        if pat in (ID_PATTERN, BUS_ID_PATTERN):
            n = 32 if pat == ID_PATTERN else 27
            return (f"expected an id of lowercase letters, digits, '_' and '-', starting with a letter "
                    f"or digit, at most {n} characters; got {got!r}")
        return f"expected a string matching {pat}; got {got!r}"
    if t in _EXPECT:
        return f"expected {_EXPECT[t]}; got {got!r}" if t != "missing" else f"expected {_EXPECT[t]}"
    if t == "literal_error":
        return f"expected {err['ctx']['expected']}; got {got!r}"
    if t == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return f"expected {err['msg'][0].lower()}{err['msg'][1:]}; got {got!r}"


def _fields_at(loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The known keys of the table that holds `loc`, to list them after an unknown key."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return {}
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        model = args[0] if args and isinstance(args[0], type) else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return {}
    return dict(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else {}


def parse_config(data: dict[str, Any], file: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        raise ConfigError(file, _key_path(loc) or "(top level)", _describe(err, _fields_at(loc))) from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), "", "file not found (give the path of a TOML config file)") from None
    except OSError as e:
        raise ConfigError(str(p), "", f"cannot be read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), "", f"is not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), "", f"is not valid TOML: {e}") from None
    return parse_config(data, str(p))


def secret_from_file(path: str) -> str:
    """Secrets live in their own files (mode 0600) so the config can be shared in a support bundle."""
    return Path(path).read_text(encoding="utf-8").strip() if path else ""
