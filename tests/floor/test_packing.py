"""Pick-and-pack double verification: what was picked is scanned again; weight; reviews; SSCCs."""

from __future__ import annotations

from biip.sscc import Sscc

from tests.floor.conftest import Harness, gs1

LOT_GTIN = "09506000134352"


async def picked(h: Harness, order_id: str = "O-1", tote: str | None = None) -> None:
    """O-1: 2 x SKU-1, 1 x SKU-LOT (lot L1), picked by p1."""
    await h.picker_with_task(order_id, [(1, "SKU-1", 2), (2, "SKU-LOT", 1)])
    if tote:
        assert (await h.scan("scan-1", tote)).ok
    await h.item("scan-1", "4006381333931")
    await h.item("scan-1", "4006381333931")
    await h.item("scan-1", LOT_GTIN, lot="L1", expiry="271231")
    assert h.floor.orders[order_id].state == "picked"


async def test_verify_every_item_then_packed_with_an_sscc(h: Harness) -> None:
    await picked(h)
    assert (await h.scan("pack-scan", "BADGE-K1", station="pack-1")).ok
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    assert h.floor.orders["O-1"].state == "packing"
    assert (await h.item("pack-scan", "05012345678900", station="pack-1")).code == "not_expected"
    assert (await h.item("pack-scan", LOT_GTIN, station="pack-1", lot="L2", expiry="271231")).code == "wrong_lot"
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).code == "over_scan"
    assert (await h.scan("pack-scan", "BOX-S", station="pack-1")).ok
    seq = h.seq
    done = await h.item("pack-scan", LOT_GTIN, station="pack-1", lot="L1", expiry="271231")
    assert done.ok and h.floor.orders["O-1"].state == "packed"
    assert h.types(seq) == ["pack.verified", "order.state_changed"]
    v = h.events(seq)[0][2]
    assert v["station"] == "pack-1" and v["operator_id"] == "k1" and v["carton"] == "BOX-S"
    assert v["weight_g"] is None and v["expected_g"] == 2 * 120 + 300 + 100
    assert sorted((i["gtin"], i.get("lot"), i["qty"]) for i in v["items"]) == [
        ("04006381333931", None, 2), ("09506000134352", "L1", 1)]
    sscc = Sscc.parse(v["sscc"])  # a valid SSCC: check digit and all
    assert v["sscc"][1:8] == "0614141"  # the company prefix (GS1's demo prefix here)
    assert sscc.value == v["sscc"]
    assert h.floor.stations["pack-1"].order_id is None
    label = [s for s in h.signals if isinstance(s, tuple) and s[0] == "label"]
    assert label and label[-1][2]["sscc"] == v["sscc"]


async def test_order_not_ready_and_scans_before_an_order(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).code == "no_task"
    refused = await h.scan("pack-scan", "O-1", station="pack-1")
    assert refused.code == "order_not_ready" and "received" in refused.message
    assert (await h.scan("pack-scan", "BADGE-P1", station="pack-1")).code == "not_allowed"  # a picker cannot pack


async def test_pack_by_tote(h: Harness) -> None:
    await picked(h, tote="TOTE-7")
    assert h.floor.orders["O-1"].tote == "TOTE-7"
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    out = await h.scan("pack-scan", "TOTE-7", station="pack-1")
    assert out.ok and h.floor.stations["pack-1"].order_id == "O-1"


