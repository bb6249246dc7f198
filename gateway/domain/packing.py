"""Pick-and-pack double verification (SPEC §6): the packer scans the order (or its tote) at a station,
then every item again. The station expects exactly what was picked (GTIN's SKU, lot, serial, quantity):
an item not in the order, one too many, or a different lot is refused and nothing is counted. When all
is there, the parcel is weighed where the station has a scale (sum of unit weights + carton tare, within
`packing.weight_tolerance_pct`); a larger deviation holds the order for a review. Otherwise the parcel
gets its SSCC (serial from the journal, so it never repeats) and the order is `packed`.

What the gateway recorded as picked and what the tote holds can disagree (a unit dropped on the way, a picker's
slip): the station must never wait for a unit that is not there. The packer scans the station's missing code
(`packing.missing_code`) and the order leaves `packing` for a review, as a weight deviation does
(`pack.review_required`, reason `items_missing`, with the units still wanted): `on_hold` until `pack.review`
ships what was verified (approve -> `packed`) or sends it back to be verified again (repack -> `packing`).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from gateway.domain.barcode import Barcode
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import ON_HOLD, PACKED, PACKING, PICKED, SHORT_PICKED, At, Order, Session, Station
from gateway.domain.orders import transition
from gateway.domain.outcome import Outcome, Refused
from gateway.domain.sscc import SsccError, SsccSeries

SEP = "\x1f"
DEVIATION_SLACK_PCT = 1e-9  # float noise only: far below any scale's resolution
EMPTY_SCALE_G = 1.0  # a reading below this is an empty scale


def item_key(floor: Floor, sku: str, lot: str | None, serial: str | None) -> str:
    """A unit as the station counts it: by SKU, and by lot and serial only where master data tracks them. A
    SKU that tracks neither was refused when picked by its plain EAN and packed by a GS1 code carrying a lot
    (or the other way round), though both are the same unit of it."""
    item = floor.md.skus.get(sku)
    if item is not None and not item.lot_tracked:
        lot = None
    if item is not None and not item.serial_tracked:
        serial = None
    return f"{sku}{SEP}{lot or ''}{SEP}{serial or ''}"


def expected_items(floor: Floor, order: Order) -> dict[str, int]:
    """What was picked for the order, unit by unit, keyed by SKU, lot and serial (item_key)."""
    out: dict[str, int] = {}
    for line in order.lines:
        for p in line.picks:
            if p.serials:
                for s in p.serials:
                    k = item_key(floor, line.sku, p.lot, s)
                    out[k] = out.get(k, 0) + 1
                rest = p.qty - len(p.serials)
            else:
                rest = p.qty
            if rest > 0:
                k = item_key(floor, line.sku, p.lot, None)
                out[k] = out.get(k, 0) + rest
    return out


def remaining_items(floor: Floor, order: Order, station: Station,
                    exp: dict[str, int] | None = None) -> dict[str, int]:
    """Units still to scan; `exp`: expected_items, when the caller has it already."""
    exp = expected_items(floor, order) if exp is None else exp
    return {k: n - station.scanned.get(k, 0) for k, n in exp.items() if n - station.scanned.get(k, 0) > 0}


def expected_weight(floor: Floor, order: Order, carton: str | None) -> float:
    grams = 0.0
    for line in order.lines:
        sku = floor.md.skus.get(line.sku)
        if sku is not None and sku.unit_weight_g is not None:
            grams += sku.unit_weight_g * line.picked
    c = floor.md.cartons.get(carton) if carton else None
    return round(grams + (c.tare_g if c is not None else 0.0), 1)


def unweighed(floor: Floor, order: Order) -> list[str]:
    """Picked SKUs with no unit weight in master data: the parcel's expected weight is only a lower bound."""
    return sorted({line.sku for line in order.lines if line.picked > 0
                   and getattr(floor.md.skus.get(line.sku), "unit_weight_g", None) is None})


def _not_held(order: Order) -> None:
    """SPEC §1: while an order is on_hold, scans for it are refused and change nothing. Checked before a unit
    is counted: the last unit of a held order used to be counted and then meet the hold as a `conflict`."""
    if order.state == ON_HOLD:
        raise Refused("not_allowed", f"order {order.order_id} is on hold: wait for its release, or scan the next "
                                     "order to set this one aside")


