"""What the technician page, telemetry and /metrics know about every device."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DeviceInfo:
    device_id: str
    kind: str
    online: bool = False
    detail: str = "not started"
    errors: int = 0
    scans: int = 0
    rejects: int = 0
    last_scans: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "kind": self.kind, "online": self.online, "detail": self.detail,
                "errors": self.errors, "scans": self.scans, "rejects": self.rejects,
                "last_scans": list(self.last_scans), **self.extra}


class DeviceRegistry:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}
        self.latencies: deque[float] = deque(maxlen=10_000)  # scan: last byte -> stored, seconds

    def add(self, device_id: str, kind: str) -> DeviceInfo:
        info = self.devices.get(device_id)
        if info is None:
            info = self.devices[device_id] = DeviceInfo(device_id, kind)
        return info

    def status(self, device_id: str, kind: str, online: bool, detail: str) -> None:
        info = self.add(device_id, kind)
        if info.online and not online:
            info.errors += 1
        info.online, info.detail = online, detail

    def telemetry(self) -> dict[str, Any]:
        return {"devices": [{"device_id": d.device_id, "kind": d.kind, "online": d.online, "errors": d.errors}
                            for d in self.devices.values()]}
