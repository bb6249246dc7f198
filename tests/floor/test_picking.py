"""Light-guided picking with scan checks, through the real service and journal on a moved clock."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.domain.model import Light
from tests.floor.conftest import Harness

LOT_GTIN = "09506000134352"  # SKU-LOT: lot and expiry tracked, 30 days minimum shelf life
SER_GTIN = "04012345000016"  # SKU-SER: serial tracked


async def test_login_assign_light_pick_and_complete(h: Harness) -> None:
    out = await h.scan("scan-1", "BADGE-P1")
    assert out.ok and h.floor.sessions["scan-1"].operator_id == "p1"
    await h.order("O-1", [(1, "SKU-1", 2), (2, "SKU-2", 1)])
    seq0 = h.seq
    assert await h.tick() == 1
    task = h.floor.tasks["O-1~zone-a"]
    assert task.operator_id == "p1" and h.floor.orders["O-1"].state == "assigned"
    assert h.types(seq0) == ["task.assigned", "order.state_changed"]
    assigned = h.events(seq0)[0][2]
    assert assigned["lines"] == [1, 2] and assigned["zone"] == "zone-a" and assigned["reason"]
    # Every line lights at once, each on its module, in the picker's colour with its quantity.
    lit = h.lit()
    assert lit[("bus-a", 1)].qty == 2 and lit[("bus-a", 2)].qty == 1
    assert lit[("bus-a", 1)].colour == lit[("bus-a", 2)].colour == "green"
    # Scan one unit of line 1: it counts, the display shows what is left.
    out = await h.item("scan-1", "4006381333931")
    assert out.ok and h.floor.orders["O-1"].state == "picking"
    assert h.lit()[("bus-a", 1)].qty == 1
    # Confirm the rest with the PTL key (the display's quantity).
    out = await h.key(task.task_id, 1, "confirm", qty=1)
    assert out.ok
    seq1 = h.seq
    out = await h.item("scan-1", "05012345678900")  # line 2 wants one: scanning it confirms it
    assert out.ok
    # The cause first, then its consequences.
    assert h.types(seq1) == ["pick.line_confirmed", "task.completed", "order.state_changed"]
    assert h.events(seq1)[-1][2] == {"from": "picking", "to": "picked"}
    confirmed = [d for t, _, d in h.events() if t == "pick.line_confirmed"]
    assert [(d["line_no"], d["qty"], d["via"]) for d in confirmed] == [(1, 2, "ptl_button"), (2, 1, "scan")]
    assert confirmed[0]["gtin"] == "04006381333931" and confirmed[0]["location"] == "A-01-01"
    assert h.lit() == {}  # lights off
    assert ("light_done", Light("bus-a", 2)) in h.signals


async def test_wrong_item_is_rejected_with_error_signal_and_changes_nothing(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 2)])
    seq = h.seq
    before = h.floor.orders["O-1"].to_doc()
    h.signals.clear()
    out = await h.item("scan-1", "05012345678900")  # SKU-2: not on the list
    assert not out.ok and out.code == "wrong_item"
    assert h.types(seq, skip=()) == ["scan.rejected"]
    rej = h.events(seq)[0][2]
    assert rej["code"] == "wrong_item" and rej["operator_id"] == "p1" and rej["device_id"] == "scan-1"
    assert rej["raw"] == "05012345678900"
    assert h.floor.orders["O-1"].to_doc() == before
    assert ("light_error", frozenset({Light("bus-a", 1)})) in h.signals
    garbled = await h.scan("scan-1", "4006381333932")  # bad check digit
    assert garbled.code == "invalid_barcode"
    unknown = await h.scan("scan-1", "HELLO")
    assert unknown.code == "unknown_barcode"
    del task


async def test_lots_expiry_and_shelf_life(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-LOT", 3)])
    no_lot = await h.item("scan-1", LOT_GTIN)
    assert no_lot.code == "lot_required"
    expired = await h.item("scan-1", LOT_GTIN, lot="L1", expiry="261101")  # clock is 2026-11-23
    assert expired.code == "expired"
    short = await h.item("scan-1", LOT_GTIN, lot="L1", expiry="261210")  # 17 days < 30
    assert short.code == "short_shelf_life" and "17 days" in short.message
    day00 = await h.item("scan-1", LOT_GTIN, lot="L1", expiry="270300")  # day 00: last day of March 2027
    assert day00.ok
    other_lot = await h.item("scan-1", LOT_GTIN, lot="L2", expiry="270600")
    assert other_lot.ok
    seq = h.seq
    done = await h.key(task, 1, "confirm", qty=1)  # the third unit, of the lot in hand (L2)
    assert done.ok
    confirmed = [d for t, _, d in h.events(seq) if t == "pick.line_confirmed"]
    assert sorted((d["lot"], d["qty"], d["expiry"]) for d in confirmed) == [("L1", 1, "2027-03-31"),
                                                                            ("L2", 2, "2027-06-30")]


async def test_serials_may_not_repeat_and_over_scan(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-SER", 2)])
    await h.order("O-2", [(1, "SKU-SER", 1)])
    await h.tick()
    assert (await h.item("scan-1", SER_GTIN)).code == "not_allowed"  # serial required
    assert (await h.item("scan-1", SER_GTIN, serial="S-1")).ok
    assert (await h.item("scan-1", SER_GTIN, serial="S-1")).code == "serial_repeated"
    assert (await h.item("scan-1", SER_GTIN, serial="S-2")).ok  # line 1 of O-1 done
    out = await h.item("scan-1", SER_GTIN, serial="S-2")
    assert out.code == "serial_repeated"  # not on another order either
    assert (await h.item("scan-1", SER_GTIN, serial="S-3")).ok  # O-2
    assert h.floor.orders["O-2"].state == "picked"


async def test_serial_tracked_units_count_only_by_their_own_scan(h: Harness) -> None:
    """A key or the PDA would count units with the serial of the unit in hand; a serial belongs to one unit,
    so such a confirm is refused (nothing changes, the error shows) and each unit is scanned instead."""
    task = await h.picker_with_task(lines=[(1, "SKU-SER", 3)])
    assert (await h.item("scan-1", SER_GTIN, serial="S-1")).ok
    before = h.floor.orders["O-1"].to_doc()
    seq = h.seq
    h.signals.clear()
    for kind, qty, adjusted, via in (("confirm", 2, False, "ptl_button"), ("confirm", 1, True, "ptl_button"),
                                     ("confirm", 2, False, "pda"), ("shortage", 1, True, "ptl_button"),
                                     ("shortage", 1, True, "pda")):
        out = await h.key(task, 1, kind, qty=qty, adjusted=adjusted, via=via)
        assert not out.ok and out.code == "not_allowed" and "serial-tracked" in out.message, (kind, via, out)
    assert h.floor.orders["O-1"].to_doc() == before and h.types(seq, skip=()) == []
    assert ("light_error", frozenset({Light("bus-a", 4)})) in h.signals
    assert h.floor.serials == {("SKU-SER", "S-1")}
    assert (await h.item("scan-1", SER_GTIN, serial="S-2")).ok  # each unit by its own scan
    # Closing the line with nothing more counted invents no serial: the rest is short.
    seq = h.seq
    assert (await h.key(task, 1, "shortage")).ok
    got = [(t, d.get("qty"), d.get("serials"), d.get("qty_missing")) for t, _, d in h.events(seq)
           if t.startswith("pick.")]
    assert got == [("pick.line_confirmed", 2, ["S-1", "S-2"], None), ("pick.line_short", None, None, 1)]


async def test_pack_gtin_counts_its_pack_quantity_and_over_scan(h: Harness) -> None:
    await h.picker_with_task(lines=[(1, "SKU-2", 8)])
    assert (await h.item("scan-1", "15012345678907")).ok  # a pack of 6
    assert h.floor.orders["O-1"].lines[0].picked == 6
    over = await h.item("scan-1", "15012345678907")
    assert over.code == "over_scan"
    seq = h.seq
    assert (await h.item("scan-1", "05012345678900")).ok
    assert (await h.item("scan-1", "05012345678900")).ok
    assert h.floor.orders["O-1"].state == "picked"
    # One event per GTIN: it was one with the pack's GTIN and qty 8, which reads as 8 packs.
    confirmed = [(d["gtin"], d["qty"]) for t, _, d in h.events(seq) if t == "pick.line_confirmed"]
    assert confirmed == [("15012345678907", 6), ("05012345678900", 2)]


async def test_key_rules_adjusted_confirm_and_shortage(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 5), (2, "SKU-2", 4), (3, "SKU-LOT", 2)])
    # A key before the item is scanned confirms nothing and shows the error signal.
    h.signals.clear()
    nothing = await h.key(task, 1, "confirm", qty=5)
    assert not nothing.ok and "scan the item" in nothing.message
    assert ("light_error", frozenset({Light("bus-a", 1)})) in h.signals
    assert not h.floor.orders["O-1"].lines[0].done
    # Confirm with a quantity below the job's: that much picked, the rest short (adjusted).
    await h.item("scan-1", "4006381333931")
    seq = h.seq
    await h.key(task, 1, "confirm", qty=2, adjusted=True)
    line1 = [(t, d) for t, _, d in h.events(seq) if t.startswith("pick.")]
    assert line1 == [("pick.line_confirmed", line1[0][1]), ("pick.line_short", line1[1][1])]
    assert line1[0][1]["qty"] == 3 and line1[1][1] == {"task_id": task, "line_no": 1, "qty_picked": 3,
                                                       "qty_missing": 2, "operator_id": "p1", "reason": "adjusted"}
    # Shortage key with an adjusted quantity: that much picked, the rest short.
    await h.item("scan-1", "05012345678900")
    seq = h.seq
    await h.key(task, 2, "shortage", qty=2, adjusted=True)
    got = [(t, d.get("qty"), d.get("qty_missing"), d.get("reason"))
           for t, _, d in h.events(seq) if t.startswith("pick.")]
    assert got == [("pick.line_confirmed", 3, None, None), ("pick.line_short", None, 1, "shortage_key")]
    # Shortage key without adjustment: nothing more was picked.
    await h.item("scan-1", LOT_GTIN, lot="L9", expiry="271231")
    seq = h.seq
    await h.key(task, 3, "shortage", qty=1, adjusted=False)
    short = [(t, d.get("qty"), d.get("qty_missing")) for t, _, d in h.events(seq) if t.startswith("pick.")]
    assert short == [("pick.line_confirmed", 1, None), ("pick.line_short", None, 1)]
    assert h.floor.orders["O-1"].state == "short_picked"


async def test_location_scan_selects_the_line_in_hand(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    assert (await h.scan("scan-1", "A-01-02")).ok
    assert h.floor.pickers["p1"].in_hand == (task, 2)
    assert h.floor.orders["O-1"].state == "picking"  # an accepted scan for the order (SPEC §1)
    assert (await h.scan("scan-1", "A-09-09")).code == "unknown_barcode"
    assert (await h.scan("scan-1", "A-01-03")).code == "wrong_location"  # none of p1's lines is there
    # SKU-1 with line 2 (SKU-2) in hand: it is matched to the open line of that SKU (SPEC §6), line 1
    out = await h.item("scan-1", "4006381333931")
    assert out.ok and out.detail["line_no"] == 1
    assert (await h.item("scan-1", "05012345678900")).ok
    assert h.floor.orders["O-1"].state == "picked"


async def test_a_unit_of_another_line_on_the_list_is_not_a_wrong_item(h: Harness) -> None:
    """Every line is lit at once and pickers take them in any order. After one unit of line 1, a unit of line 2
    was refused `wrong_item` (a bad beep, counted against the picker's health); of a held order's line 2, it
    was `wrong_item` too, where SPEC says `not_allowed`."""
    await h.picker_with_task(lines=[(1, "SKU-1", 3), (2, "SKU-2", 1)])
    assert (await h.item("scan-1", "4006381333931")).ok  # one of three of line 1: in hand
    out = await h.item("scan-1", "05012345678900")
    assert out.ok and out.detail["line_no"] == 2, out
    assert (await h.item("scan-1", "4006381333931")).detail["line_no"] == 1  # back to line 1
    h.signals.clear()
    wrong = await h.item("scan-1", "09506000134352")  # SKU-LOT: not on the list
    assert wrong.code == "wrong_item"
    assert ("light_error", frozenset({Light("bus-a", 1)})) in h.signals  # signalled on the line in hand
    await h.hold("order", "O-1")
    held = await h.item("scan-1", "4006381333931")
    assert held.code == "not_allowed"


async def test_tote_and_location_scans_start_the_task(h: Harness) -> None:
    """SPEC §1: `assigned` -> `picking` at the first accepted scan. A tote bound and the shelf scanned left the
    order `assigned` and its task "not started": a cold-chain task was taken from the picker after 10 minutes,
    with its tote on their cart."""
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1)])
    seq = h.seq
    assert (await h.scan("scan-1", "TOTE-A1")).ok
    assert h.floor.tasks[task].state == "started" and h.floor.orders["O-1"].state == "picking"
    assert h.types(seq) == ["tote.bound", "order.state_changed"]


async def test_a_location_scan_without_a_task_says_there_is_no_task(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    out = await h.scan("scan-1", "A-01-01")  # a real shelf, but p1 has nothing to pick yet
    assert (out.code, out.message) == ("no_task", "you have no pick task right now")


async def test_undo_within_the_window_only(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    await h.item("scan-1", "4006381333931")
    await h.item("scan-1", "05012345678900")
    assert h.floor.orders["O-1"].state == "picked"
    seq = h.seq
    out = await h.undo(task, 2)
    assert out.ok
    assert h.types(seq) == ["pick.line_undone", "task.reopened", "order.state_changed"]
    assert h.events(seq)[0][2] == {"task_id": task, "line_no": 2, "qty": 1, "operator_id": "p1", "by": "p1"}
    assert h.floor.orders["O-1"].state == "picking" and h.lit()[("bus-a", 2)].qty == 1
    assert (await h.item("scan-1", "05012345678900")).ok
    h.clock.advance(121)
    late = await h.undo(task, 2)
    assert not late.ok and "undo window" in late.message


async def test_not_logged_in_badge_toggles_and_replaced(h: Harness) -> None:
    out = await h.item("scan-1", "4006381333931")
    assert out.code == "not_logged_in"
    await h.scan("scan-1", "BADGE-P1")
    seq = h.seq
    await h.scan("scan-1", "BADGE-P2")  # another badge: the first operator is logged out
    assert h.events(seq) == [("operator.logout", None, {"operator_id": "p1", "device_id": "scan-1",
                                                        "reason": "replaced"}),
                             ("operator.login", None, {"operator_id": "p2", "device_id": "scan-1"})]
    seq = h.seq
    await h.scan("scan-1", "BADGE-P2")  # the same badge again: logout
    assert h.events(seq)[0][2]["reason"] == "badge" and "scan-1" not in h.floor.sessions
    packer = await h.scan("scan-1", "BADGE-K1")
    assert packer.code == "not_allowed" and "picker" in packer.message  # a packer cannot pick


async def test_idle_logout_and_breaks(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    seq = h.seq
    brk = await h.scan("scan-1", "BREAK")
    assert brk.ok and h.floor.pickers["p1"].on_break
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id is None  # no work on a break
    await h.scan("scan-1", "BREAK")
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
    assert [t for t in h.types(seq) if t.startswith("operator.break")] == ["operator.break_started",
                                                                           "operator.break_ended"]
    h.clock.advance(31 * 60)
    await h.tick()  # the ticker's tick also logs out idle devices
    from gateway.domain.sessions import idle_logouts

    at = h.service.at()
    await h.service.execute(lambda f, c: idle_logouts(f, c, at))
    assert "scan-1" not in h.floor.sessions
    assert any(t == "operator.logout" and d["reason"] == "idle" for t, _, d in h.events(seq))


async def test_hold_stops_scans_and_release_resumes(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 2)])
    await h.item("scan-1", "4006381333931")
    await h.hold("order", "O-1")
    assert h.floor.orders["O-1"].state == "on_hold" and h.lit() == {}
    refused = await h.item("scan-1", "4006381333931")
    assert refused.code == "not_allowed" and "on hold" in refused.message
    await h.hold("order", "O-1", on=False)
    assert h.floor.orders["O-1"].state == "picking" and h.lit()[("bus-a", 1)].qty == 1
    assert (await h.key(task, 1, "confirm", qty=1)).ok


async def test_cancel_mid_pick_turns_lights_off_and_lists_returns(h: Harness) -> None:
    await h.picker_with_task(lines=[(1, "SKU-1", 3), (2, "SKU-2", 1)])
    await h.item("scan-1", "4006381333931")
    seq = h.seq
    r = await h.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"})
    assert r["ok"]
    assert h.types(seq) == ["order.cancelled", "task.cancelled", "order.state_changed"]
    assert h.lit() == {}
    from gateway.domain.api import returns_to_stock

    assert returns_to_stock(h.floor) == [{"order_id": "O-1", "line_no": 1, "sku": "SKU-1", "qty": 1, "lot": None,
                                          "location": "A-01-01", "tote": None}]
    assert (await h.item("scan-1", "4006381333931")).code == "no_task"


async def test_cancel_frees_the_orders_tote(h: Harness) -> None:
    await h.picker_with_task(lines=[(1, "SKU-1", 3)])
    assert (await h.scan("scan-1", "TOTE-9")).ok
    await h.item("scan-1", "4006381333931")
    assert (await h.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"}))["ok"]
    assert "TOTE-9" not in h.floor.totes
    await h.order("O-2", [(1, "SKU-2", 1)])
    await h.tick()
    again = await h.scan("scan-1", "TOTE-9")  # the tote can go on another order's task
    assert again.ok, again
    assert h.floor.totes == {"TOTE-9": "O-2"}


async def test_a_cancelled_held_order_is_no_longer_held_by_dispatch(h: Harness) -> None:
    """Cancelling a held order ends its hold in dispatch too: once the cancelled order is forgotten, an
    order the hub sends again under that id is assigned like any other."""
    from gateway.domain.orders import forget_orders

    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.hold("order", "O-1")
    assert (await h.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"}))["ok"]
    assert h.floor.holds == {}
    assert await h.service.execute(lambda f, c: forget_orders(f, c, ["O-1"])) == 1
    await h.order("O-1", [(1, "SKU-2", 1)])
    await h.tick()
    assert h.floor.orders["O-1"].state == "assigned" and h.floor.tasks["O-1~zone-a"].operator_id == "p1"


async def test_two_pickers_share_a_module_and_a_zone(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    await h.scan("scan-2", "BADGE-P2")
    await h.order("O-2", [(1, "SKU-1", 2), (2, "SKU-2", 1)])
    await h.tick()
    t2 = h.floor.tasks["O-2~zone-a"]
    assert t2.operator_id == "p2"
    lit = h.lit()
    # Module 1 shows p1's line; p2's line for the same module waits, unlit. p2's other line has its colour.
    assert lit[("bus-a", 1)].operator_id == "p1" and lit[("bus-a", 1)].colour == "green"
    assert lit[("bus-a", 2)].operator_id == "p2" and lit[("bus-a", 2)].colour == "blue"
    await h.item("scan-1", "4006381333931")  # p1 completes: the module passes to p2
    assert h.lit()[("bus-a", 1)].operator_id == "p2" and h.lit()[("bus-a", 1)].qty == 2


async def test_state_after_restart_keeps_lights_colours_and_tasks(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 2), (2, "SKU-2", 1)])
    await h.item("scan-1", "4006381333931")
    before = h.lit()
    await h.service.reload()
    assert h.lit() == before
    assert h.floor.tasks[task].state == "started" and h.floor.sessions["scan-1"].operator_id == "p1"
    assert (await h.key(task, 1, "confirm", qty=1)).ok


@pytest.mark.parametrize("floor_cfg", [{"location_scan": "required"}], indirect=True)
async def test_location_scan_required_refuses_an_item_before_its_shelf(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    seq = h.seq
    early = await h.item("scan-1", "4006381333931")
    assert early.code == "wrong_location" and "A-01-01" in early.message
    assert not [t for t, _, _ in h.events(seq) if t.startswith("pick.")]  # nothing counted
    assert (await h.scan("scan-1", "A-01-01")).ok
    assert (await h.item("scan-1", "4006381333931")).ok
    assert h.types(seq).count("pick.line_confirmed") == 1
    assert (await h.item("scan-1", "05012345678900")).code == "wrong_location"  # line 2's shelf not scanned
    assert (await h.scan("scan-1", "A-01-02")).ok
    assert (await h.item("scan-1", "05012345678900")).ok
    assert h.floor.orders["O-1"].state == "picked" and h.floor.tasks[task].state == "completed"


@pytest.mark.parametrize("floor_cfg", [{"location_scan": "off"}], indirect=True)
async def test_location_scan_off_notes_a_shelf_and_never_refuses_for_it(h: Harness) -> None:
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    assert (await h.scan("scan-1", "A-01-03")).ok  # no line of p1's there: only noted, never refused
    assert h.floor.pickers["p1"].in_hand != (task, 2)  # and it selects nothing
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.item("scan-1", "05012345678900")).ok
    assert h.floor.orders["O-1"].state == "picked"


def moved(code: str, unit: int | None) -> list[dict[str, Any]]:
    """The master data's locations with `code` on module `unit` of bus-a (None: no module)."""
    from tests.conftest import LOCATIONS
    from tests.floor.conftest import EXTRA_LOCATIONS

    out: list[dict[str, Any]] = []
    for loc in LOCATIONS + EXTRA_LOCATIONS:
        item: dict[str, Any] = dict(loc)
        if item["code"] == code:
            item.pop("light", None)
            if unit is not None:
                item["light"] = {"bus": "bus-a", "unit": unit}
        out.append(item)
    return out


@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_a_location_moved_to_another_module_takes_its_lit_line_along(h: Harness, mode: str) -> None:
    """A shelf re-wired to another module while its line is lit: the line is shown on the new module at once
    (as it would be after a restart), and the module it left goes dark."""
    from tests.conftest import CARTONS, OPERATORS, SKUS
    from tests.floor.conftest import EXTRA_OPERATORS, EXTRA_SKUS

    task = await h.picker_with_task(lines=[(1, "SKU-1", 2), (2, "SKU-2", 1)])
    assert {k for k, v in h.lit().items() if v is not None} == {("bus-a", 1), ("bus-a", 2)}
    h.signals.clear()
    lists: dict[str, Any] = {"locations": moved("A-01-01", 6)}
    if mode == "replace":
        lists.update(skus=SKUS + EXTRA_SKUS, operators=OPERATORS + EXTRA_OPERATORS, cartons=CARTONS)
    r = await h.cmd("masterdata.sync", {"mode": mode, "sync_id": f"move-{mode}", "part": 1, "parts": 1, **lists})
    assert r["ok"] and not r["rejected"], r
    lit = {k: v for k, v in h.lit().items() if v is not None}
    assert set(lit) == {("bus-a", 6), ("bus-a", 2)}
    assert (lit[("bus-a", 6)].task_id, lit[("bus-a", 6)].line_no, lit[("bus-a", 6)].qty) == (task, 1, 2)
    assert Light("bus-a", 1) not in h.floor.modules
    if mode == "replace":  # a new generation: every module is shown again
        assert ("masterdata_replaced", h.floor.md_gen) in h.signals, h.signals
    else:  # the modules the shelf left and joined
        assert ("modules_changed", [Light("bus-a", 1), Light("bus-a", 6)]) in h.signals, h.signals
    # What a restart would show is what is shown now.
    before = h.lit()
    await h.service.reload()
    assert h.lit() == before
    # Its shelf loses its module: the line is lit nowhere (picked by scan), the other line stays.
    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "unlit", "part": 1, "parts": 1,
                                        "locations": moved("A-01-01", None)})
    assert r["ok"] and not r["rejected"], r
    assert {k for k, v in h.lit().items() if v is not None} == {("bus-a", 2)}
    assert (await h.item("scan-1", "4006381333931")).ok