async def test_an_order_picked_in_two_zones_keeps_every_tote_until_packed(h: Harness) -> None:
    """Each zone's task binds its own tote: both stay the order's (also across a restart), either one finds
    the order at packing, and packing frees both."""
    from simulators.floor.world import make_gtin

    gtin_b = make_gtin(950)
    r = await h.cmd("masterdata.sync", {
        "mode": "merge", "sync_id": "zone-b", "part": 1, "parts": 1,
        "skus": [{"sku": "SKU-B", "gtins": [gtin_b], "unit_weight_g": 80.0}],
        "locations": [{"code": "B-01-01", "zone": "zone-b", "sku": "SKU-B", "light": {"bus": "bus-a", "unit": 9}}],
        "operators": [{"operator_id": "p3", "name": "Cy", "badge": "BADGE-P3", "roles": ["picker"],
                       "zones": ["zone-b"]}]})
    assert r["ok"] and not r["rejected"], r
    await h.scan("scan-1", "BADGE-P1")
    await h.scan("scan-3", "BADGE-P3")
    await h.order("O-1", [(1, "SKU-1", 1), (2, "SKU-B", 1)])
    await h.tick()
    assert {t.task_id: t.operator_id for t in h.floor.tasks_of("O-1")} == {"O-1~zone-a": "p1", "O-1~zone-b": "p3"}
    assert (await h.scan("scan-1", "TOTE-A")).ok
    assert (await h.scan("scan-3", "TOTE-B")).ok
    assert (await h.item("scan-1", "4006381333931")).ok
    assert (await h.item("scan-3", gtin_b)).ok
    assert h.floor.orders["O-1"].state == "picked"
    assert h.floor.totes == {"TOTE-A": "O-1", "TOTE-B": "O-1"}
    await h.service.reload()
    assert h.floor.totes == {"TOTE-A": "O-1", "TOTE-B": "O-1"}
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.scan("pack-scan", "TOTE-A", station="pack-1")).ok  # the first zone's tote
    assert h.floor.stations["pack-1"].order_id == "O-1" and h.floor.stations["pack-1"].tote == "TOTE-A"
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    seq = h.seq
    assert (await h.item("pack-scan", gtin_b, station="pack-1")).ok
    assert h.floor.orders["O-1"].state == "packed"
    assert [d["tote"] for t, _, d in h.events(seq) if t == "pack.verified"] == ["TOTE-A"]
    assert h.floor.totes == {}
    # Both totes go on the next orders' tasks.
    await h.order("O-2", [(1, "SKU-1", 1), (2, "SKU-B", 1)])
    await h.tick()
    assert (await h.scan("scan-1", "TOTE-A")).ok
    assert (await h.scan("scan-3", "TOTE-B")).ok
    await h.service.reload()
    assert h.floor.totes == {"TOTE-A": "O-2", "TOTE-B": "O-2"}


async def test_weight_deviation_is_checked_before_rounding(h: Harness) -> None:
    """15.04% is over a 15% tolerance although it rounds to 15.0; the event shows it rounded away from the
    tolerance so that it never reads as a pass. Exactly 15% passes, float noise and all."""
    from simulators.floor.world import make_gtin

    gtin_w = make_gtin(951)
    r = await h.cmd("masterdata.sync", {
        "mode": "merge", "sync_id": "light", "part": 1, "parts": 1,
        "skus": [{"sku": "SKU-W", "gtins": [gtin_w], "unit_weight_g": 22.0}],
        "locations": [{"code": "A-02-01", "zone": "zone-a", "sku": "SKU-W", "light": {"bus": "bus-a", "unit": 10}}]})
    assert r["ok"] and not r["rejected"], r
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])  # 120 g
    await h.item("scan-1", "4006381333931")
    await h.picker_with_task("O-2", [(1, "SKU-W", 1)])  # 22 g
    await h.item("scan-1", gtin_w)
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)
    await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)
    seq = h.seq
    over = await h.weigh("pack-1", 138.05)  # +15.04%
    assert not over.ok and h.floor.orders["O-1"].state == "on_hold"
    assert h.types(seq) == ["pack.review_required", "order.state_changed"]
    assert h.events(seq)[0][2]["deviation_pct"] == 15.1 and "+15.1%" in over.message
    await h.scan("pack-scan", "O-2", station="pack-1", has_scale=True)
    await h.scan("pack-scan", gtin_w, "pack-1", has_scale=True)
    exact = await h.weigh("pack-1", 25.3)  # +15% exactly, though 15.000000000000002 in floats
    assert exact.ok and h.floor.orders["O-2"].state == "packed"