def _station(floor: Floor, station_id: str) -> Station:
    st = floor.stations.get(station_id)
    if st is None:
        st = floor.stations[station_id] = Station(station_id)
    return st


def _holder(floor: Floor, order_id: str) -> str | None:
    for st in floor.stations.values():
        if st.order_id == order_id:
            return st.station
    return None


def _take_order(floor: Floor, change: Change, st: Station, session: Session, order: Order, at: At,
                tote: str | None = None) -> Outcome:
    """Start verifying `order` here; `tote` is the tote it was scanned by (an order picked in several zones
    has several), else the one it was bound to last. An order put on hold while it was here is set aside by
    the next order scanned: it is verified again from scratch, here or elsewhere, once it is released."""
    if st.order_id == order.order_id:
        _not_held(order)
        if st.awaiting_weight:
            change.signal(("weigh", st.station, order.order_id))
            return Outcome.good(f"weighing order {order.order_id} again", "order", order_id=order.order_id)
        return Outcome.good(f"order {order.order_id}: continue", "order", order_id=order.order_id)
    current = floor.orders.get(st.order_id) if st.order_id is not None else None
    set_aside = current is not None and current.state == ON_HOLD
    if st.order_id is not None and not set_aside:
        raise Refused("not_allowed", f"this station is verifying order {st.order_id}; finish it first")
    holder = _holder(floor, order.order_id)
    if holder is not None:
        raise Refused("not_allowed", f"order {order.order_id} is being verified at {holder}")
    if order.state == PACKED:
        raise Refused("order_not_ready", f"order {order.order_id} is already packed")  # SPEC §6's code
    if order.state == ON_HOLD:  # SPEC §1: scans for an order on hold are refused `not_allowed`
        why = "waits for its weight review" if "review" in order.holds else "is on hold"
        raise Refused("not_allowed", f"order {order.order_id} {why}: it cannot be packed until it is released",
                      picker_error=False)
    if order.state not in (PICKED, SHORT_PICKED, PACKING):  # checked before anything changes
        raise Refused("order_not_ready", f"order {order.order_id} is {order.state.replace('_', ' ')}, not picked")
    units = sum(expected_items(floor, order).values())
    if units == 0:
        # Every line short with nothing picked: the station took it and then waited for units that do not exist,
        # refusing every item, the missing code and the next order.
        raise Refused("order_not_ready", f"nothing was picked for order {order.order_id} (every line short): "
                                         "there is nothing to pack; tell a supervisor")
    if set_aside:
        _clear(change, st)
    if order.state != PACKING:
        transition(change, order, PACKING)
    st.order_id = order.order_id
    st.operator_id = session.operator_id
    st.tote = tote or order.tote
    st.carton = None
    st.scanned = {}
    st.items = []
    st.awaiting_weight = False
    change.save("station", st.station, st)
    return Outcome.good(f"order {order.order_id}: scan its {units} item(s)", "order", order_id=order.order_id,
                        units=units)