async def test_a_merge_that_moves_no_module_keeps_the_allocation_and_sends_no_signal(h: Harness) -> None:
    await h.picker_with_task(lines=[(1, "SKU-1", 2)])
    modules = h.floor.modules
    h.signals.clear()
    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "same", "part": 1, "parts": 1,
                                        "locations": moved("A-01-01", 1)})
    assert r["ok"] and not r["rejected"], r
    assert h.floor.modules is modules
    assert not any(isinstance(s, tuple) and s[0] in ("masterdata_replaced", "modules_changed")
                   for s in h.signals), h.signals


@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_moving_one_shelf_leaves_who_is_shown_first_on_a_shared_module(h: Harness, mode: str) -> None:
    """p1 and p2 share module 2; p2 is shown first (p1's order was held and released, so p1 queued again behind
    p2, though p1 was assigned first, and a restart would show p1 first). Moving another shelf (one of p2's lines
    goes with it) must not turn module 2 over to p1 under p2's hands."""
    from tests.conftest import CARTONS, OPERATORS, SKUS
    from tests.floor.conftest import EXTRA_OPERATORS, EXTRA_SKUS

    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-2", 1)])
    await h.tick()
    await h.scan("scan-2", "BADGE-P2")
    await h.order("O-2", [(1, "SKU-2", 1), (2, "SKU-1", 1)])  # its line 2 is on the shelf that moves
    await h.tick()
    assert h.lit()[("bus-a", 2)].operator_id == "p1"
    await h.hold("order", "O-1")
    await h.hold("order", "O-1", on=False)
    assert h.lit()[("bus-a", 2)].operator_id == "p2"
    lists: dict[str, Any] = {"locations": moved("A-01-01", 6)}
    if mode == "replace":
        lists.update(skus=SKUS + EXTRA_SKUS, operators=OPERATORS + EXTRA_OPERATORS, cartons=CARTONS)
    r = await h.cmd("masterdata.sync", {"mode": mode, "sync_id": f"other-{mode}", "part": 1, "parts": 1, **lists})
    assert r["ok"] and not r["rejected"], r
    assert h.lit()[("bus-a", 2)].operator_id == "p2"
    assert h.floor.modules[Light("bus-a", 2)].waiting == [("O-1~zone-a", 1)]
    assert h.lit()[("bus-a", 6)].operator_id == "p2" and h.lit()[("bus-a", 6)].line_no == 2