async def test_weight_within_tolerance_and_review_when_not(h: Harness) -> None:
    await picked(h, "O-1")
    await h.picker_with_task("O-2", [(1, "SKU-1", 1)])
    await h.item("scan-1", "4006381333931")
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)
    for gtin, gs in (("4006381333931", {}), ("4006381333931", {}), (LOT_GTIN, {"lot": "L1", "expiry": "271231"})):
        if gs:
            out = await h.scan("pack-scan", gs1(gtin, **gs), "pack-1", "]C1", has_scale=True)
        else:
            out = await h.scan("pack-scan", gtin, "pack-1", has_scale=True)
        assert out.ok
    assert out.detail.get("weighing") and h.floor.stations["pack-1"].awaiting_weight
    assert any(s == ("weigh", "pack-1", "O-1") for s in h.signals)
    ok = await h.weigh("pack-1", 560.0)  # expected 540 g: +3.7%
    assert ok.ok and h.floor.orders["O-1"].state == "packed"
    verified = [d for t, _, d in h.events() if t == "pack.verified"][-1]
    assert verified["weight_g"] == 560.0 and verified["expected_g"] == 540.0
    # O-2 weighs far too much: a review, and the order waits on hold.
    await h.scan("pack-scan", "O-2", station="pack-1", has_scale=True)
    await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)
    seq = h.seq
    heavy = await h.weigh("pack-1", 200.0)  # expected 120 g
    assert not heavy.ok and "+66.7%" in heavy.message
    assert h.types(seq) == ["pack.review_required", "order.state_changed"]
    assert h.events(seq)[0][2] == {"station": "pack-1", "reason": "weight_deviation", "expected_g": 120.0,
                                   "actual_g": 200.0, "deviation_pct": 66.7}
    assert h.floor.orders["O-2"].state == "on_hold" and h.floor.stations["pack-1"].order_id is None
    release = await h.cmd("dispatch.release", {"scope": "order", "id": "O-2"})
    assert h.floor.orders["O-2"].state == "on_hold", release  # only pack.review leaves a review
    seq = h.seq
    r = await h.cmd("pack.review", {"order_id": "O-2", "decision": "approve", "operator_id": "s1"})
    assert r["ok"] and r["state"] == "packed"
    assert h.types(seq) == ["pack.review_resolved", "pack.verified", "order.state_changed"]
    assert h.events(seq)[1][2]["weight_g"] == 200.0


async def in_review(h: Harness) -> None:
    """O-1 (1 x SKU-1, 120 g) packed by k1 at pack-1, weighed at 50 g: on hold for a review."""
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])
    await h.item("scan-1", "4006381333931")
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)
    await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)
    await h.weigh("pack-1", 50.0)
    assert h.floor.orders["O-1"].state == "on_hold"


async def test_repack_sends_the_order_back_to_the_station(h: Harness) -> None:
    await in_review(h)
    r = await h.cmd("pack.review", {"order_id": "O-1", "decision": "repack", "operator_id": "s1"})
    assert r["ok"] and h.floor.orders["O-1"].state == "packing"
    again = await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)
    assert again.ok and h.floor.stations["pack-1"].scanned == {}
    await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)
    assert (await h.weigh("pack-1", 118.0)).ok and h.floor.orders["O-1"].state == "packed"


async def test_the_packer_cannot_approve_their_own_review(h: Harness) -> None:
    """Four eyes: the parcel went to review because it may be wrong; k1 packed it, so k1 cannot say it is right
    (a supervisor badged in at packing could approve their own). Another person can; k1 can send it back."""
    await in_review(h)
    seq = h.seq
    own = await h.cmd("pack.review", {"order_id": "O-1", "decision": "approve", "operator_id": "k1"})
    assert not own["ok"] and own["error"]["code"] == "conflict" and "k1 packed order O-1" in own["error"]["message"]
    assert h.types(seq) == [] and h.floor.orders["O-1"].state == "on_hold"
    other = await h.cmd("pack.review", {"order_id": "O-1", "decision": "approve", "operator_id": "s1"})
    assert other["ok"] and h.floor.orders["O-1"].state == "packed"


