"""Light-guided picking with scan checks (SPEC §6).

A picker's item scan is matched to their open line of that SKU (the line whose location was scanned last,
if any, else the one the PDA lists first: not on hold, lit, most urgent, lowest line_no) and checked: the
right item, a lot where the SKU needs one, not expired and with enough shelf life left, a serial not picked
before, not more than the line wants. A scan counts its units (a pack GTIN its pack quantity); a line is
confirmed when its last unit is scanned, by the PTL key (the quantity shown, possibly adjusted down), or from
the PDA page, and every confirm needs an item scan first. A serial-tracked unit counts only by its own scan: a
serial is never copied onto units a key or the PDA would count. Units of different lots give one
`pick.line_confirmed` per lot, and of different GTINs (a pack and single units) one per GTIN. A confirm can
be undone within `picking.undo_window_s`.

Every refusal is raised (`Refused`) before anything changed.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from gateway.clock import rfc3339
from gateway.domain.barcode import Barcode
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.lights import lights_of, line_module, release
from gateway.domain.model import (
    ON_HOLD,
    PACKING,
    TASK_ASSIGNED,
    TASK_COMPLETED,
    TASK_STARTED,
    At,
    Light,
    Line,
    Order,
    Pick,
    Session,
    Sku,
    Task,
)
from gateway.domain.outcome import Outcome, Refused
from gateway.domain.tasks import complete_if_done, reopen, start


def _signal_lights(change: Change, lights: set[Light]) -> None:
    if lights:
        change.signal(("lights", frozenset(lights)))


def picker_tasks(floor: Floor, operator_id: str) -> list[Task]:
    tasks = [t for t in floor.tasks.values()
             if t.operator_id == operator_id and t.state in (TASK_ASSIGNED, TASK_STARTED)]
    return sorted(tasks, key=lambda t: (t.assigned_at or "", t.task_id))


def open_lines(floor: Floor, operator_id: str) -> list[tuple[Task, Order, Line]]:
    out = []
    for task in picker_tasks(floor, operator_id):
        order = floor.orders[task.order_id]
        for no in task.line_nos:
            line = order.line(no)
            if line is not None and not line.done:
                out.append((task, order, line))
    return out


def _in_hand(floor: Floor, operator_id: str) -> tuple[Task, Order, Line] | None:
    picker = floor.pickers.get(operator_id)
    if picker is None or picker.in_hand is None:
        return None
    task = floor.tasks.get(picker.in_hand[0])
    if task is None or task.operator_id != operator_id or task.state not in (TASK_ASSIGNED, TASK_STARTED):
        return None
    order = floor.orders[task.order_id]
    line = order.line(picker.in_hand[1])
    return (task, order, line) if line is not None and not line.done else None


def _is_lit(floor: Floor, task: Task, line: Line) -> bool:
    light = line_module(floor, line)
    slot = floor.modules.get(light) if light is not None else None
    return slot is not None and slot.owner == (task.task_id, line.line_no)


def _error_lights(floor: Floor, change: Change, operator_id: str, line: Line | None) -> None:
    """The wrong-scan signal: on the line in hand, or on every module showing this picker's jobs."""
    light = line_module(floor, line) if line is not None else None
    lights = {light} if light is not None else lights_of(floor, operator_id)
    if lights:
        change.signal(("light_error", frozenset(lights)))


def _check_item(floor: Floor, sku: Sku, bc: Barcode, line: Line, at: At) -> None:
    if sku.lot_tracked and not bc.lot:
        raise Refused("lot_required", f"{sku.sku} is lot-tracked: scan the GS1 code that carries the lot (10)")
    if sku.expiry_tracked:
        if not bc.expiry:
            raise Refused("lot_required", f"{sku.sku} needs its expiry date: scan the GS1 code with (17)")
        today: date = at.wall.date()
        expiry = date.fromisoformat(bc.expiry)
        if expiry < today:
            raise Refused("expired", f"expired on {bc.expiry}: take another unit")
        if sku.min_shelf_life_days and expiry < today + timedelta(days=sku.min_shelf_life_days):
            left = (expiry - today).days
            raise Refused("short_shelf_life", f"only {left} days of shelf life left (expires {bc.expiry}); "
                                              f"{sku.sku} needs {sku.min_shelf_life_days}: take a fresher unit")
    if sku.serial_tracked:
        if not bc.serial:
            raise Refused("not_allowed", f"{sku.sku} is serial-tracked: scan the code that carries the serial (21)")
        if (sku.sku, bc.serial) in floor.serials:
            raise Refused("serial_repeated", f"serial {bc.serial} has been picked already")
    units = bc.units or 1
    if units > line.remaining:
        raise Refused("over_scan", f"that is {units} unit(s) but line {line.line_no} needs only {line.remaining} "
                                   "more")


