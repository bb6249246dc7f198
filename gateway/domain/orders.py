"""Orders and their state machine (SPEC §1).

Every operation checks everything first and changes state only when it cannot fail any more, so a refusal
(`conflict`, `not_found`, ...) leaves the floor exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.clock import rfc3339
from gateway.domain.change import Change
from gateway.domain.commands import OrderIn
from gateway.domain.errors import Busy, Conflict, InvalidPayload, NotFound
from gateway.domain.floor import STORAGE_FULL, Floor
from gateway.domain.model import (
    ASSIGNED,
    CANCELLED,
    FINAL_STATES,
    ON_HOLD,
    PACKED,
    PACKING,
    PICKED,
    PICKING,
    RECEIVED,
    SHORT_PICKED,
    TASK_CANCELLED,
    Line,
    Order,
    Priority,
    Task,
)

# The forward flow, plus reopening a completed pick after an undo.
FLOW: frozenset[tuple[str, str]] = frozenset({
    (RECEIVED, ASSIGNED),
    (ASSIGNED, PICKING),
    (PICKING, PICKED),
    (PICKING, SHORT_PICKED),
    (PICKED, PACKING),
    (SHORT_PICKED, PACKING),
    (PACKING, PACKED),
    (PICKED, PICKING),
    (SHORT_PICKED, PICKING),
})
HOLDABLE = (RECEIVED, ASSIGNED, PICKING, PICKED, SHORT_PICKED, PACKING)
REVIEW_EXITS = (PACKED, PACKING)  # approve -> packed, repack -> packing


def can_transition(order: Order, to: str) -> bool:
    """Whether `order` may move to `to` now, by the rules of SPEC §1."""
    frm = order.state
    if frm in FINAL_STATES:
        return False
    if to == CANCELLED:
        return True
    if to == ON_HOLD:
        return frm in HOLDABLE
    if frm == ON_HOLD:
        if "review" in order.holds:
            return to in REVIEW_EXITS and order.holds == ["review"]
        return to == order.resume_state
    return (frm, to) in FLOW


def transition(change: Change, order: Order, to: str) -> None:
    """Move `order` to `to` and record `order.state_changed`, or refuse with `conflict`."""
    if not can_transition(order, to):
        raise Conflict(f"order {order.order_id} cannot go from {order.state} to {to}",
                       order_id=order.order_id, state=order.state)
    frm = order.state
    if to == ON_HOLD:
        order.resume_state = frm
    elif frm == ON_HOLD:
        order.resume_state = None
    order.state = to
    change.save("order", order.order_id, order)
    change.emit("order.state_changed", {"from": frm, "to": to}, order.order_id)


def _require_known_skus(floor: Floor, order: OrderIn) -> None:
    unknown = sorted({ln.sku for ln in order.lines if ln.sku not in floor.md.skus})
    if unknown:
        raise InvalidPayload(f"order {order.order_id}: unknown SKU {unknown[0]}"
                             + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                             order_id=order.order_id, sku=unknown[0])


def _lines(order: OrderIn) -> list[Line]:
    return [Line(ln.line_no, ln.sku, ln.qty) for ln in sorted(order.lines, key=lambda x: x.line_no)]


def _priority(order: OrderIn) -> Priority:
    p = order.priority
    return Priority(p.value_cents, p.level, p.cold_chain, p.cutoff_at)


def upsert_order(floor: Floor, change: Change, order_in: OrderIn, now: datetime) -> dict[str, Any]:
    """A new order (`order.received`) or a change to one still `received` (`order.updated`)."""
    existing = floor.orders.get(order_in.order_id)
    if existing is not None and existing.state != RECEIVED:
        raise Conflict(f"order {order_in.order_id} is {existing.state}; only a received order can be updated",
                       order_id=order_in.order_id, state=existing.state)
    _require_known_skus(floor, order_in)
    if existing is None:
        if floor.storage == STORAGE_FULL:
            raise Busy("storage is full: new orders are refused until space is freed", order_id=order_in.order_id)
        order = Order(order_in.order_id, order_in.channel, _priority(order_in), _lines(order_in), rfc3339(now))
        floor.orders[order.order_id] = order
        change.save("order", order.order_id, order)
        change.emit("order.received", {"lines": len(order.lines)}, order.order_id)
    else:
        order = existing
        order.channel = order_in.channel
        order.priority = _priority(order_in)
        order.lines = _lines(order_in)
        change.save("order", order.order_id, order)
        change.emit("order.updated", {"lines": len(order.lines)}, order.order_id)
    return {"order_id": order.order_id, "state": order.state}


def get_order(floor: Floor, order_id: str) -> Order:
    order = floor.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id}", order_id=order_id)
    return order


def cancel_order(floor: Floor, change: Change, order_id: str, reason: str,
                 on_task_stopped: Callable[[Task], None] | None = None) -> dict[str, Any]:
    """Cancel an order before `packed`: `order.cancelled`, then `task.cancelled`, then the state change."""
    order = get_order(floor, order_id)
    if order.state == CANCELLED:
        return {"order_id": order_id, "state": CANCELLED, "changed": False}
    if order.state == PACKED:
        raise Conflict(f"order {order_id} is already packed and cannot be cancelled", order_id=order_id,
                       state=order.state)
    order.cancel_reason = reason
    change.emit("order.cancelled", {"reason": reason}, order_id)
    for task in floor.tasks_of(order_id):
        if task.active:
            operator = task.operator_id
            task.state = TASK_CANCELLED
            change.save("task", task.task_id, task)
            data: dict[str, Any] = {"task_id": task.task_id}
            if operator:
                data["operator_id"] = operator
            change.emit("task.cancelled", data, order_id)
            if operator:
                _tell_to_put_back(floor, change, operator, task, order)
            if on_task_stopped is not None:
                on_task_stopped(task)
    order.holds = []
    # An order hold ends with the order; the hub learns it from `order.cancelled`.
    if floor.holds.pop(f"order:{order_id}", None) is not None:
        change.delete("hold", f"order:{order_id}")
    transition(change, order, CANCELLED)
    # Dispatch forgets the hold too, or the id would stay held there for good: a re-sent order of that id
    # (once the cancelled one is forgotten) would never be assigned.
    floor.dispatch.set_hold("order", order_id, False)
    # Its totes are free for other orders (what was picked into them is listed by `returns_to_stock`), and so is
    # a packing station that was verifying it.
    floor.free_totes(order)
    from gateway.domain.packing import free_station_of  # packing builds on this module
    free_station_of(floor, change, order_id)
    return {"order_id": order_id, "state": CANCELLED, "changed": True}


def _tell_to_put_back(floor: Floor, change: Change, operator_id: str, task: Task, order: Order) -> None:
    """The picker has units of a cancelled order in hand or in its tote: their PDA says which to put back."""
    units = [{"sku": line.sku, "qty": sum(p.qty for p in line.picks), "location": line.location}
             for no in task.line_nos for line in [order.line(no)] if line is not None and line.picks]
    if not units:
        return
    picker = floor.picker(operator_id)
    picker.put_back = [*picker.put_back, {"order_id": order.order_id, "tote": task.tote, "units": units}][-10:]
    change.save("picker", operator_id, picker)


def is_ready_for_packing(order: Order) -> bool:
    return order.state in (PICKED, SHORT_PICKED)


__all__ = ["FLOW", "HOLDABLE", "PACKING", "can_transition", "cancel_order", "get_order", "transition",
           "upsert_order"]


def forget_orders(floor: Floor, change: Change, order_ids: list[str]) -> int:
    """Let go of finished orders the hub holds (memory and documents); their events and audit rows stay. The
    serials they picked are kept on their own, so a serial is never picked twice, however old its order."""
    n = 0
    for oid in order_ids:
        order = floor.orders.get(oid)
        if order is None or order.state not in FINAL_STATES:
            continue
        for line in order.lines:
            for p in line.picks:
                for serial in p.serials:
                    change.save("serial", f"{line.sku}|{serial}", _Serial(line.sku, serial))
        for task in floor.tasks_of(oid):
            floor.tasks.pop(task.task_id, None)
            change.delete("task", task.task_id)
        floor.order_tasks.pop(oid, None)
        floor.free_totes(order)
        del floor.orders[oid]
        change.delete("order", oid)
        n += 1
    return n


class _Serial:
    def __init__(self, sku: str, serial: str) -> None:
        self.sku, self.serial = sku, serial

    def to_doc(self) -> dict[str, Any]:
        return {"sku": self.sku, "serial": self.serial}