def pack_scan(floor: Floor, change: Change, session: Session, bc: Barcode, at: At, has_scale: bool) -> Outcome:
    st = _station(floor, session.station)
    if bc.kind in ("order", "tote"):
        order_id = bc.order_id or (floor.totes.get(str(bc.code)) if bc.code else None)
        order = floor.orders.get(order_id) if order_id else None
        if order is None:
            raise Refused("not_expected", f"tote {bc.code} is not bound to an open order")
        tote = str(bc.code) if bc.kind == "tote" and bc.code else None
        return _take_order(floor, change, st, session, order, at, tote)
    if st.order_id is None:
        raise Refused("no_task", "scan the order or its tote first")
    order = floor.orders[st.order_id]
    _not_held(order)
    if st.awaiting_weight:
        if bc.kind == "item":
            raise Refused("over_scan", "one too many: every item of the order is already scanned; put it aside "
                                       "and put the parcel on the scale")
        raise Refused("not_allowed", "everything is scanned: put the parcel on the scale")
    if bc.kind == "carton":
        st.carton = bc.code
        change.save("station", st.station, st)
        tare = floor.md.cartons[str(bc.code)].tare_g
        return Outcome.good(f"carton {bc.code} ({tare:g} g)", "carton", carton=bc.code)
    if bc.kind != "item":
        raise Refused("not_allowed", f"a {bc.kind} cannot be scanned while packing")
    if bc.sku is None:
        raise Refused("unknown_barcode", f"GTIN {bc.gtin} is not in master data")
    exp = expected_items(floor, order)
    skus = {k.split(SEP)[0] for k in exp}
    if bc.sku not in skus:
        raise Refused("not_expected", f"{bc.sku} is not in order {order.order_id}: put it aside")
    key = item_key(floor, bc.sku, bc.lot, bc.serial)
    if key not in exp:
        lots = {k.split(SEP)[1] for k in exp if k.startswith(bc.sku + SEP)}
        lot = key.split(SEP)[1]
        if lot not in lots:
            raise Refused("wrong_lot", f"lot {bc.lot or '(none)'} of {bc.sku} was not picked for this order "
                                       f"(picked: {', '.join(sorted(x or '(none)' for x in lots))})")
        raise Refused("not_expected", f"serial {bc.serial or '(none)'} of {bc.sku} was not picked for this order")
    _check_expiry(floor, order, bc, at)
    units = bc.units or 1
    left = exp[key] - st.scanned.get(key, 0)
    if units > left:
        if key.split(SEP)[2]:
            raise Refused("serial_repeated", f"serial {bc.serial} of {bc.sku} is already scanned for this parcel; "
                                             "put the unit aside")
        if units > 1 and left > 0:
            raise Refused("over_scan", f"that pack holds {units} units of {bc.sku} but only {left} more are "
                                       "wanted: scan the single units instead")
        raise Refused("over_scan", f"one too many: {bc.sku}" + (f" lot {bc.lot}" if bc.lot else "")
                      + " is complete; put the unit aside")
    if units == left and sum(remaining_items(floor, order, st, exp).values()) == units:
        _next_sscc(floor)  # the last unit (packs the parcel, or sends it to the scale): refused before counting
    st.scanned[key] = st.scanned.get(key, 0) + units
    st.items.append({k: v for k, v in (("gtin", bc.gtin), ("lot", bc.lot), ("serial", bc.serial),
                                       ("qty", units)) if v is not None})
    change.save("station", st.station, st)
    missing = sum(remaining_items(floor, order, st, exp).values())
    if missing:
        return Outcome.good(f"{bc.sku} ok, {missing} to go", "item", missing=missing)
    if has_scale:
        st.awaiting_weight = True
        change.save("station", st.station, st)
        change.signal(("weigh", st.station, order.order_id))
        return Outcome.good("all items match: weighing", "item", missing=0, weighing=True)
    return verify(floor, change, st, order, None, at)


def _items(station: Station) -> list[dict[str, Any]]:
    """pack.verified items: one entry per GTIN, lot and serial with its quantity."""
    agg: dict[tuple[Any, ...], int] = {}
    for it in station.items:
        k = (it.get("gtin"), it.get("lot"), it.get("serial"))
        agg[k] = agg.get(k, 0) + int(it["qty"])
    out = []
    for (gtin, lot, serial), qty in agg.items():
        d: dict[str, Any] = {"gtin": gtin, "qty": qty}
        if lot:
            d["lot"] = lot
        if serial:
            d["serial"] = serial
        out.append(d)
    return out


def _check_expiry(floor: Floor, order: Order, bc: Barcode, at: At) -> None:
    """The unit's expiry, where its code carries one and the SKU tracks it: not past (as at the shelf), and the
    date picked for its lot (a lot with another date on it is another lot, or a mislabelled unit)."""
    sku = floor.md.skus.get(bc.sku or "")
    if not bc.expiry or sku is None or not sku.expiry_tracked:
        return
    if date.fromisoformat(bc.expiry) < at.wall.date():
        raise Refused("expired", f"expired on {bc.expiry}: put the unit aside")
    picked = {p.expiry for line in order.lines if line.sku == bc.sku for p in line.picks
              if p.expiry and (p.lot or "") == (bc.lot or "")}
    if picked and bc.expiry not in picked:
        raise Refused("wrong_lot", f"{bc.sku}" + (f" lot {bc.lot}" if bc.lot else "") + f" expires {bc.expiry}; the "
                      f"unit picked expires {', '.join(sorted(picked))}: put it aside")