async def test_ssccs_never_repeat_across_a_restart(h: Harness) -> None:
    ssccs = []
    for k in range(3):
        oid = f"O-{k}"
        await h.picker_with_task(oid, [(1, "SKU-1", 1)])
        await h.item("scan-1", "4006381333931")
        if k == 0:
            await h.scan("pack-scan", "BADGE-K1", station="pack-1")
        await h.scan("pack-scan", oid, station="pack-1")
        await h.scan("pack-scan", "4006381333931", station="pack-1")
        if k == 1:
            await h.service.reload()
        ssccs.append([d for t, _, d in h.events() if t == "pack.verified"][-1]["sscc"])
    assert len(set(ssccs)) == 3
    serials = [int(s[8:17]) for s in ssccs]
    assert serials == [1, 2, 3]


async def test_finished_orders_leave_memory_but_their_serials_stay(h: Harness) -> None:
    await h.picker_with_task("O-1", [(1, "SKU-SER", 1)])
    assert (await h.item("scan-1", "04012345000016", serial="S-77")).ok
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1")
    assert (await h.item("pack-scan", "04012345000016", station="pack-1", serial="S-77")).ok
    assert h.floor.orders["O-1"].state == "packed"
    assert await h.service.forget_finished_orders(h.seq) == 0  # not older than the retention yet
    h.clock.advance(73 * 3600)
    assert await h.service.forget_finished_orders(h.seq - 1) == 0  # the hub does not hold its last event yet
    assert await h.service.forget_finished_orders(h.seq) == 1
    assert "O-1" not in h.floor.orders and not h.floor.tasks_of("O-1")
    await h.service.reload()
    assert "O-1" not in h.floor.orders
    await h.picker_with_task("O-2", [(1, "SKU-SER", 1)])
    again = await h.item("scan-1", "04012345000016", serial="S-77")
    assert again.code == "serial_repeated"


async def test_a_unit_missing_from_the_tote_sends_the_order_to_a_review_not_to_wait(h: Harness) -> None:
    """The gateway recorded more than the tote holds (a unit dropped on the way, a picker's slip): the packer scans
    the missing code, the order leaves `packing` for a review (SPEC's exception path, as for a weight deviation)
    with the units still wanted, and the station is free. Approve ships what was verified (not weighed)."""
    from gateway.contract import ReviewRequiredData

    await picked(h)  # 2 x SKU-1, 1 x SKU-LOT (L1)
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.scan("pack-scan", "MISSING", station="pack-1")).code == "no_task"
    assert (await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)).ok
    assert (await h.scan("pack-scan", "BOX-S", station="pack-1", has_scale=True)).ok
    assert (await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)).ok
    assert (await h.scan("pack-scan", gs1(LOT_GTIN, lot="L1", expiry="271231"), "pack-1", "]C1", has_scale=True)).ok
    seq = h.seq
    out = await h.scan("pack-scan", "MISSING", station="pack-1", has_scale=True)
    assert out.ok and out.detail["missing"] == 1 and out.detail["review"] is True, out
    assert h.types(seq) == ["pack.review_required", "order.state_changed"]
    review = h.events(seq)[0][2]
    assert review == {"station": "pack-1", "reason": "items_missing", "expected_g": 120 + 100 + 300.0,
                      "missing": [{"sku": "SKU-1", "gtin": "04006381333931", "qty": 1}]}
    ReviewRequiredData.model_validate(review)
    assert h.events(seq)[1][2] == {"from": "packing", "to": "on_hold"}
    assert h.floor.stations["pack-1"].order_id is None
    waits = await h.scan("pack-scan", "O-1", station="pack-1")
    assert waits.code == "not_allowed" and "waits for its weight review" in waits.message  # SPEC §1: on hold
    seq = h.seq
    r = await h.cmd("pack.review", {"order_id": "O-1", "decision": "approve", "operator_id": "s1"})
    assert r["ok"] and r["state"] == "packed", r
    assert h.types(seq) == ["pack.review_resolved", "pack.verified", "order.state_changed"]
    verified = h.events(seq)[1][2]
    assert verified["weight_g"] is None and verified["expected_g"] == 520.0 and verified["carton"] == "BOX-S"
    assert sorted((i["gtin"], i.get("lot"), i["qty"]) for i in verified["items"]) == [
        ("04006381333931", None, 1), ("09506000134352", "L1", 1)]


