"""The floor's rules as plain values, taken from the config once, so the domain never reads config files."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FloorRules:
    gateway: str = "zone-a"
    location_scan: str = "optional"  # "required" | "optional" | "off"
    tote_pattern: str = r"^TOTE-[A-Z0-9]{1,16}$"
    idle_logout_s: float = 30 * 60
    undo_window_s: float = 120
    weight_tolerance_pct: float = 15
    sscc_extension: int = 0
    sscc_company_prefix: str = "0614141"
    sscc_serial_start: int = 1
    sscc_serial_end: int = 999_999_999
    break_code: str = "BREAK"  # a picker scans this to start or end a break
    missing_code: str = "MISSING"  # a packer scans this when the parcel cannot be completed (a unit missing)
    device_offline_alarm_s: float = 600
    task_cap: int = 3

    @classmethod
    def from_config(cls, cfg: object) -> FloorRules:
        from gateway.config import Config

        assert isinstance(cfg, Config)
        p, k = cfg.picking, cfg.packing
        return cls(gateway=cfg.gateway, location_scan=p.location_scan, tote_pattern=p.tote_pattern,
                   idle_logout_s=p.idle_logout_min * 60.0, undo_window_s=float(p.undo_window_s),
                   weight_tolerance_pct=k.weight_tolerance_pct, sscc_extension=k.sscc_extension,
                   sscc_company_prefix=k.company_prefix, sscc_serial_start=k.sscc_serial_start,
                   sscc_serial_end=k.sscc_serial_end, break_code=p.break_code, missing_code=k.missing_code,
                   device_offline_alarm_s=p.device_offline_alarm_min * 60.0, task_cap=cfg.dispatch.task_cap)