def _next_sscc(floor: Floor) -> tuple[int, str]:
    """The next SSCC's serial and code, not yet taken; refused when the range has none left."""
    r = floor.rules
    try:
        return SsccSeries(r.sscc_extension, r.sscc_company_prefix, r.sscc_serial_start,
                          r.sscc_serial_end).issue(floor.sscc_last or None)
    except SsccError as e:
        raise Refused("not_allowed", f"no SSCC can be issued: {e}; tell a supervisor") from None


def _issue_sscc(floor: Floor, change: Change) -> str:
    serial, sscc = _next_sscc(floor)
    floor.sscc_last = serial
    change.meta["sscc_last_serial"] = str(serial)
    return sscc


def verify(floor: Floor, change: Change, st: Station, order: Order, weight_g: float | None, at: At) -> Outcome:
    expected = expected_weight(floor, order, st.carton)
    parcel = {"station": st.station, "operator_id": st.operator_id or "", "tote": st.tote,
              "items": _items(st), "carton": st.carton, "expected_g": expected}
    return _packed(floor, change, order, parcel, weight_g, at, st)


def _packed(floor: Floor, change: Change, order: Order, parcel: dict[str, Any], weight_g: float | None, at: At,
            st: Station | None) -> Outcome:
    sscc = _issue_sscc(floor, change)
    data = {"station": parcel["station"], "operator_id": parcel["operator_id"], "tote": parcel.get("tote"),
            "items": parcel["items"], "carton": parcel.get("carton"), "weight_g": weight_g,
            "expected_g": parcel["expected_g"], "sscc": sscc}
    change.emit("pack.verified", {k: v for k, v in data.items() if v is not None or k == "weight_g"},
                order.order_id)
    transition(change, order, PACKED)
    floor.free_totes(order)
    if st is not None:
        _clear(change, st)
    change.signal(("label", parcel["station"], {"sscc": sscc, "order_id": order.order_id,
                                                 "carton": parcel.get("carton"), "weight_g": weight_g,
                                                 "items": sum(i["qty"] for i in parcel["items"])}))
    return Outcome.good(f"order {order.order_id} packed, SSCC {sscc}", "packed", sscc=sscc, order_id=order.order_id)


def free_station_of(floor: Floor, change: Change, order_id: str) -> None:
    """A cancelled order leaves the bench it was being verified at: its items are put aside (the supervisor's
    "return to stock" lists them), and the station takes the next order. Kept, it blocked the station."""
    holder = _holder(floor, order_id)
    if holder is not None:
        _clear(change, floor.stations[holder])
        # Said at the bench (the page's result, the scanner's bad beep): the page went on showing its last
        # green "ok, 2 to go" with no order, and the next item was answered "scan the order first".
        change.signal(("station_feedback", holder, False, f"order {order_id} was cancelled: put its items aside "
                       "for return to stock, then scan the next order", "cancel"))


def _clear(change: Change, st: Station) -> None:
    st.order_id = st.operator_id = st.tote = st.carton = None
    st.scanned = {}
    st.items = []
    st.awaiting_weight = False
    change.save("station", st.station, st)


def shown_deviation(raw: float, tol: float) -> float:
    """A failed deviation as events and people see it: one decimal, signed. Where plain rounding would land
    within the tolerance (15.04% shown as 15.0 against 15%), it is rounded away from zero instead, so the
    number never contradicts SPEC's "passes when abs <= tolerance" (the check itself uses `raw`)."""
    shown = round(raw, 1)
    if abs(shown) <= tol:
        shown = math.copysign(math.ceil(abs(raw) * 10.0) / 10.0, raw)
    return shown


def weight_awaited(floor: Floor, station_id: str, order_id: str | None) -> bool:
    """Is the station still waiting for a weight (for `order_id`, when given)? A reading asked for one order
    must not pack another: the first was cancelled while weighing and the next reached the scale, or the
    order was weighed twice and the second reading came after it was packed."""
    st = floor.stations.get(station_id)
    return (st is not None and st.order_id is not None and st.awaiting_weight
            and (order_id is None or st.order_id == order_id))