async def test_missing_then_repack_verifies_again_and_nothing_verified_cannot_be_approved(h: Harness) -> None:
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])
    await h.item("scan-1", "4006381333931")
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1")
    assert (await h.scan("pack-scan", "MISSING", station="pack-1")).ok  # the tote came empty
    refused = await h.cmd("pack.review", {"order_id": "O-1", "decision": "approve", "operator_id": "s1"})
    assert not refused["ok"] and refused["error"]["code"] == "conflict", refused  # an empty parcel ships nothing
    assert h.floor.orders["O-1"].state == "on_hold"
    r = await h.cmd("pack.review", {"order_id": "O-1", "decision": "repack", "operator_id": "s1"})
    assert r["ok"] and h.floor.orders["O-1"].state == "packing"  # the unit was found
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    assert h.floor.stations["pack-1"].scanned == {}
    assert (await h.scan("pack-scan", "4006381333931", station="pack-1")).ok
    assert h.floor.orders["O-1"].state == "packed"


async def test_the_missing_code_is_refused_when_nothing_is_missing(h: Harness) -> None:
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])
    await h.item("scan-1", "4006381333931")
    assert (await h.scan("scan-1", "MISSING")).code == "unknown_barcode"  # a packing station's code only
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1", has_scale=True)
    await h.scan("pack-scan", "4006381333931", "pack-1", has_scale=True)
    assert h.floor.stations["pack-1"].awaiting_weight
    seq = h.seq
    refused = await h.scan("pack-scan", "MISSING", station="pack-1", has_scale=True)
    assert refused.code == "not_allowed" and "nothing is missing" in refused.message
    assert h.types(seq) == [] and h.floor.orders["O-1"].state == "packing"


async def test_an_order_held_at_the_bench_is_refused_there_and_packs_after_its_release(h: Harness) -> None:
    """SPEC §1: while an order is on_hold, scans for it are refused (`not_allowed`) and change nothing. At the
    packing bench the last item ran into the hold as a `conflict` after the unit was counted: the station was
    stuck with the order (every scan answered "too many" or "nothing is missing"), and blocked for others."""
    await picked(h)
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.hold("order", "O-1"))["changed"]
    seq = h.seq
    held = await h.item("pack-scan", LOT_GTIN, station="pack-1", lot="L1", expiry="271231")
    assert (held.code, held.ok) == ("not_allowed", False) and "hold" in held.message
    assert h.types(seq, skip=()) == ["scan.rejected"]
    assert sum(h.floor.stations["pack-1"].scanned.values()) == 2  # the held scan counted nothing
    assert (await h.hold("order", "O-1", on=False))["changed"]
    done = await h.item("pack-scan", LOT_GTIN, station="pack-1", lot="L1", expiry="271231")
    assert done.ok and h.floor.orders["O-1"].state == "packed"
    assert h.floor.stations["pack-1"].order_id is None  # free for the next order


async def test_an_order_cancelled_at_the_bench_frees_the_station(h: Harness) -> None:
    await picked(h)
    await picked(h, "O-2")
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.cmd("order.cancel", {"order_id": "O-1", "reason": "customer"}))["ok"]
    assert h.floor.stations["pack-1"].order_id is None
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).code == "no_task"
    assert (await h.scan("pack-scan", "O-2", station="pack-1")).ok  # the next order, not "finish O-1 first"