def _choose_line(floor: Floor, operator_id: str, bc: Barcode) -> tuple[Task, Order, Line]:
    """SPEC §6: the picker's open line of that SKU: the one in hand (its location scanned last, or its units
    scanned last) if it is of that SKU, else the one the PDA shows first. The line in hand does not lock out the
    others: every line is lit at once and pickers take them in any order, and a unit of another line on the
    list was refused `wrong_item` (counted against the picker's health, and `wrong_item` rather than
    `not_allowed` for a held order's line)."""
    hand = _in_hand(floor, operator_id)
    if hand is not None and hand[2].sku == bc.sku:
        return hand
    matches = [x for x in open_lines(floor, operator_id) if x[2].sku == bc.sku]
    if not matches:
        done = [(order, line) for task in picker_tasks(floor, operator_id)
                for order in [floor.orders[task.order_id]] for no in task.line_nos
                for line in [order.line(no)] if line is not None and line.done and line.sku == bc.sku]
        if done:  # one unit too many, not a wrong item: the picker put the right SKU in hand once too often
            order, line = done[0]
            raise Refused("over_scan", f"one too many: line {line.line_no} of order {order.order_id} ({line.sku}) "
                                       "is already complete; put the unit back")
        raise Refused("wrong_item", f"{bc.sku or bc.gtin} is not on your pick list")
    # SPEC §6: "the lowest line_no". With several orders (or a line whose light another picker's line holds),
    # the line the PDA shows first of that SKU (picker_view's order; none is in hand here): the picker puts
    # the unit in the tote of the order on screen, and the lowest line_no of all orders once credited it to
    # another order's tote. Within one order with equal lights it is the lowest line_no.
    return min(matches, key=lambda x: _shown_first(floor, x))


JUST_DONE_S = 600  # a unit of a line this picker completed this recently, with no task left: one too many


def _just_completed(floor: Floor, op: str, sku: str, at: At) -> tuple[Order, Line] | None:
    """The line of `sku` this picker completed last, within JUST_DONE_S. A double read of the last unit of
    their last task was answered "you have no pick task right now", not told the unit in hand is extra."""
    since = rfc3339(at.wall - timedelta(seconds=JUST_DONE_S))
    best: tuple[str, Order, Line] | None = None
    for task in floor.tasks.values():
        if task.operator_id != op or task.state != TASK_COMPLETED or (task.completed_at or "") < since:
            continue
        order = floor.orders.get(task.order_id)
        for no in task.line_nos:
            line = order.line(no) if order is not None else None
            if (order is not None and line is not None and line.sku == sku and line.done and not line.short
                    and (best is None or (line.done_at or "") > best[0])):
                best = (line.done_at or "", order, line)
    return (best[1], best[2]) if best is not None else None


def _shown_first(floor: Floor, x: tuple[Task, Order, Line]) -> tuple[bool, bool, tuple[float, ...], str, int]:
    """The order in which the PDA lists a picker's lines (after the one in hand), and so the line a scan that
    fits several of them goes to: a held order's last (a scan went to it, and was refused "put the item back",
    while another of the picker's orders needed that very SKU), then the lit ones, then by dispatch's urgency
    (cutoff first: by task id, an order due in 20 minutes stood last of a picker's eight), then task and line."""
    task, order, line = x
    return (order.state == ON_HOLD, not _is_lit(floor, task, line),
            floor.dispatch.urgency(task.task_id), task.task_id, line.line_no)


def add_units(floor: Floor, change: Change, task: Task, line: Line, item: dict[str, Any], units: int,
              via: str, at: At, location: str | None) -> None:
    """Count `units` of the item in hand on the line (one pick per lot)."""
    if units <= 0:
        return
    for p in line.picks:
        if (p.gtin, p.lot, p.expiry) == (item.get("gtin"), item.get("lot"), item.get("expiry")):
            p.qty += units
            if item.get("serial"):
                p.serials.append(item["serial"])
            break
    else:
        line.picks.append(Pick(units, task.operator_id or "", via, at.ts, item.get("gtin"), item.get("lot"),
                               item.get("expiry"), [item["serial"]] if item.get("serial") else [], location))
    if item.get("serial"):
        floor.serials.add((line.sku, item["serial"]))


