"""The entry points for commands that change the floor, from the hub (SPEC §1 command table) and from the
supervisor's page: a hold from the page and a hold from the hub are the same call."""

from __future__ import annotations

from typing import Any

from gateway.domain.change import Change
from gateway.domain.commands import (
    Command,
    DispatchHold,
    DispatchRelease,
    MasterdataSync,
    OrderCancel,
    OrderIn,
    OrderUpsert,
    PackReview,
)
from gateway.domain.errors import InvalidPayload
from gateway.domain.floor import Floor
from gateway.domain.holds import hold, release
from gateway.domain.lights import claim, release_task
from gateway.domain.masterdata import apply_masterdata
from gateway.domain.model import RECEIVED, TASK_ASSIGNED, TASK_STARTED, At, Task
from gateway.domain.orders import cancel_order, upsert_order
from gateway.domain.review import resolve_review
from gateway.domain.sessions import follow_masterdata, sync_picker
from gateway.domain.tasks import escalation_handled, plan_tasks, stop_task


def receive_order(floor: Floor, change: Change, order_in: OrderIn, at: At) -> dict[str, Any]:
    """A new or updated order, with its tasks planned for dispatch."""
    result = upsert_order(floor, change, order_in, at.wall)
    order = floor.orders[order_in.order_id]
    if order.state == RECEIVED:
        plan_tasks(floor, change, order, at)
    return result


def cancel(floor: Floor, change: Change, order_id: str, reason: str, at: At) -> dict[str, Any]:
    """Cancel an order: its lights go off and its task stops; picked items are listed for return to stock."""
    return cancel_order(floor, change, order_id, reason, lambda task: stop_task(floor, change, task, at))


def _order_lights(floor: Floor, change: Change, order_id: str, on: bool) -> None:
    lights = set()
    for task in floor.tasks_of(order_id):
        if task.state in (TASK_ASSIGNED, TASK_STARTED):
            lights |= claim(floor, task) if on else release_task(floor, task)
    if lights:
        change.signal(("lights", frozenset(lights)))


def set_hold(floor: Floor, change: Change, scope: str, target: str, by: str, at: At, on: bool) -> dict[str, Any]:
    result = hold(floor, change, scope, target, by, at.wall) if on else release(floor, change, scope, target, by)
    if result.get("changed"):
        floor.dispatch.set_hold(scope, target, on)
        if scope == "order":
            _order_lights(floor, change, target, on=not on)
            if on:
                # The escalation alarm asks to "assign it by hand or hold the order": done, so it ends, and the
                # task's ladder starts over (after the release it is timed afresh and can be escalated again).
                for task in floor.tasks_of(target):
                    if task.active:  # a finished task keeps its history
                        escalation_handled(floor, change, task, at, f"order {target} is held by {by}")
        elif scope == "operator" and target in floor.md.operators:
            # (A hold names an operator master data knows, or is refused `not_found`; a release may name one who
            # has left master data since: no picker of dispatch's is made for them.)
            sync_picker(floor, target, at)
        change.signal(("dispatch", "hold"))
    return result


def apply_command(floor: Floor, change: Change, cmd: Command, at: At, by: str = "hub") -> dict[str, Any]:
    if isinstance(cmd, OrderUpsert):
        return receive_order(floor, change, cmd.order, at)
    if isinstance(cmd, OrderCancel):
        return cancel(floor, change, cmd.order_id, cmd.reason, at)
    if isinstance(cmd, DispatchHold):
        return set_hold(floor, change, cmd.scope, cmd.target, by, at, on=True)
    if isinstance(cmd, DispatchRelease):
        return set_hold(floor, change, cmd.scope, cmd.target, by, at, on=False)
    if isinstance(cmd, PackReview):
        return resolve_review(floor, change, cmd.order_id, cmd.decision, cmd.operator_id, at.wall)
    if isinstance(cmd, MasterdataSync):
        lists = {"skus": cmd.skus, "locations": cmd.locations, "operators": cmd.operators, "cartons": cmd.cartons}
        out = apply_masterdata(floor, change, cmd.mode, lists, cmd.part)
        if cmd.mode == "replace" or cmd.operators:
            follow_masterdata(floor, change, at)
        return {"applied": out.applied, "rejected": out.rejected}
    raise InvalidPayload(f"{type(cmd).__name__} is not applied through the domain API")


def returns_to_stock(floor: Floor) -> list[dict[str, Any]]:
    """Items picked for orders that were then cancelled: what someone must put back on the shelves."""
    out = []
    for order in floor.orders.values():
        if order.state != "cancelled":
            continue
        # A line went into its zone's task's tote; an order picked in several zones has several.
        tote_of = {n: t.tote for t in floor.tasks_of(order.order_id) if t.tote for n in t.line_nos}
        for line in order.lines:
            for p in line.picks:
                out.append({"order_id": order.order_id, "line_no": line.line_no, "sku": line.sku, "qty": p.qty,
                            "lot": p.lot, "location": p.location or line.location,
                            "tote": tote_of.get(line.line_no, order.tote)})
    return out


__all__ = ["Task", "apply_command", "cancel", "receive_order", "returns_to_stock", "set_hold"]