async def test_an_item_scan_goes_to_the_order_the_pda_shows_first_and_says_which(h: Harness) -> None:
    """Two orders on one PDA share a SKU. The lowest line_no of all orders credited the unit to the order not on
    screen (its line 1) while the picker put it in the tote of the order shown (line 2 there)."""
    from gateway.domain.picking import picker_view

    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-A", [(1, "SKU-2", 1), (2, "SKU-1", 1)])
    await h.order("O-B", [(1, "SKU-1", 1)])
    await h.tick()
    assert {t.order_id for t in h.floor.tasks.values() if t.operator_id == "p1"} == {"O-A", "O-B"}
    shown = picker_view(h.floor, "p1")["lines"][0]["order_id"]
    out = await h.item("scan-1", "4006381333931")  # SKU-1, no location scanned
    credited = next(ln for ln in h.floor.orders[shown].lines if ln.sku == "SKU-1")
    assert out.ok and credited.picked == 1
    assert out.detail["order_id"] == shown and f"of order {shown}" in out.message


async def test_master_data_that_drops_a_logged_in_picker_logs_them_out_and_frees_their_task(h: Harness) -> None:
    from tests.conftest import CARTONS, LOCATIONS, OPERATORS, SKUS
    from tests.floor.conftest import EXTRA_LOCATIONS, EXTRA_OPERATORS, EXTRA_SKUS

    task = await h.picker_with_task()
    seq = h.seq
    r = await h.cmd("masterdata.sync", {"mode": "replace", "sync_id": "md2", "part": 1, "parts": 1,
                                        "skus": SKUS + EXTRA_SKUS, "locations": LOCATIONS + EXTRA_LOCATIONS,
                                        "operators": [o for o in OPERATORS + EXTRA_OPERATORS
                                                      if o["operator_id"] != "p1"], "cartons": CARTONS})
    assert r["ok"]
    logouts = [d for t, _, d in h.events(seq) if t == "operator.logout"]
    assert [(d["operator_id"], d["reason"]) for d in logouts] == [("p1", "manual")]
    assert not [s for s in h.floor.sessions.values() if s.operator_id == "p1"]
    await h.tick()
    assert h.floor.tasks[task].operator_id != "p1"  # back to dispatch, not kept by someone who is gone