def finish_line(floor: Floor, change: Change, task: Task, order: Order, line: Line, via: str, at: At,
                short_reason: str | None = None) -> None:
    """Close a line: one `pick.line_confirmed` per lot (SPEC §6) and per GTIN (a pack of 6 and 2 single units
    were one event naming the pack's GTIN with qty 8: read as 8 packs), then `pick.line_short` for what is
    missing, then the task and order consequences; its module is freed (done acknowledgement) for the next
    line."""
    missing = line.qty - line.picked
    operator = task.operator_id or ""
    by_lot: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in line.picks:
        key = (p.gtin, p.lot, p.expiry)
        d = by_lot.get(key)
        if d is None:
            d = by_lot[key] = {"task_id": task.task_id, "line_no": line.line_no, "sku": line.sku, "gtin": p.gtin,
                               "lot": p.lot, "expiry": p.expiry, "serials": [], "qty": 0,
                               "location": p.location or line.location, "operator_id": operator, "via": via}
        d["qty"] += p.qty
        d["serials"].extend(p.serials)
    for d in by_lot.values():
        change.emit("pick.line_confirmed", {k: v for k, v in d.items() if v is not None}, order.order_id)
    if missing > 0:
        line.short = missing
        change.emit("pick.line_short", {"task_id": task.task_id, "line_no": line.line_no,
                                        "qty_picked": line.picked, "qty_missing": missing, "operator_id": operator,
                                        "reason": short_reason or "adjusted"}, order.order_id)
        floor.dispatch.on_short(operator, at.mono)
    line.done = True
    line.done_at = at.ts
    line.done_mono = at.mono
    change.save("order", order.order_id, order)
    put_back_seen(floor, change, operator)
    picker = floor.pickers.get(operator)
    if picker is not None and picker.in_hand == (task.task_id, line.line_no):
        picker.in_hand = None
        change.save("picker", operator, picker)
    floor.dispatch.on_line_done(task.task_id, at.mono)
    light = line_module(floor, line)
    if light is not None:
        change.signal(("light_done", light))
    _signal_lights(change, release(floor, task.task_id, line.line_no, light))
    complete_if_done(floor, change, task, at)


def pick_scan(floor: Floor, change: Change, session: Session, bc: Barcode, at: At) -> Outcome:
    op = session.operator_id
    try:
        out = _pick_scan(floor, change, op, bc, at)
    except Refused as e:
        hand = _in_hand(floor, op)
        _error_lights(floor, change, op, hand[2] if hand else None)
        raise e
    put_back_seen(floor, change, op)
    return out


def put_back_seen(floor: Floor, change: Change, operator_id: str | None) -> None:
    """The picker works on (a scan taken, a line closed): the notice of units to put back has been read."""
    picker = floor.pickers.get(operator_id) if operator_id else None
    if picker is not None and picker.put_back:
        picker.put_back = []
        change.save("picker", picker.operator_id, picker)


