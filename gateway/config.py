"""The TOML configuration of SPEC §3, validated once at start-up.

A mistake is reported with the file, the key and what was expected, so a technician can fix it from
the message alone. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import re
import tomllib
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.ptl.codec import BAUD_RATES  # what a PTL node can store (SPEC §4: baud / 100)

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
BUS_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,26}$"
DEMO_SSCC_PREFIX = "0614141"  # GS1's own example company prefix, used in GS1's documentation

Id = Annotated[str, Field(pattern=ID_PATTERN)]
BusId = Annotated[str, Field(pattern=BUS_ID_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(gt=0)]
DevicePath = Annotated[str, Field(pattern=r"^/")]  # a device's absolute path: a relative one depends on the cwd
HexBytes = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})*$")]


class ConfigError(Exception):
    """A config problem: which file, which key, what was expected."""

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file, self.key, self.expected = file, key, expected
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + expected)


class _At(Exception):  # not a ValueError: pydantic lets it through, with its key
    """A mistake found across sections, with the key it is about (pydantic would place it at the top level)."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(expected)
        self.key, self.expected = key, expected


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


MQTT_MAX_PACKET = 268_435_455  # the largest packet MQTT's length encoding can describe


class MqttConfig(_Section):
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Port = 1883
    client_id: str = ""
    username: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    max_payload_bytes: Annotated[int, Field(gt=0, le=MQTT_MAX_PACKET)] = 16 * 1024 * 1024
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

    @model_validator(mode="after")
    def _tls_files(self) -> HttpConfig:
        if (self.tls_cert_file == "") != (self.tls_key_file == ""):
            raise ValueError("expected tls_cert_file and tls_key_file together (both for HTTPS, or neither); "
                             "with one alone the pages would be served over plain HTTP")
        return self


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
        if self.transport == "rtu" and not (isinstance(self.port, str) and self.port.startswith("/")):
            raise ValueError('expected port to be a serial device path such as "/dev/ttyUSB0" with transport = "rtu"'
                             + (f"; got {self.port!r}" if isinstance(self.port, str) else ""))
        if self.transport == "rtu" and self.baudrate not in BAUD_RATES:
            raise ValueError(f"expected baudrate to be one a PTL node can store: "
                             f"{', '.join(map(str, BAUD_RATES))}; got {self.baudrate}")
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
        if self.kind == "serial" and not self.port.startswith("/"):
            raise ValueError('expected port for a serial scanner, a device path such as "/dev/serial/by-id/usb-..." '
                             'or "/dev/ttyACM0"' + (f"; got {self.port!r}" if self.port else ""))
        if self.kind == "hid" and not self.path.startswith("/"):
            raise ValueError("expected path for a HID scanner, a device path such as "
                             "\"/dev/input/by-id/usb-...-event-kbd\"" + (f"; got {self.path!r}" if self.path else ""))
        return self

    @property
    def device(self) -> str:
        return self.port if self.kind == "serial" else self.path


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
    # Packing stations worked only from the packing page (no scanner, scale or printer of their own in this
    # config). Beyond SPEC §3; see Config.packing_stations.
    stations: list[Id] = []

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
    port: DevicePath
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


_BARE_ADDRESS = re.compile(r'[^@\s<>,;:\\"]+@[^@\s<>,;:\\"]+')


def _mail_address(value: str) -> str:
    """A bare address or one with a display name (`Floorgate <gw@example.com>`, as EmailMessage takes it): the
    bare-only pattern refused configs that name their sender, which mail servers and readers expect."""
    _, addr = parseaddr(value)
    if any(c in value for c in "\r\n") or len(getaddresses([value])) != 1 or not _BARE_ADDRESS.fullmatch(addr):
        raise ValueError('an address like ops@example.com or "Floorgate <ops@example.com>"')
    return value


Address = Annotated[str, AfterValidator(_mail_address)]