async def test_a_merge_that_takes_the_picker_role_away_logs_the_picker_out(h: Harness) -> None:
    await h.picker_with_task()
    p1 = next(o for o in h.floor.md.operators.values() if o.operator_id == "p1")
    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "md3", "part": 1, "parts": 1, "operators": [
        {"operator_id": "p1", "name": p1.name, "badge": p1.badge, "roles": ["packer"], "zones": list(p1.zones)}]})
    assert r["ok"] and not r["rejected"], r
    assert not [s for s in h.floor.sessions.values() if s.operator_id == "p1"]


async def test_one_unit_too_many_on_a_complete_line_is_over_scan_not_wrong_item(h: Harness) -> None:
    await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    assert (await h.item("scan-1", "4006381333931")).ok  # line 1 complete
    extra = await h.item("scan-1", "4006381333931")
    assert extra.code == "over_scan" and "line 1 of order O-1" in extra.message and "already complete" in extra.message


async def test_one_unit_too_many_after_the_last_task_is_over_scan_not_no_task(h: Harness) -> None:
    """A double read of the last unit of the picker's last task: "you have no pick task right now" told them
    nothing of the unit in hand. Ten minutes on, it is no_task again (that unit is not this line's)."""
    await h.picker_with_task(lines=[(1, "SKU-1", 2)])
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.item("scan-1", "4006381333931")).ok
    assert h.floor.orders["O-1"].state == "picked"
    extra = await h.item("scan-1", "4006381333931")
    assert extra.code == "over_scan" and "line 1 of order O-1" in extra.message, extra
    assert (await h.item("scan-1", "05012345678900")).code == "no_task"  # not a unit of what they picked
    h.clock.advance(601)
    assert (await h.item("scan-1", "4006381333931")).code == "no_task"