def _pick_scan(floor: Floor, change: Change, op: str, bc: Barcode, at: At) -> Outcome:
    tasks = picker_tasks(floor, op)
    if bc.kind == "tote":
        return bind_tote(floor, change, op, str(bc.code), tasks, at)
    if bc.kind == "location":
        if floor.rules.location_scan == "off":
            return Outcome.good("location noted", "location")
        lines = [x for x in open_lines(floor, op) if x[2].location == bc.code]
        if not lines and not tasks:  # no shelf is right without a task: say what is missing
            raise Refused("no_task", "you have no pick task right now", picker_error=False)
        if not lines:
            raise Refused("wrong_location", f"none of your lines is at {bc.code}")
        # Several of the picker's lines at one shelf: the one the PDA shows first, as for an item scan.
        task, order, line = min(lines, key=lambda x: _shown_first(floor, x))
        if order.state == ON_HOLD:
            raise Refused("not_allowed", f"order {order.order_id} is on hold", picker_error=False)
        line.located = True
        picker = floor.picker(op)
        picker.in_hand = (task.task_id, line.line_no)
        change.save("picker", op, picker)
        change.save("order", order.order_id, order)
        start(floor, change, task, at)  # an accepted scan for the order: it is being picked (SPEC §1)
        return Outcome.good(f"{bc.code}: take {line.remaining} x {line.sku}", "location",
                            task_id=task.task_id, line_no=line.line_no)
    if bc.kind != "item":
        raise Refused("not_allowed", f"a {bc.kind} cannot be scanned while picking; scan an item, a location "
                                     "or a tote")
    if not tasks:
        just_done = _just_completed(floor, op, bc.sku, at) if bc.sku is not None else None
        if just_done is not None:
            order, line = just_done
            raise Refused("over_scan", f"one too many: line {line.line_no} of order {order.order_id} ({line.sku}) "
                                       "is already complete; put the unit back")
        raise Refused("no_task", "you have no pick task right now", picker_error=False)
    if bc.sku is None:
        raise Refused("unknown_barcode", f"GTIN {bc.gtin} is not in master data")
    task, order, line = _choose_line(floor, op, bc)
    if order.state == ON_HOLD:
        raise Refused("not_allowed", f"order {order.order_id} is on hold: put the item back", picker_error=False)
    if floor.rules.location_scan == "required" and not line.located:
        raise Refused("wrong_location", f"scan the location {line.location} first")
    sku = floor.md.skus[line.sku]
    _check_item(floor, sku, bc, line, at)
    start(floor, change, task, at)
    item = {k: v for k, v in (("gtin", bc.gtin), ("lot", bc.lot), ("expiry", bc.expiry),
                              ("serial", bc.serial)) if v is not None}
    units = bc.units or 1
    line.item = item
    add_units(floor, change, task, line, item, units, "scan", at, line.location)
    picker = floor.picker(op)
    picker.in_hand = (task.task_id, line.line_no)
    change.save("picker", op, picker)
    change.save("order", order.order_id, order)
    # With several orders open, the answer names the one the unit went to (its tote).
    of = f" of order {order.order_id}" if len(tasks) > 1 else ""
    if line.picked >= line.qty:
        finish_line(floor, change, task, order, line, "scan", at)
        return Outcome.good(f"line {line.line_no}{of} complete", "item", task_id=task.task_id,
                            line_no=line.line_no, order_id=order.order_id)
    light = line_module(floor, line)
    if light is not None:
        _signal_lights(change, {light})  # the display shows what is left
    return Outcome.good(f"{line.sku}: {line.picked} of {line.qty}, {line.remaining} to go"
                        + (f" (order {order.order_id})" if of else ""), "item", task_id=task.task_id,
                        line_no=line.line_no, remaining=line.remaining, order_id=order.order_id)


def _tote_task(floor: Floor, op: str, tote: str, tasks: list[Task]) -> Task:
    """Which of the picker's tasks a tote scanned now is for: the one of the line in hand if it has no tote yet,
    else the first task without one in the order the PDA shows them (a cart of three totes: one scan each, in
    the order on screen). Before, every tote went to the first task assigned: 92 of 179 tasks of a peak run were
    bound again and again (one 24 times), their orders' units went into totes bound to another order, and at
    packing that tote opened the wrong order. Every task with its tote already: a second tote for the order in
    hand (the first is full); with nothing in hand it is refused, as nobody can tell which order it is for."""
    hand = _in_hand(floor, op)
    if any(t.tote == tote for t in tasks):
        return next(t for t in tasks if t.tote == tote)  # scanned again: already on its task
    if hand is not None and hand[0].tote is None:
        return hand[0]
    shown = [t for t, _, _ in sorted(open_lines(floor, op), key=lambda x: _shown_first(floor, x))]
    by_id = {t.task_id: t for t in [*shown, *tasks]}
    ordered = [by_id[i] for i in dict.fromkeys(t.task_id for t in [*shown, *tasks])]  # each at its first place
    free = [t for t in ordered if t.tote is None]
    if free:
        return free[0]
    if hand is not None:
        return hand[0]
    raise Refused("not_allowed", f"each of your orders has a tote already ({', '.join(str(t.tote) for t in ordered)}):"
                                 " scan an item of the order first to give it a second tote")


