"""Holds: the supervisor's and the hub's manual switch. No new assignment inside a held scope; an order
hold also parks the order in `on_hold` until released, back to the state it left."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.clock import rfc3339
from gateway.domain.change import Change
from gateway.domain.errors import Conflict, NotFound
from gateway.domain.floor import Floor
from gateway.domain.model import ON_HOLD, Hold, Order, Task
from gateway.domain.orders import HOLDABLE, get_order, transition

ALL_KEY = "all:*"


def hold_key(scope: str, target: str) -> str:
    """The key a hold is stored under. Scope `all` is one switch whatever id it came with (the id is optional
    and names nothing), so every `all` hold shares `all:*`: a second one is a repeat, and a release of `all`
    with any id, or none, ends it."""
    return ALL_KEY if scope == "all" else f"{scope}:{target}"


def _keys(floor: Floor, scope: str, target: str) -> list[str]:
    """The stored keys a hold or release of (scope, target) is about. For `all`, any `all:` key: journals
    written before the key was fixed hold `all:<id>`, which must still count and be releasable."""
    if scope == "all":
        return [k for k in floor.holds if k.partition(":")[0] == "all"]
    key = hold_key(scope, target)
    return [key] if key in floor.holds else []


def _check_target(floor: Floor, scope: str, target: str) -> None:
    """A hold on a zone or operator master data does not know holds nothing: a typo ("Zone-A") left the hub
    and the supervisor believing a zone was stopped while its work went on being assigned."""
    md = floor.md
    if scope == "zone":
        zones = {loc.zone for loc in md.locations.values()} | {z for op in md.operators.values() for z in op.zones}
        if target not in zones:
            raise NotFound(f"no zone {target} in master data (zones: {', '.join(sorted(zones)) or 'none'})",
                           scope=scope, id=target)
    elif scope == "operator" and target not in md.operators:
        raise NotFound(f"no operator {target} in master data", scope=scope, id=target)


def hold(floor: Floor, change: Change, scope: str, target: str, by: str, now: datetime) -> dict[str, Any]:
    key = hold_key(scope, target)
    order: Order | None = None
    _check_target(floor, scope, target)
    if scope == "order":
        order = get_order(floor, target)
        if order.state not in HOLDABLE and order.state != ON_HOLD:
            raise Conflict(f"order {target} is {order.state} and cannot be held", order_id=target,
                           state=order.state)
    if _keys(floor, scope, target):
        return {"scope": scope, "id": target, "changed": False}
    h = Hold(scope, target, by, rfc3339(now))
    floor.holds[key] = h
    change.save("hold", key, h)
    change.emit("dispatch.held", {"scope": scope, "id": target, "by": by}, target if scope == "order" else None)
    if order is not None:
        order.holds = sorted({*order.holds, "dispatch"})
        if order.state != ON_HOLD:
            transition(change, order, ON_HOLD)
        else:
            change.save("order", order.order_id, order)
        change.signal(("order_held", order.order_id))
    return {"scope": scope, "id": target, "changed": True}


def release(floor: Floor, change: Change, scope: str, target: str, by: str) -> dict[str, Any]:
    keys = _keys(floor, scope, target)
    if not keys:
        if scope == "order":
            get_order(floor, target)  # an unknown order is `not_found`, a known unheld one a no-op
        return {"scope": scope, "id": target, "changed": False}
    order = floor.orders.get(target) if scope == "order" else None
    # Validate before changing anything: the order must be able to go back.
    if order is not None and order.state == ON_HOLD and order.holds == ["dispatch"] and order.resume_state is None:
        raise Conflict(f"order {target} has no state to return to", order_id=target)
    for key in keys:
        del floor.holds[key]
        change.delete("hold", key)
    change.emit("dispatch.released", {"scope": scope, "id": target, "by": by},
                target if scope == "order" else None)
    if order is not None and "dispatch" in order.holds:
        order.holds = [x for x in order.holds if x != "dispatch"]
        if order.state == ON_HOLD and not order.holds and order.resume_state:
            transition(change, order, order.resume_state)
        else:
            change.save("order", order.order_id, order)
        change.signal(("order_released", order.order_id))
    return {"scope": scope, "id": target, "changed": True}


def is_held(floor: Floor, task: Task, operator_id: str | None = None) -> str | None:
    """The hold that blocks assigning `task` (to `operator_id`), as `scope:id`, or None."""
    if not floor.holds:
        return None
    held_all = _keys(floor, "all", "")
    if held_all:
        return held_all[0]
    for key in (f"order:{task.order_id}", f"zone:{task.zone}"):
        if key in floor.holds:
            return key
    if operator_id is not None and f"operator:{operator_id}" in floor.holds:
        return f"operator:{operator_id}"
    order = floor.orders.get(task.order_id)
    if order is not None and order.state == ON_HOLD:
        return f"order:{task.order_id}"
    return None


def picker_held(floor: Floor, operator_id: str) -> str | None:
    """The hold that stops new work for this picker, as `scope:id`, or None: an `all` hold, their own, or a hold
    on every zone they work in."""
    if not floor.holds:
        return None
    held_all = _keys(floor, "all", "")
    if held_all:
        return held_all[0]
    if f"operator:{operator_id}" in floor.holds:
        return f"operator:{operator_id}"
    op = floor.md.operators.get(operator_id)
    zones = [f"zone:{z}" for z in (op.zones if op is not None else [])]
    if zones and all(z in floor.holds for z in zones):
        return zones[0]
    return None