async def test_a_cancelled_order_tells_its_picker_what_to_put_back_until_they_work_on(h: Harness) -> None:
    from gateway.domain.picking import picker_view

    await h.picker_with_task(lines=[(1, "SKU-1", 2), (2, "SKU-2", 1)])
    assert (await h.scan("scan-1", "TOTE-7")).ok
    assert (await h.item("scan-1", "4006381333931")).ok  # 1 of 2 in the tote
    assert (await h.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"}))["ok"]
    back = picker_view(h.floor, "p1")["put_back"]
    assert back == [{"order_id": "O-1", "tote": "TOTE-7", "units": [{"sku": "SKU-1", "qty": 1, "location": "A-01-01"}]}]
    await h.order("O-2", [(1, "SKU-2", 1)])
    await h.tick()
    assert picker_view(h.floor, "p1")["put_back"] == back  # still shown: not worked on yet
    assert (await h.item("scan-1", "05012345678900")).ok  # the next accepted scan: read
    assert picker_view(h.floor, "p1")["put_back"] == []


async def test_an_item_scan_goes_to_the_lit_line_the_pda_shows_before_an_unlit_one(h: Harness) -> None:
    """A review of the rule above: ranking whole orders by their first line sent the unit to an unlit line of
    the order shown first, while the lit line of that SKU (another order) stood higher on the PDA."""
    from gateway.domain.picking import picker_view

    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-B", [(1, "SKU-1", 1)], value_cents=900000, customer_level=3)  # takes the SKU-1 module
    await h.tick()
    await h.order("O-A", [(1, "SKU-2", 1), (2, "SKU-1", 1)])
    await h.tick()
    view = picker_view(h.floor, "p1")["lines"]
    first_sku1 = next(x for x in view if x["sku"] == "SKU-1")
    assert first_sku1["lit"]
    out = await h.item("scan-1", "4006381333931")
    assert out.ok and (out.detail["order_id"], out.detail["line_no"]) == (first_sku1["order_id"],
                                                                         first_sku1["line_no"])


async def test_a_supervisors_undo_is_told_on_the_pickers_pda_and_their_own_is_not(h: Harness) -> None:
    from gateway.domain.picking import picker_view

    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.undo(task, 1, by="p1")).ok  # their own: they know
    assert picker_view(h.floor, "p1")["put_back"] == []
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.undo(task, 1, by="s1")).ok
    assert picker_view(h.floor, "p1")["put_back"] == [
        {"order_id": "O-1", "tote": None, "units": [{"sku": "SKU-1", "qty": 1, "location": "A-01-01"}],
         "undone_line": 1, "by": "s1"}]
    assert (await h.item("scan-1", "4006381333931")).ok  # picked again: read
    assert picker_view(h.floor, "p1")["put_back"] == []


