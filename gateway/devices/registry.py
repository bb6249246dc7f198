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
    fault: bool = False  # a device that answers but reports a fault of its own (a PTL module's status bit 8)
    fault_detail: str = ""  # what the fault is, where the device says more than its fault bit
    gen: int = 0  # moves with every state reported: a late success must not mark a newer state saved
    reported: bool = False  # its coordinator has told its state (a bus only listed has not)

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "kind": self.kind, "online": self.online, "detail": self.detail,
                "errors": self.errors, "scans": self.scans, "rejects": self.rejects,
                "last_scans": list(self.last_scans), **self.extra}


class DeviceRegistry:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}
        self.latencies: deque[float] = deque(maxlen=10_000)  # scan: last byte -> stored, seconds
        # (device id, "status" | "fault") whose latest state here could not be stored (a full disk): drivers
        # report a change once, so without a second try the floor would never hear of it (DeviceFleet resaves).
        self.unsaved: set[tuple[str, str]] = set()

    def add(self, device_id: str, kind: str) -> DeviceInfo:
        info = self.devices.get(device_id)
        if info is None:
            info = self.devices[device_id] = DeviceInfo(device_id, kind)
        return info

    def status(self, device_id: str, kind: str, online: bool, detail: str) -> None:
        info = self.add(device_id, kind)
        if info.online and not online:
            info.errors += 1
        info.online, info.detail, info.reported = online, detail, True
        info.gen += 1

    def set_fault(self, device_id: str, kind: str, fault: bool, detail: str = "") -> int:
        info = self.add(device_id, kind)
        info.fault = fault
        info.fault_detail = detail
        info.gen += 1
        return info.gen

    def saved(self, device_id: str, what: str, gen: int | None) -> None:
        """The state reported as `gen` (`what`: "status" or "fault") reached the journal, or (None) did not."""
        if gen is None:
            self.unsaved.add((device_id, what))
        else:
            info = self.devices.get(device_id)  # (taken out of the config meanwhile: nothing left to save)
            if info is None or info.gen == gen:
                self.unsaved.discard((device_id, what))

    def telemetry(self) -> dict[str, Any]:
        return {"devices": [{"device_id": d.device_id, "kind": d.kind, "online": d.online, "errors": d.errors}
                            for d in self.devices.values()]}
