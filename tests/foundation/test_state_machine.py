"""The order state machine of SPEC §1, table-driven: every pair of states is either legal or refused."""

from __future__ import annotations

import itertools

import pytest

from gateway.domain.change import Change
from gateway.domain.errors import Conflict
from gateway.domain.model import (
    ASSIGNED,
    CANCELLED,
    ON_HOLD,
    ORDER_STATES,
    PACKED,
    PACKING,
    PICKED,
    PICKING,
    RECEIVED,
    SHORT_PICKED,
    Line,
    Order,
    Priority,
)
from gateway.domain.orders import HOLDABLE, can_transition, transition

FORWARD = {
    (RECEIVED, ASSIGNED), (ASSIGNED, PICKING), (PICKING, PICKED), (PICKING, SHORT_PICKED), (PICKED, PACKING),
    (SHORT_PICKED, PACKING), (PACKING, PACKED),
    (PICKED, PICKING), (SHORT_PICKED, PICKING),  # reopened after an undo
}


def make(state: str, resume: str | None = None, holds: list[str] | None = None) -> Order:
    return Order("O-1", "web", Priority(), [Line(1, "S", 1)], "2026-11-23T08:00:00.000Z", state, resume,
                 holds or [])


# (label, order factory, set of legal targets)
CASES: list[tuple[str, Order, set[str]]] = []
for s in (RECEIVED, ASSIGNED, PICKING, PICKED, SHORT_PICKED, PACKING):
    CASES.append((s, make(s), {t for (f, t) in FORWARD if f == s} | {ON_HOLD, CANCELLED}))
for s in HOLDABLE:
    CASES.append((f"on_hold(dispatch, from {s})", make(ON_HOLD, s, ["dispatch"]), {s, CANCELLED}))
CASES.append(("on_hold(review)", make(ON_HOLD, PACKING, ["review"]), {PACKED, PACKING, CANCELLED}))
CASES.append(("on_hold(review+dispatch)", make(ON_HOLD, PACKING, ["dispatch", "review"]), {CANCELLED}))
CASES.append((PACKED, make(PACKED), set()))
CASES.append((CANCELLED, make(CANCELLED), set()))

ROWS = [(label, order, to, to in legal) for (label, order, legal), to in itertools.product(CASES, ORDER_STATES)]


@pytest.mark.parametrize(("label", "order", "to", "legal"), ROWS, ids=[f"{r[0]}->{r[2]}" for r in ROWS])
def test_transition_table(label: str, order: Order, to: str, legal: bool) -> None:
    assert can_transition(order, to) is legal


@pytest.mark.parametrize(("label", "order", "to", "legal"), [r for r in ROWS if r[3]],
                         ids=[f"{r[0]}->{r[2]}" for r in ROWS if r[3]])
def test_legal_transition_records_one_state_change(label: str, order: Order, to: str, legal: bool) -> None:
    o = make(order.state, order.resume_state, list(order.holds))
    ch = Change()
    frm = o.state
    transition(ch, o, to)
    assert o.state == to
    assert [(e.type, e.data) for e in ch.events] == [("order.state_changed", {"from": frm, "to": to})]
    if to == ON_HOLD:
        assert o.resume_state == frm


@pytest.mark.parametrize(("label", "order", "to", "legal"), [r for r in ROWS if not r[3]][::3],
                         ids=[f"{r[0]}->{r[2]}" for r in ROWS if not r[3]][::3])
def test_illegal_transition_is_conflict_and_changes_nothing(label: str, order: Order, to: str, legal: bool) -> None:
    o = make(order.state, order.resume_state, list(order.holds))
    before = o.to_doc()
    ch = Change()
    with pytest.raises(Conflict) as ei:
        transition(ch, o, to)
    assert ei.value.code == "conflict"
    assert o.to_doc() == before
    assert ch.empty