async def test_a_held_order_is_set_aside_by_the_next_order_and_verified_again_after_release(h: Harness) -> None:
    await picked(h)
    await picked(h, "O-2")
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    assert (await h.item("pack-scan", "4006381333931", station="pack-1")).ok
    assert (await h.hold("order", "O-1"))["changed"]
    again = await h.scan("pack-scan", "O-1", station="pack-1")
    assert again.code == "not_allowed" and "hold" in again.message
    assert (await h.scan("pack-scan", "O-2", station="pack-1")).ok  # sets O-1 aside
    assert h.floor.stations["pack-1"].order_id == "O-2"
    assert (await h.hold("order", "O-1", on=False))["changed"]
    assert h.floor.orders["O-1"].state == "packing"
    await h.scan("pack-scan-2", "BADGE-K1", station="pack-2")
    assert (await h.scan("pack-scan-2", "O-1", station="pack-2")).ok  # from scratch, at another bench
    assert sum(h.floor.stations["pack-2"].scanned.values()) == 0


async def test_packing_refusals_say_what_happened(h: Harness) -> None:
    await picked(h)
    await h.scan("pack-scan", "BADGE-K1", station="pack-1")
    await h.scan("pack-scan", "O-1", station="pack-1")
    await h.item("pack-scan", "4006381333931", station="pack-1")
    await h.item("pack-scan", "4006381333931", station="pack-1")
    extra = await h.item("pack-scan", "4006381333931", station="pack-1")
    assert extra.code == "over_scan" and extra.message == "one too many: SKU-1 is complete; put the unit aside"
    await h.item("pack-scan", LOT_GTIN, station="pack-1", lot="L1", expiry="271231")
    assert h.floor.orders["O-1"].state == "packed"
    again = await h.scan("pack-scan", "O-1", station="pack-1")
    assert (again.code, again.message) == ("order_not_ready", "order O-1 is already packed")


async def test_an_order_on_hold_is_refused_at_packing_not_allowed(h: Harness) -> None:
    """SPEC §1: while an order is `on_hold`, scans for it are refused `not_allowed` (by order id or tote). It was
    `order_not_ready` ("on hold, not picked"), unlike the same order already at the station."""
    await picked(h, tote="TOTE-H1")
    await h.hold("order", "O-1")
    assert (await h.scan("pack-scan", "BADGE-K1", station="pack-1")).ok
    for code in ("O-1", "TOTE-H1"):
        out = await h.scan("pack-scan", code, station="pack-1")
        assert out.code == "not_allowed" and "on hold" in out.message, out


async def test_a_line_undone_while_its_order_is_held_is_picked_again_before_packing(h: Harness) -> None:
    """The supervisor held a picked order, undid a line, and released it: it went back to `picked` with the line
    open, and the station packed and shipped it without that line, neither picked nor short (SPEC §1: an undo
    on a completed task returns the order to `picking`)."""
    await picked(h)
    task = "O-1~zone-a"
    await h.hold("order", "O-1")
    assert (await h.undo(task, 1, by="s1")).ok
    await h.hold("order", "O-1", on=False)
    assert h.floor.orders["O-1"].state == "picking"
    assert (await h.scan("pack-scan", "BADGE-K1", station="pack-1")).ok
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).code == "order_not_ready"


async def test_missing_units_picked_as_a_pack_are_named_by_the_unit_gtin(h: Harness) -> None:
    """`missing` counts units: beside the 6-pack's GTIN, 3 read as 3 packs (18 units)."""
    await h.picker_with_task("O-1", [(1, "SKU-2", 6)])
    assert (await h.item("scan-1", "15012345678907")).ok  # one pack of 6
    assert h.floor.orders["O-1"].state == "picked"
    assert (await h.scan("pack-scan", "BADGE-K1", station="pack-1")).ok
    assert (await h.scan("pack-scan", "O-1", station="pack-1")).ok
    for _ in range(3):
        assert (await h.item("pack-scan", "05012345678900", station="pack-1")).ok
    seq = h.seq
    assert (await h.scan("pack-scan", "MISSING", station="pack-1")).ok
    review = next(d for t, _, d in h.events(seq) if t == "pack.review_required")
    assert review["missing"] == [{"sku": "SKU-2", "gtin": "05012345678900", "qty": 3}], review
