"""A device's state, from its coordinator to the journal. Drivers report a change once (a module that stops
answering, a scanner pulled out): if that commit fails (a full disk), the floor would never hear of it, the
device would stay `online` for the hub, and its offline alarm would never come. So what could not be stored is
kept in the registry (`DeviceRegistry.unsaved`) and stored again, as it is then, once there is room."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.devices.registry import DeviceRegistry
from gateway.domain.change import Change
from gateway.domain.devices import device_fault, device_status
from gateway.domain.floor import Floor
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.devices")


async def store_status(service: FloorService, registry: DeviceRegistry, device_id: str, kind: str, online: bool,
                       detail: str) -> bool:
    """Record a device's new state here and in the journal; False if the journal could not take it (kept as
    unsaved, and stored by `resave`)."""
    registry.status(device_id, kind, online, detail)
    gen = registry.devices[device_id].gen
    at = service.at()
    try:
        await service.execute(lambda f, c: device_status(f, c, device_id, kind, online, detail, at))
    except JournalError as e:
        registry.saved(device_id, "status", None)
        log.warning("device status not stored; stored once there is room", extra={"fields": {
            "device": device_id, "online": online, "error": str(e)}})
        return False
    registry.saved(device_id, "status", gen)
    return True


async def store_fault(service: FloorService, registry: DeviceRegistry, device_id: str, kind: str,
                      fault: bool, detail: str = "") -> None:
    """A device's own fault report (its alarm raised or cleared); raises JournalError, kept as unsaved."""
    gen = registry.set_fault(device_id, kind, fault, detail)
    at = service.at()
    try:
        await service.execute(lambda f, c: device_fault(f, c, device_id, kind, fault, at, detail))
    except JournalError:
        registry.saved(device_id, "fault", None)
        raise
    registry.saved(device_id, "fault", gen)


async def resave(service: FloorService, registry: DeviceRegistry, configured: Callable[[str], bool]) -> int:
    """Store what could not be stored, as the devices are now (a later report may have changed it), in one
    commit; a device taken out of the config since is let go. Returns how many states were stored; raises
    JournalError while there is still no room."""
    if not registry.unsaved:
        return 0  # (every RESAVE_S: nothing to do, nothing built)
    registry.unsaved = {(d, w) for d, w in registry.unsaved if configured(d)}
    pending = sorted(registry.unsaved)
    if not pending:
        return 0
    gens = {device_id: registry.devices[device_id].gen for device_id, _ in pending if device_id in registry.devices}
    at = service.at()

    def op(floor: Floor, change: Change) -> None:
        for device_id, what in pending:
            info = registry.devices.get(device_id)
            if info is None:
                continue
            if what == "fault":
                device_fault(floor, change, device_id, info.kind, info.fault, at, info.fault_detail)
            else:
                device_status(floor, change, device_id, info.kind, info.online, info.detail, at)
    await service.execute(op)
    for device_id, what in pending:
        if device_id in gens:
            registry.saved(device_id, what, gens[device_id])
        else:
            registry.unsaved.discard((device_id, what))
    log.info("device states stored after a failed commit", extra={"fields": {
        "devices": [f"{d} {w}" for d, w in pending]}})
    return len(pending)