class SmtpConfig(_Section):
    host: str = ""
    port: Port = 25
    sender: Address = "floorgate@localhost"
    to: list[Address] = []
    username: str = ""
    password_file: str = ""
    starttls: bool = False

    @model_validator(mode="after")
    def _host_and_to(self) -> SmtpConfig:
        if self.to and not self.host:
            raise ValueError("expected host (the mail server) when `to` is set: alarm mails would go nowhere")
        if self.host and not self.to:
            raise ValueError("expected `to` (at least one address) when host is set")
        return self


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
            for n, i in enumerate(ids):
                if i in ids[:n]:
                    raise _At(f"{what}[{n}].id", f"expected a unique id; {i!r} is already {what}[{ids.index(i)}]")
        # Device events and the technician's page name a device by its id alone.
        owner: dict[str, str] = {}
        for what, ids in (("scanners", [s.id for s in self.scanners]), ("scales", [s.id for s in self.scales]),
                          ("printers", [p.id for p in self.printers])):
            for n, i in enumerate(ids):
                if i in owner:
                    raise _At(f"{what}[{n}].id", f"expected a unique device id; {i!r} is already {owner[i]}")
                owner[i] = f"{what}[{n}]"
        # Two readers of one device file would each get half of its bytes (or the second could not open it).
        users: dict[str, str] = {}
        for key, path in ([(f"scanners[{n}].{'port' if s.kind == 'serial' else 'path'}", s.device)
                           for n, s in enumerate(self.scanners)]
                          + [(f"scales[{n}].port", s.port) for n, s in enumerate(self.scales)]
                          + [(f"ptl.buses[{n}].port", str(b.port)) for n, b in enumerate(self.ptl.buses)
                             if b.transport == "rtu"]):
            if path in users:
                raise _At(key, f"expected one device per port; {path} is already {users[path]}")
            users[path] = key
        stations: dict[str, int] = {}
        for n, scale in enumerate(self.scales):
            if scale.station == "pick":
                raise _At(f"scales[{n}].station", 'expected a packing station such as "pack-1", not "pick"')
            if scale.station in stations:
                raise _At(f"scales[{n}].station", f"expected one scale per packing station; {scale.station!r} "
                                                  f"already has scales[{stations[scale.station]}]")
            stations[scale.station] = n
        for n, station in enumerate(self.packing.stations):
            if station == "pick":
                raise _At(f"packing.stations[{n}]", 'expected a packing station such as "pack-1", not "pick"')
        return self

    @property
    def packing_stations(self) -> set[str]:
        """The packing stations this gateway has: named by a scanner, scale or printer, or in `packing.stations`.
        When there is any, the packing page logs in only at these: a made-up station id had no scale, so a
        packer could skip the weight check by choosing the URL."""
        named = {s.station for s in self.scanners} | {s.station for s in self.scales}
        named |= {p.station for p in self.printers} | set(self.packing.stations)
        named.discard("pick")
        return named

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
    except _At as e:
        raise ConfigError(file, e.key, e.expected) from None
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


def referenced_files(cfg: Config) -> list[tuple[str, str]]:
    """(key, path) of every file the config names that the gateway reads at start-up."""
    files = [("mqtt.password_file", cfg.mqtt.password_file), ("alarms.smtp.password_file",
                                                                cfg.alarms.smtp.password_file)]
    if cfg.mqtt.tls:
        files += [("mqtt.ca_file", cfg.mqtt.ca_file), ("mqtt.cert_file", cfg.mqtt.cert_file),
                  ("mqtt.key_file", cfg.mqtt.key_file)]
    files += [("http.tls_cert_file", cfg.http.tls_cert_file), ("http.tls_key_file", cfg.http.tls_key_file)]
    return [(key, path) for key, path in files if path]


def check_start(cfg: Config, file: str, data_dir: bool = True) -> None:
    """What `floorgate run` needs beyond a well-formed config: the files it names, readable, and a data
    directory it can make. Checked before anything starts, so that a typo in a path is a `bad config` naming the
    key, not a traceback halfway through the start (`floorgate doctor` reports the same, and more). A SIGHUP
    passes `data_dir=False`: a new data_dir applies only after a restart, so it is not made then."""
    for key, path in referenced_files(cfg):
        f = Path(path)
        if not f.exists():
            raise ConfigError(file, key, f"expected an existing file; {path} does not exist")
        if not f.is_file():
            raise ConfigError(file, key, f"expected a file; {path} is not a regular file")
        if not os.access(f, os.R_OK):
            raise ConfigError(file, key, f"expected a file this user can read; {path} cannot be read")
    if not data_dir:
        return
    d = Path(cfg.data_dir)
    if not d.is_absolute():
        raise ConfigError(file, "data_dir", f"expected an absolute path (a service's working directory is not "
                                            f"yours); got {cfg.data_dir!r}")
    try:
        d.mkdir(parents=True, exist_ok=True)  # the run lock would make it a moment later
    except FileExistsError:
        raise ConfigError(file, "data_dir", f"expected a directory; {d} is a file") from None
    except OSError as e:
        raise ConfigError(file, "data_dir", f"expected a directory that exists or can be made; {d}: "
                                            f"{e.strerror}") from None
    if not d.is_dir():
        raise ConfigError(file, "data_dir", f"expected a directory; {d} is not one")


DEVICE_SECTIONS = ("scanners", "ptl", "scales", "printers")  # what a SIGHUP applies (SPEC §5)


def restart_keys(old: Config, new: Config) -> list[str]:
    """The keys that differ between two configs outside the device sections: a SIGHUP does not apply them, and
    the technician must be told so rather than believe them in force."""
    def leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if not prefix and k in DEVICE_SECTIONS:
                continue
            key = f"{prefix}{k}"
            out.update(leaves(v, key + ".") if isinstance(v, dict) and v else {key: v})
        return out
    a, b = leaves(old.model_dump()), leaves(new.model_dump())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def secret_from_file(path: str) -> str:
    """Secrets live in their own files (mode 0600) so the config can be shared in a support bundle."""
    return Path(path).read_text(encoding="utf-8").strip() if path else ""
