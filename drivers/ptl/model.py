"""Values that cross the driver's boundary: what a module should show, what it reported, bus settings, stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .codec import Colour, Mode, Pattern, encode_job

KeyKind = Literal["confirm", "shortage"]


@dataclass(frozen=True, slots=True)
class ModuleState:
    """What one module should show; the bus writes it as one FC16 of registers 0-4.

    Build it with the class methods, which validate: a bad quantity or colour fails at the caller, not as
    a Modbus exception from the module half a second later.
    """

    mode: Mode = Mode.OFF
    qty: int = 0
    colour: Colour = Colour.OFF
    pattern: Pattern = Pattern.STEADY
    token: int = 0

    def __post_init__(self) -> None:
        encode_job(self.mode, self.qty, self.colour, self.pattern, self.token)  # validates, raises ValueError

    @classmethod
    def off(cls) -> ModuleState:
        return OFF

    @classmethod
    def job(cls, qty: int, colour: Colour, pattern: Pattern, token: int) -> ModuleState:
        if not 1 <= token <= 0xFFFF:
            raise ValueError(f"job token {token} outside 1-65535 (0 means no job)")
        return cls(Mode.JOB, qty, Colour(colour), Pattern(pattern), token)

    @classmethod
    def info(cls, qty: int, colour: Colour, pattern: Pattern = Pattern.STEADY) -> ModuleState:
        return cls(Mode.INFO, qty, Colour(colour), Pattern(pattern), 0)

    @classmethod
    def error(cls, token: int, qty: int = 0, pattern: Pattern = Pattern.STEADY) -> ModuleState:
        """The wrong-scan signal: mode 3, red, the job's token kept (SPEC §4)."""
        return cls(Mode.ERROR, qty, Colour.RED, Pattern(pattern), token)

    @classmethod
    def done(cls, colour: Colour = Colour.GREEN, qty: int = 0) -> ModuleState:
        """Brief acknowledgement; the module turns itself off after 1 s, and so does the driver's copy."""
        return cls(Mode.DONE, qty, Colour(colour), Pattern.STEADY, 0)

    def registers(self) -> list[int]:
        return encode_job(self.mode, self.qty, self.colour, self.pattern, self.token)

    @property
    def job_token(self) -> int | None:
        """The token a key press must echo to count: the job's, also while its error signal shows."""
        return self.token if self.mode in (Mode.JOB, Mode.ERROR) and self.token else None