def bind_tote(floor: Floor, change: Change, op: str, tote: str, tasks: list[Task], at: At) -> Outcome:
    """Bind the tote to the task it is for. An accepted scan for the order, so its task starts (SPEC §1, the
    first accepted scan): left `assigned`, a cold-chain task with its tote on this picker's cart was taken
    from them after 10 minutes and given to another picker, tote and all."""
    if not tasks:
        raise Refused("no_task", "you have no pick task to put this tote on")
    task = _tote_task(floor, op, tote, tasks)
    other = floor.totes.get(tote)
    if other is not None and other != task.order_id:
        raise Refused("not_allowed", f"tote {tote} is in use for order {other}")
    order = floor.orders[task.order_id]
    if order.state == ON_HOLD:
        raise Refused("not_allowed", f"order {order.order_id} is on hold", picker_error=False)
    if task.tote == tote:
        return Outcome.good(f"tote {tote} is on task {task.task_id}", "tote")
    task.tote = tote
    order.tote = tote
    if tote not in order.totes:  # each zone's task has its own tote: the order keeps them all
        order.totes.append(tote)
    floor.totes[tote] = order.order_id
    change.save("task", task.task_id, task)
    change.save("order", order.order_id, order)
    change.emit("tote.bound", {"task_id": task.task_id, "tote": tote}, order.order_id)
    start(floor, change, task, at)
    return Outcome.good(f"tote {tote} bound to order {order.order_id}", "tote", task_id=task.task_id)


def _line_for(floor: Floor, task_id: str, line_no: int) -> tuple[Task, Order, Line]:
    task = floor.tasks.get(task_id)
    if task is None:
        raise Refused("no_task", f"no task {task_id}")
    order = floor.orders[task.order_id]
    line = order.line(line_no)
    if line is None or line_no not in task.line_nos:
        raise Refused("no_task", f"task {task_id} has no line {line_no}")
    return task, order, line


def confirm(floor: Floor, change: Change, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool,
            via: str, at: At) -> Outcome:
    """A confirm or shortage from the PTL key (`via` = "ptl_button") or the PDA page ("pda").

    confirm with Q: Q more of the item in hand were picked; below what the line wants, the rest is short
    (`adjusted`). shortage: the adjusted quantity (or nothing) was picked, the rest is short. Both close
    the line. Without an item scanned first, nothing is confirmed and the error signal shows. On a
    serial-tracked line every unit must be scanned (each carries its own serial), so a confirm that would
    count units is refused; one that counts none (confirm 0, plain shortage) closes the line short.
    """
    task, order, line = _line_for(floor, task_id, line_no)
    if task.state not in (TASK_ASSIGNED, TASK_STARTED) or line.done:
        raise Refused("no_task", f"line {line_no} of task {task_id} is not open")
    if order.state == ON_HOLD:
        _error_lights(floor, change, task.operator_id or "", line)
        raise Refused("not_allowed", f"order {order.order_id} is on hold", picker_error=False)
    if line.item is None:
        _error_lights(floor, change, task.operator_id or "", line)
        raise Refused("not_allowed", f"scan the item of line {line_no} first")
    remaining = line.remaining
    if kind == "confirm":
        take = min(max(qty, 0), remaining)
        reason = "adjusted" if via == "ptl_button" else "pda"
    else:
        take = min(max(qty, 0), remaining) if adjusted or via == "pda" else 0
        reason = "shortage_key" if via == "ptl_button" else "pda"
    sku = floor.md.skus.get(line.sku)
    if take > 0 and sku is not None and sku.serial_tracked:
        # A key or the PDA can only repeat the serial of the unit in hand, and a serial belongs to one unit:
        # counting units here would put a serial on several units (and into `pick.line_confirmed`). Each
        # serial-tracked unit is counted by its own scan; the keys may only close the line with the rest short.
        _error_lights(floor, change, task.operator_id or "", line)
        raise Refused("not_allowed", f"{line.sku} is serial-tracked: scan each unit (its serial) instead of "
                                     f"confirming {take} by {'key' if via == 'ptl_button' else 'the PDA'}; "
                                     "a shortage with nothing more picked closes the line")
    item = line.item
    if sku is not None and sku.gtins and any(item.get("gtin") == g for g, _ in sku.pack_gtins):
        item = {**item, "gtin": sku.gtins[0]}  # single units by the key / PDA, not packs
    add_units(floor, change, task, line, item, take, via, at, line.location)
    finish_line(floor, change, task, order, line, via, at, short_reason=reason)
    return Outcome.good(f"line {line_no}: {line.picked} picked" + (f", {line.short} short" if line.short else ""),
                        "confirm", task_id=task_id, line_no=line_no)