async def test_a_scan_that_fits_a_held_order_and_another_goes_to_the_other(h: Harness) -> None:
    """A review: two of the picker's orders need SKU-1 and the one shown first is put on hold. The item scan (and
    the shelf's location scan) went to the held order's line and was refused "put the item back", while the
    other order needed that very unit. The PDA now lists the held order's line last, and the scans follow it."""
    from gateway.domain.picking import picker_view

    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "unlit", "part": 1, "parts": 1, "locations": [
        {"code": "A-01-01", "zone": "zone-a", "sku": "SKU-1"}]})  # a shelf without a light: nothing ranks by it
    assert r["ok"] and not r["rejected"], r
    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-A", [(1, "SKU-1", 1)])
    await h.order("O-B", [(1, "SKU-1", 1)])
    await h.tick()
    assert {t.order_id for t in h.floor.tasks.values() if t.operator_id == "p1"} == {"O-A", "O-B"}
    first = picker_view(h.floor, "p1")["lines"][0]["order_id"]
    other = ({"O-A", "O-B"} - {first}).pop()
    assert (await h.cmd("dispatch.hold", {"scope": "order", "id": first, "reason": "customer call"}))["ok"]
    assert h.floor.orders[first].state == "on_hold"
    view = picker_view(h.floor, "p1")["lines"]
    assert [(x["order_id"], x["on_hold"]) for x in view] == [(other, False), (first, True)]
    located = await h.scan("scan-1", "A-01-01")
    assert located.ok and located.detail["task_id"] == view[0]["task_id"]
    out = await h.item("scan-1", "4006381333931")
    assert out.ok and out.detail["order_id"] == other, out
    assert h.floor.orders[first].lines[0].picked == 0
    held_only = await h.item("scan-1", "4006381333931")  # only the held order needs SKU-1 now: refused, kept
    assert held_only.code == "not_allowed" and "on hold" in held_only.message


