"""Packing reviews: a parcel whose weight deviates beyond the tolerance, or one the packer reported with units
missing, waits `on_hold` for a person (a supervisor on the page, or the hub with `pack.review`) to approve it
(ship what was verified) or send it back to packing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.domain.change import Change
from gateway.domain.errors import Conflict
from gateway.domain.floor import Floor
from gateway.domain.model import ON_HOLD, PACKING, At
from gateway.domain.orders import get_order, transition
from gateway.domain.packing import approve


def resolve_review(floor: Floor, change: Change, order_id: str, decision: str, operator_id: str,
                   now: datetime) -> dict[str, Any]:
    order = get_order(floor, order_id)
    if order.state != ON_HOLD or "review" not in order.holds or order.review is None:
        raise Conflict(f"order {order_id} has no weight review pending (it is {order.state})", order_id=order_id,
                       state=order.state)
    if order.holds != ["review"]:
        raise Conflict(f"order {order_id} is also held by dispatch; release it first", order_id=order_id)
    if decision == "approve" and not order.review.get("items"):
        raise Conflict(f"nothing of order {order_id} was verified: repack it, or cancel it", order_id=order_id)
    if decision == "approve" and operator_id and operator_id == order.review.get("operator_id"):
        # Four eyes: the review exists because the parcel may be wrong; the person who packed it cannot be the
        # one who says it is right (a supervisor badged in at a packing station could approve their own).
        raise Conflict(f"{operator_id} packed order {order_id}: someone else approves its review (repack is "
                       "allowed)", order_id=order_id, operator_id=operator_id)
    change.emit("pack.review_resolved", {"decision": decision, "operator_id": operator_id}, order_id)
    station = str(order.review.get("station") or "")
    by = f" by {operator_id}" if operator_id else ""
    if decision == "approve":
        approve(floor, change, order, At(now, 0.0))  # pack.verified, then -> packed
        told = (True, f"order {order_id}: its review was approved{by}; it is packed")
    else:
        order.review = None
        transition(change, order, PACKING)  # the packer scans the order again and every item
        told = (False, f"order {order_id} goes back to packing{by}: scan the order again, then every item")
    if station:
        # The station's last word was the review's red "waits for a supervisor"; left there, it stood beside the
        # parcel card saying packed.
        change.signal(("station_feedback", station, told[0], told[1], "review"))
    order.holds = []
    change.save("order", order_id, order)
    return {"order_id": order_id, "state": order.state}
