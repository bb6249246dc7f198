"""The one entry point for hub commands that change the floor (SPEC §1 command table).

The MQTT intake parses JSON into typed commands and calls `apply_command`; the supervisor pages call the
same functions underneath, so a hold from the page and a hold from the hub are the same thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.domain.change import Change
from gateway.domain.commands import (
    Command,
    DispatchHold,
    DispatchRelease,
    MasterdataSync,
    OrderCancel,
    OrderUpsert,
    PackReview,
)
from gateway.domain.errors import InvalidPayload
from gateway.domain.floor import Floor
from gateway.domain.holds import hold, release
from gateway.domain.masterdata import apply_masterdata
from gateway.domain.orders import cancel_order, upsert_order
from gateway.domain.review import resolve_review


def apply_command(floor: Floor, change: Change, cmd: Command, now: datetime, by: str = "hub") -> dict[str, Any]:
    if isinstance(cmd, OrderUpsert):
        return upsert_order(floor, change, cmd.order, now)
    if isinstance(cmd, OrderCancel):
        return cancel_order(floor, change, cmd.order_id, cmd.reason)
    if isinstance(cmd, DispatchHold):
        return hold(floor, change, cmd.scope, cmd.target, by, now)
    if isinstance(cmd, DispatchRelease):
        return release(floor, change, cmd.scope, cmd.target, by)
    if isinstance(cmd, PackReview):
        return resolve_review(floor, change, cmd.order_id, cmd.decision, cmd.operator_id, now)
    if isinstance(cmd, MasterdataSync):
        lists = {"skus": cmd.skus, "locations": cmd.locations, "operators": cmd.operators, "cartons": cmd.cartons}
        out = apply_masterdata(floor, change, cmd.mode, lists, cmd.part)
        return {"applied": out.applied, "rejected": out.rejected}
    raise InvalidPayload(f"{type(cmd).__name__} is not applied through the domain API")