async def test_a_picker_who_logs_out_mid_task_is_reported_and_cleared_when_work_goes_on(h: Harness) -> None:
    """Found on a running floor: p1 confirmed line 1 of 2 and logged out (a PDA gone flat). The started task stays
    theirs, and nothing watched it: the order waited silently. Now the supervisor is told (level 2) when they
    are not back within the escalation period, and the alarm clears when the task is worked on again."""
    task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
    assert (await h.item("scan-1", "4006381333931")).ok  # line 1 done: started
    seq = h.seq
    assert (await h.scan("scan-1", "BADGE-P1")).ok  # the same badge again: logged out
    await h.tick()
    for _ in range(31):
        h.clock.advance(60)
        await h.tick()
    escalated = [d for t, _, d in h.events(seq) if t == "task.escalated"]
    assert escalated == [{"task_id": task, "level": 2, "reason": escalated[0]["reason"]}]
    assert "logged out with the task started" in escalated[0]["reason"]
    assert f"escalation:{task}" in h.floor.alarms
    assert h.floor.tasks[task].operator_id == "p1" and h.floor.tasks[task].state == "started"
    seq = h.seq
    assert (await h.scan("scan-1", "BADGE-P1")).ok  # back
    assert (await h.item("scan-1", "05012345678900")).ok  # line 2: the task is complete
    assert f"escalation:{task}" not in h.floor.alarms
    assert "alarm.cleared" in h.types(seq)