def pack_weight(floor: Floor, change: Change, station_id: str, grams: float, at: At) -> Outcome:
    st = floor.stations.get(station_id)
    if st is None or st.order_id is None or not st.awaiting_weight:
        raise Refused("not_allowed", f"station {station_id} is not waiting for a weight")
    order = floor.orders[st.order_id]
    _not_held(order)
    expected = expected_weight(floor, order, st.carton)
    tol = floor.rules.weight_tolerance_pct
    unknown = unweighed(floor, order)
    if unknown and grams < EMPTY_SCALE_G:
        # No unit weighs anything known here, so no lower bound but this: an empty scale packed the parcel.
        raise Refused("not_allowed", f"the scale reads {grams:g} g: put the parcel on the scale")
    raw = (grams - expected) / expected * 100.0 if expected > 0 else (math.inf if unknown else 0.0)
    if unknown and raw > 0:
        # Some units have no weight in master data: the expected weight is a lower bound, so only a parcel
        # lighter than it can be told wrong. Said plainly at the station; before, an order of such SKUs alone
        # (expected 0 g) passed any weight without a word, and a mixed one always went to review.
        out = verify(floor, change, st, order, grams, at)
        return Outcome(out.ok, out.code, f"{out.message}; weight checked only as a minimum: "
                                         f"{', '.join(unknown)} has no unit weight in master data", out.kind,
                       out.detail)
    # The measured deviation decides, never a rounded one (15.04% is not within 15%). The slack only absorbs
    # float noise: a parcel exactly on the tolerance (25.3 g for 22 g at 15%) computes as 15.000000000000002.
    if abs(raw) <= tol + DEVIATION_SLACK_PCT:
        return verify(floor, change, st, order, grams, at)
    deviation = shown_deviation(raw, tol)
    change.emit("pack.review_required", {"station": station_id, "reason": "weight_deviation", "expected_g": expected,
                                         "actual_g": grams, "deviation_pct": deviation}, order.order_id)
    order.review = {"station": station_id, "operator_id": st.operator_id or "", "tote": st.tote,
                    "items": _items(st), "carton": st.carton, "expected_g": expected, "actual_g": grams,
                    "deviation_pct": deviation}
    order.holds = ["review", *[h for h in order.holds if h != "review"]]
    order.holds.sort()
    transition(change, order, ON_HOLD)
    _clear(change, st)
    change.signal(("review", order.order_id))
    return Outcome(False, None, f"weight {grams:g} g is {deviation:+.1f}% off the expected {expected:g} g "
                                f"(tolerance {tol:g}%): the order waits for a supervisor's review", "weight",
                   {"order_id": order.order_id, "deviation_pct": deviation})


def _missing_items(floor: Floor, order: Order, left: dict[str, int]) -> list[dict[str, Any]]:
    """The units still wanted, one entry per SKU, lot and serial, with the unit GTIN the picker scanned for them
    (or the SKU's own): `qty` counts units, and a pack's GTIN beside it read as that many packs."""
    out = []
    for key, qty in sorted(left.items()):
        sku, lot, serial = key.split(SEP)
        item = floor.md.skus.get(sku)
        units = set(item.gtins) if item is not None else set()
        scanned = [p.gtin for line in order.lines if line.sku == sku for p in line.picks
                   if ((p.lot or "") == lot or not lot) and p.gtin]
        gtin = next((g for g in scanned if g in units), None) or (item.gtins[0] if item is not None and item.gtins
                                                                   else next(iter(scanned), None))
        out.append({k: v for k, v in (("sku", sku), ("gtin", gtin), ("lot", lot or None), ("serial", serial or None),
                                      ("qty", qty)) if v is not None})
    return out


def _scanned_weight(floor: Floor, st: Station) -> float:
    """The expected weight of what was verified at the station (unit weights + carton tare)."""
    grams = 0.0
    for key, n in st.scanned.items():
        sku = floor.md.skus.get(key.split(SEP)[0])
        if sku is not None and sku.unit_weight_g is not None:
            grams += sku.unit_weight_g * n
    c = floor.md.cartons.get(st.carton) if st.carton else None
    return round(grams + (c.tare_g if c is not None else 0.0), 1)


