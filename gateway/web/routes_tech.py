"""The technician's API: every device with its state and error counts, the last raw scans per scanner, and
driving a PTL module by hand (light it to find it, read its identity, run its self-test)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from drivers.ptl import PtlBus
from drivers.ptl.errors import PtlError
from gateway.web.auth import TECH_ROLES, Caller, Require
from gateway.web.errors import ApiError
from gateway.web.models import MODULE_ID, DeviceAction
from gateway.web.state import WebState, web_state
from gateway.web.views import technician

log = logging.getLogger("floorgate.web")
router = APIRouter(prefix="/api/v1/technician", tags=["technician"])
TECH = Require(*TECH_ROLES)
TechCaller = Annotated[Caller, Depends(TECH)]
ModuleId = Annotated[str, Path(pattern=MODULE_ID, description="{bus}-u{unit:03d}, e.g. bus-a-u007")]
TECH_TIMEOUT_S = 3.0


@router.get("/devices", summary="Every device with its state, error counts, bus figures and last raw scans")
async def devices(request: Request, caller: TechCaller) -> dict[str, Any]:
    return technician(web_state(request))


def _module(web: WebState, module_id: str) -> tuple[PtlBus, int]:
    m = re.match(r"^(.+)-u(\d{3})$", module_id)
    fleet = web.gw.fleet
    bus = fleet.ptl.buses.get(m.group(1)) if m and fleet is not None and fleet.ptl is not None else None
    if m is None or bus is None:
        raise ApiError(404, "not_found", f"no PTL bus for module {module_id} in the config")
    unit = int(m.group(2))
    if not 1 <= unit <= 247:  # Modbus unit ids; 0 is the broadcast address
        raise ApiError(404, "not_found", f"{module_id}: a PTL module's unit id is 1 to 247")
    try:
        bus.module(unit)
    except (KeyError, ValueError):
        raise ApiError(404, "not_found", f"module {module_id} is not in master data (no location lights it)") from None
    return bus, unit


async def _drive(module_id: str, what: str, coro: Any) -> Any:
    try:
        async with asyncio.timeout(TECH_TIMEOUT_S):
            return await coro
    except TimeoutError:
        raise ApiError(504, "timeout", f"{module_id} did not answer the {what} within {TECH_TIMEOUT_S:.0f} s") from None
    except PtlError as e:
        raise ApiError(503, "device_error", f"{module_id}: {what} failed: {e}") from None


@router.get("/modules/{module_id}/identity", summary="Read a module's model, serial number and firmware")
async def identity(module_id: ModuleId, request: Request, caller: TechCaller) -> dict[str, Any]:
    bus, unit = _module(web_state(request), module_id)
    ident = await _drive(module_id, "identity read", bus.read_identity(unit))
    return {"module_id": module_id, **asdict(ident)}


@router.post("/modules/{module_id}/identify", summary="Blink the module white for 5 s to find it on the shelf")
async def identify(module_id: ModuleId, body: DeviceAction, request: Request,
                   caller: TechCaller) -> dict[str, Any]:
    bus, unit = _module(web_state(request), module_id)
    await _drive(module_id, "identify", bus.identify(unit))
    log.info("module identify", extra={"fields": {"module": module_id, "by": caller.operator_id}})
    return {"ok": True, "module_id": module_id, "message": f"{module_id} blinks white for 5 s"}


@router.post("/modules/{module_id}/self-test", summary="Light every segment of the module for 2 s")
async def self_test(module_id: ModuleId, body: DeviceAction, request: Request,
                    caller: TechCaller) -> dict[str, Any]:
    bus, unit = _module(web_state(request), module_id)
    await _drive(module_id, "self-test", bus.self_test(unit))
    log.info("module self-test", extra={"fields": {"module": module_id, "by": caller.operator_id}})
    return {"ok": True, "module_id": module_id, "message": f"{module_id} shows every segment for 2 s"}