async def test_refusals_for_a_held_order_do_not_count_against_the_picker(h: Harness) -> None:
    """Found on a running floor: the hub held the order a picker had started; their scans were refused "on hold",
    each counted as the picker's mistake, and their breaker opened although they did nothing wrong."""
    await h.picker_with_task(lines=[(1, "SKU-1", 2), (2, "SKU-2", 1)])
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.cmd("dispatch.hold", {"scope": "order", "id": "O-1", "reason": "customer call"}))["ok"]
    for _ in range(3):
        refused = await h.item("scan-1", "4006381333931")
        assert refused.code == "not_allowed" and "on hold" in refused.message
    wrong = await h.scan("scan-1", "A-09-09")  # a real mistake still counts
    assert not wrong.ok
    interval = h.floor.dispatch.settings.index_interval_s
    h.clock.advance(interval + 1)
    await h.tick()
    stats = h.floor.dispatch.picker_stats("p1")
    assert stats is not None and stats.rejects == 1, stats


async def test_the_pda_lists_the_most_urgent_order_first(h: Harness) -> None:
    """Found on a peak day: the PDA listed lines by task id, so an order due in 20 minutes stood last of the
    picker's lines (dispatch had given it out first)."""
    from datetime import timedelta

    from gateway.clock import rfc3339
    from gateway.domain.picking import picker_view

    await h.scan("scan-1", "BADGE-P1")
    await h.order("A-LATER", [(1, "SKU-2", 1)])
    await h.order("Z-URGENT", [(1, "SKU-1", 1)], cutoff_at=rfc3339(h.clock.now() + timedelta(minutes=20)))
    await h.tick()
    view = picker_view(h.floor, "p1")["lines"]
    assert [x["order_id"] for x in view] == ["Z-URGENT", "A-LATER"]
    assert all(x["lit"] for x in view)


async def test_totes_go_to_the_pickers_orders_one_each_in_the_order_shown(h: Harness) -> None:
    """A peak run: every tote a picker scanned went to the first task assigned to them, whatever the PDA showed
    (one task was bound 24 times), so units went into a tote bound to another order and packing opened the
    wrong order by it. A cart of totes now goes one per task, in the order on screen; a second tote for an
    order needs an item of it in hand."""
    await h.scan("scan-1", "BADGE-P1")
    for n, sku in ((1, "SKU-1"), (2, "SKU-2"), (3, "SKU-LOT")):
        await h.order(f"O-{n}", [(1, sku, 2)])
    await h.tick()
    tasks = {t.order_id: t for t in h.floor.tasks.values() if t.operator_id == "p1"}
    assert set(tasks) == {"O-1", "O-2", "O-3"}
    from gateway.domain.picking import picker_view

    shown = list(dict.fromkeys(line["order_id"] for line in picker_view(h.floor, "p1")["lines"]))
    for tote in ("TOTE-1", "TOTE-2", "TOTE-3"):
        assert (await h.scan("scan-1", tote)).ok
    assert {tasks[o].tote: o for o in shown} == {"TOTE-1": shown[0], "TOTE-2": shown[1], "TOTE-3": shown[2]}
    assert (await h.scan("scan-1", "TOTE-2")).ok  # scanned again: still on its order, nothing rebound
    assert h.floor.totes == {"TOTE-1": shown[0], "TOTE-2": shown[1], "TOTE-3": shown[2]}
    full = await h.scan("scan-1", "TOTE-4")  # every order has one: which is it for?
    assert full.code == "not_allowed" and "scan an item of the order first" in full.message, full
    assert (await h.item("scan-1", "4006381333931")).ok  # SKU-1 (O-1) in hand: its second tote
    assert (await h.scan("scan-1", "TOTE-4")).ok
    assert h.floor.totes["TOTE-4"] == "O-1" and h.floor.orders["O-1"].totes[-1] == "TOTE-4"


async def test_key_confirm_after_a_pack_scan_does_not_name_the_pack_gtin_for_single_units(h: Harness) -> None:
    # Line of 8 units: a pack of 6 scanned, then the PTL key confirms the 8 shown (the 2 singles taken by hand).
    task = await h.picker_with_task(lines=[(1, "SKU-2", 8)])
    assert (await h.item("scan-1", "15012345678907")).ok  # a pack of 6
    seq = h.seq
    assert (await h.key(task, 1, "confirm", qty=2)).ok
    confirmed = [(d["gtin"], d["qty"]) for t, _, d in h.events(seq) if t == "pick.line_confirmed"]
    # one event naming the pack's GTIN with qty 8 read as 8 packs: the two by the key are single units
    assert confirmed == [("15012345678907", 6), ("05012345678900", 2)], confirmed