def report_missing(floor: Floor, change: Change, session: Session, at: At) -> Outcome:
    """The packer reports that the parcel cannot be completed: units the gateway recorded as picked are not in
    the tote. The order goes `on_hold` for a review (`pack.review_required`, reason `items_missing`) with what
    was verified so far, and the station is free for the next order."""
    st = floor.stations.get(session.station)
    if st is None or st.order_id is None:
        raise Refused("no_task", "no order at this station: scan the order or its tote first")
    order = floor.orders[st.order_id]
    _not_held(order)
    if st.awaiting_weight:
        raise Refused("not_allowed", "nothing is missing: every item is scanned; put the parcel on the scale")
    left = remaining_items(floor, order, st)
    if not left:
        raise Refused("not_allowed", "nothing is missing: every item is scanned")
    missing = _missing_items(floor, order, left)
    expected = _scanned_weight(floor, st)
    change.emit("pack.review_required", {"station": st.station, "reason": "items_missing", "expected_g": expected,
                                         "missing": missing}, order.order_id)
    order.review = {"station": st.station, "reason": "items_missing", "operator_id": st.operator_id or "",
                    "tote": st.tote, "items": _items(st), "carton": st.carton, "expected_g": expected,
                    "actual_g": None, "missing": missing}
    order.holds = sorted({"review", *order.holds})
    transition(change, order, ON_HOLD)
    _clear(change, st)
    change.signal(("review", order.order_id))
    units = sum(left.values())
    return Outcome.good(f"order {order.order_id}: {units} unit(s) reported missing; it waits on hold for a "
                        "supervisor (ship what was verified, or repack)", "missing", order_id=order.order_id,
                        missing=units, review=True)


def approve(floor: Floor, change: Change, order: Order, at: At) -> None:
    """A reviewed parcel approved as it is: verified with the weight that was measured (none for a parcel
    reported with units missing: it was not weighed), holding what was verified."""
    review = order.review or {}
    parcel = {k: review.get(k) for k in ("station", "operator_id", "tote", "items", "carton", "expected_g")}
    parcel["items"] = parcel["items"] or []
    parcel["expected_g"] = parcel["expected_g"] or 0.0
    parcel["station"] = parcel["station"] or ""
    parcel["operator_id"] = parcel["operator_id"] or ""
    order.review = None
    _packed(floor, change, order, parcel, review.get("actual_g"), at, None)


def abandon(floor: Floor, change: Change, station_id: str, by: str, at: At) -> Outcome:
    """The parcel cannot be completed here (an item is missing): the station is freed and the order put on
    hold for a supervisor; it comes back to `packing` when released and is verified again from scratch."""
    from gateway.domain.holds import hold

    st = floor.stations.get(station_id)
    if st is None or st.order_id is None:
        raise Refused("not_allowed", f"station {station_id} has no order")
    order_id = st.order_id
    _clear(change, st)
    hold(floor, change, "order", order_id, by, at.wall)
    floor.dispatch.set_hold("order", order_id, True)
    return Outcome.good(f"order {order_id} put on hold: something is missing", "abandon", order_id=order_id)


def station_view(floor: Floor, station_id: str) -> dict[str, Any]:
    """What the packing station page shows: the order, expected items ticking off, the state."""
    st = floor.stations.get(station_id) or Station(station_id)
    out: dict[str, Any] = {"station": station_id, "order_id": st.order_id, "tote": st.tote, "carton": st.carton,
                           "awaiting_weight": st.awaiting_weight, "items": []}
    if st.order_id is not None and st.order_id in floor.orders:
        order = floor.orders[st.order_id]
        for key, n in sorted(expected_items(floor, order).items()):
            sku, lot, serial = key.split(SEP)
            out["items"].append({"sku": sku, "lot": lot or None, "serial": serial or None, "expected": n,
                                 "scanned": st.scanned.get(key, 0)})
        out["expected_g"] = expected_weight(floor, order, st.carton)
        out["tolerance_pct"] = floor.rules.weight_tolerance_pct
    return out