OFF = ModuleState()


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A latched key whose token echo matched the job token; reported once per module event counter value.

    Raw facts only: what confirm, shortage and an adjusted quantity mean for the order is the domain's call.
    """

    bus_id: str
    unit: int
    token: int
    kind: KeyKind
    qty: int
    adjusted: bool
    counter: int = 0


@dataclass(frozen=True, slots=True)
class ModuleOnline:
    bus_id: str
    unit: int
    detail: str


@dataclass(frozen=True, slots=True)
class ModuleOffline:
    bus_id: str
    unit: int
    detail: str
    link: bool = False  # offline because the bus's own link went down, not for anything the module did


@dataclass(frozen=True, slots=True)
class ModuleFault:
    """The module's fault changed: its fault bit (IR 0 bit 8, set by its self-checks: a dead segment, a stuck
    key), or its refusal of the job write (an exception reply to the FC16 of registers 0-4: another register
    map or firmware). `detail` says which (empty for the fault bit)."""

    bus_id: str
    unit: int
    fault: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BusLink:
    """The bus's own link (the TCP connection or the serial adapter) came up or went down: reported once per
    change, so that a dead link reads as the bus's fault, not as each of its modules'."""

    bus_id: str
    up: bool
    detail: str


HealthEvent = ModuleOnline | ModuleOffline | ModuleFault | BusLink


@dataclass(frozen=True, slots=True)
class BusSettings:
    """One bus. The first nine fields are SPEC §3 `[[ptl.buses]]`; the rest are tuning with safe defaults."""

    id: str
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int | str = 5020
    baudrate: int = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    poll_ms: int = 20
    timeout_ms: int = 100
    misses_offline: int = 3
    health_ms: int = 1000  # an idle online module is still polled this often (power-up bit, presence)
    probe_min_ms: int = 200  # first probe of an offline module; doubles per failed probe ...
    probe_max_ms: int = 5000  # ... up to this
    probe_share: float = 0.10  # probes of offline modules take at most this share of the bus's time
    reconnect_min_ms: int = 100
    reconnect_max_ms: int = 5000

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "rtu"):
            raise ValueError(f"bus {self.id}: transport {self.transport!r}: expected 'tcp' or 'rtu'")
        if self.transport == "tcp" and not (isinstance(self.port, int) and 1 <= self.port <= 65535):
            raise ValueError(f"bus {self.id}: port {self.port!r}: expected a TCP port 1-65535")
        if self.transport == "rtu" and not isinstance(self.port, str):
            raise ValueError(f"bus {self.id}: port {self.port!r}: expected a serial device path for rtu")
        for name in ("poll_ms", "timeout_ms", "misses_offline", "health_ms", "probe_min_ms", "probe_max_ms",
                     "reconnect_min_ms", "reconnect_max_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"bus {self.id}: {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.probe_share <= 1:
            raise ValueError(f"bus {self.id}: probe_share must be in (0, 1], got {self.probe_share}")

    @classmethod
    def from_config(cls, cfg: Any) -> BusSettings:
        """From any object with the `[[ptl.buses]]` attributes (gateway.config.BusConfig); extras optional."""
        names = [f for f in cls.__dataclass_fields__ if hasattr(cfg, f)]
        return cls(**{n: getattr(cfg, n) for n in names})


@dataclass(slots=True)
class ModuleStats:
    transactions: int = 0
    misses: int = 0  # timeouts, exception replies, CRC errors, malformed replies
    errors: int = 0  # the subset of misses that were a reply we could not use (not a silence)
    polls: int = 0
    writes: int = 0
    key_events: int = 0
    stale_keys: int = 0
    restores: int = 0
    last_seen: float | None = None  # monotonic seconds of the last good reply
    last_error: str = ""


@dataclass(slots=True)
class BusStats:
    transactions: int = 0
    misses: int = 0
    errors: int = 0
    polls: int = 0
    writes: int = 0
    clears: int = 0
    probes: int = 0
    technician: int = 0
    key_events: int = 0
    connects: int = 0
    link_losses: int = 0
    busy_s: float = 0.0  # time spent inside transactions
    probe_s: float = 0.0  # of which probing offline modules
    started: float = 0.0
    last_ok: float | None = None
    modules: dict[int, ModuleStats] = field(default_factory=dict)

    def as_dict(self, now: float) -> dict[str, Any]:
        """For /metrics and the technician page: ages instead of raw monotonic stamps."""
        def age(t: float | None) -> float | None:
            return None if t is None else round(now - t, 3)

        out: dict[str, Any] = {k: getattr(self, k) for k in (
            "transactions", "misses", "errors", "polls", "writes", "clears", "probes", "technician",
            "key_events", "connects", "link_losses")}
        out["busy_s"] = round(self.busy_s, 3)
        out["probe_s"] = round(self.probe_s, 3)
        out["uptime_s"] = round(now - self.started, 3)
        out["last_ok_age_s"] = age(self.last_ok)
        out["modules"] = {
            unit: {"transactions": m.transactions, "misses": m.misses, "errors": m.errors, "polls": m.polls,
                   "writes": m.writes, "key_events": m.key_events, "stale_keys": m.stale_keys,
                   "restores": m.restores, "last_seen_age_s": age(m.last_seen), "last_error": m.last_error}
            for unit, m in sorted(self.modules.items())
        }
        return out