def undo(floor: Floor, change: Change, task_id: str, line_no: int, by: str, at: At) -> Outcome:
    """Undo a confirmed line within the undo window: its picks go, the line is open and lit again."""
    task, order, line = _line_for(floor, task_id, line_no)
    if not line.done:
        raise Refused("not_allowed", f"line {line_no} is not confirmed")
    if order.state in (PACKING, "packed", "cancelled") or (order.state == ON_HOLD and order.resume_state == PACKING):
        raise Refused("not_allowed", f"order {order.order_id} is {order.state}: too late to undo")
    window = floor.rules.undo_window_s
    if line.done_mono is not None:
        age = at.mono - line.done_mono
    else:
        from gateway.clock import parse_rfc3339

        age = (at.wall - parse_rfc3339(line.done_at)).total_seconds() if line.done_at else window + 1
        # Confirmed before a restart, so only the wall clock tells the age. Confirmed "in the future" means the
        # clock was stepped back since (NTP after a boot): the age is unknown, and an undo long after the
        # window (units taken back out of the tote's count) is worse than one refused: it was accepted.
        if age < 0:
            age = window + 1
    if age > window:
        raise Refused("not_allowed", f"the undo window of {window:.0f} s is over")
    qty = line.picked
    picked = [{"sku": line.sku, "qty": qty, "location": line.location}] if qty else []
    for p in line.picks:
        for s in p.serials:
            floor.serials.discard((line.sku, s))
    line.picks = []
    line.short = 0
    line.done = False
    line.done_at = None
    line.done_mono = None
    line.item = None
    line.located = False
    change.emit("pick.line_undone", {"task_id": task_id, "line_no": line_no, "qty": qty,
                                     "operator_id": task.operator_id or "", "by": by}, order.order_id)
    change.save("order", order.order_id, order)
    if task.operator_id and by != task.operator_id and picked:
        # Undone by someone else (a supervisor): the picker's PDA says so, or the line just reappears under
        # the picker's own green answer of a moment ago.
        picker = floor.picker(task.operator_id)
        picker.put_back = [*picker.put_back, {"order_id": order.order_id, "tote": task.tote, "units": picked,
                                              "undone_line": line_no, "by": by}][-10:]
        change.save("picker", task.operator_id, picker)
    if task.state == TASK_COMPLETED:
        reopen(floor, change, task, at)
    from gateway.domain.lights import claim

    _signal_lights(change, claim(floor, task))
    return Outcome.good(f"line {line_no} is open again", "undo", task_id=task_id, line_no=line_no)


def picker_view(floor: Floor, operator_id: str) -> dict[str, Any]:
    """What the picker's PDA shows: their lines, the next one first."""
    hand = _in_hand(floor, operator_id)
    ranked = sorted(open_lines(floor, operator_id),
                    key=lambda x: (hand is None or hand[2] is not x[2], _shown_first(floor, x)))
    lines = [{"task_id": task.task_id, "order_id": order.order_id, "line_no": line.line_no,
              "sku": line.sku, "qty": line.qty, "picked": line.picked, "remaining": line.remaining,
              "location": line.location, "zone": task.zone, "tote": task.tote,
              "cutoff_at": order.priority.cutoff_at, "in_hand": hand is not None and hand[2] is line,
              "item_scanned": line.item is not None, "on_hold": order.state == ON_HOLD,
              "lit": _is_lit(floor, task, line)} for task, order, line in ranked]
    picker = floor.pickers.get(operator_id)
    return {"operator_id": operator_id, "lines": lines, "put_back": list(picker.put_back) if picker else []}


def key_press(floor: Floor, change: Change, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool,
              via: str, at: At, device_id: str = "") -> Outcome:
    """A confirm or shortage from a PTL key or the PDA page, with its audit row; a refusal confirms nothing
    and keeps the error signal."""
    from gateway.domain.outcome import attempt

    out = attempt(change, lambda eff: confirm(floor, eff, task_id, line_no, kind, qty, adjusted, via, at))
    task = floor.tasks.get(task_id)
    change.audit.append({"ts": at.ts, "kind": "key" if via == "ptl_button" else "pda", "device_id": device_id,
                         "operator_id": task.operator_id if task else None,
                         "order_id": task.order_id if task else None, "raw": f"{kind} {qty}",
                         "result": "ok" if out.ok else (out.code or "refused"), "message": out.message,
                         "task_id": task_id, "line_no": line_no, "adjusted": adjusted})
    return out
