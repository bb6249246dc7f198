"""The one way in for every scan, from any source (serial, HID, the PDA and packing pages): interpret it
(SPEC §2), check who is logged in on the device, hand it to picking or packing, and record it in the audit
trail whatever the answer. A refusal changes nothing but the audit trail and a `scan.rejected` event."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.domain.barcode import MAX_SCAN_CHARS, Barcode, interpret, strip_controls
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import At
from gateway.domain.outcome import Outcome, Refused
from gateway.domain.packing import pack_scan, report_missing
from gateway.domain.picking import pick_scan
from gateway.domain.sessions import PICK, login, set_break, touch


@dataclass(frozen=True, slots=True)
class ScanInput:
    device_id: str
    station: str  # "pick" or a packing station id
    text: str  # the scanned characters, AIM identifier removed, GS kept
    symbology: str | None = None
    raw: str = ""  # escaped per SPEC, for the audit trail and scan.rejected
    too_long: bool = False
    source: str = "scanner"  # "scanner" | "page"
    length: int = 0  # of a too-long scan, all of it (`raw` keeps its first 4096 characters)


def interpret_scan(floor: Floor, scan: ScanInput) -> Barcode:
    bc = interpret(scan.text, symbology=scan.symbology, md=floor.md, open_orders=floor.orders,
                   totes=floor.totes, tote_pattern=floor.rules.tote_pattern, too_long=scan.too_long)
    if scan.too_long and scan.length and bc.kind == "invalid":
        # The reason says how long it was: `raw` (SPEC: what was scanned) keeps only the head, unmarked.
        bc = replace(bc, reason=f"scan of {scan.length} characters is longer than {MAX_SCAN_CHARS}; rescan the "
                                "label, or check the scanner's terminator setting")
    return bc


def _route(floor: Floor, change: Change, scan: ScanInput, bc: Barcode, at: At, has_scale: bool) -> Outcome:
    if bc.kind == "badge" and bc.operator_id is not None:
        return login(floor, change, scan.device_id, scan.station, bc.operator_id, at, scan.source)
    session = floor.sessions.get(scan.device_id)
    if session is None:
        if bc.error is not None:
            raise Refused(bc.error, bc.reason or "unreadable code")
        raise Refused("not_logged_in", "nobody is logged in on this scanner: scan your badge first")
    touch(floor, scan.device_id, at)
    if session.station == PICK and strip_controls(scan.text).strip() == floor.rules.break_code:
        state = floor.pickers.get(session.operator_id)
        return set_break(floor, change, session.operator_id, not (state is not None and state.on_break), at)
    if session.station != PICK and strip_controls(scan.text).strip() == floor.rules.missing_code:
        return report_missing(floor, change, session, at)
    if bc.error is not None:
        raise Refused(bc.error, bc.reason or "unreadable code")
    if session.station == PICK:
        return pick_scan(floor, change, session, bc, at)
    return pack_scan(floor, change, session, bc, at, has_scale)


def handle_scan(floor: Floor, change: Change, scan: ScanInput, at: At, has_scale: bool = False) -> Outcome:
    bc = interpret_scan(floor, scan)
    session = floor.sessions.get(scan.device_id)
    operator = session.operator_id if session is not None else None
    effect = Change(cmd_id=change.cmd_id)
    try:
        outcome = _route(floor, effect, scan, bc, at, has_scale)
    except Refused as e:
        if effect.changed_state:
            raise RuntimeError(f"scan refused ({e.code}) after changing state: a bug") from e
        outcome = Outcome.bad(e.code, e.message, bc.kind, **e.detail)
        change.signals.extend(effect.signals)  # the error signal on the PTL modules
        data: dict[str, Any] = {"device_id": scan.device_id, "code": e.code, "reason": e.message, "raw": scan.raw}
        if operator is not None:
            data["operator_id"] = operator
        order_id = bc.order_id
        if order_id is None and scan.station != PICK:
            # At a packing station a refused item concerns the order being verified there (SPEC §1: the envelope
            # carries `order_id` when it concerns an order).
            bench = floor.stations.get(scan.station)
            order_id = bench.order_id if bench is not None else None
        change.emit("scan.rejected", data, order_id)
        if operator is not None and session is not None and session.station == PICK and e.picker_error:
            floor.dispatch.on_reject(operator, at.mono)
    else:
        change.absorb(effect)
        operator = operator or outcome.detail.get("operator_id")
    order_id = bc.order_id or outcome.detail.get("order_id")
    task_id = outcome.detail.get("task_id")
    if order_id is None and isinstance(task_id, str) and task_id in floor.tasks:
        order_id = floor.tasks[task_id].order_id
    change.audit.append({
        "ts": at.ts, "kind": "scan", "device_id": scan.device_id, "station": scan.station, "source": scan.source,
        "operator_id": operator, "order_id": order_id, "lot": bc.lot, "raw": scan.raw,
        "result": "ok" if outcome.ok else (outcome.code or "refused"), "message": outcome.message,
        "interpretation": {k: v for k, v in (("kind", bc.kind), ("code", bc.code), ("gtin", bc.gtin),
                                             ("sku", bc.sku), ("units", bc.units), ("lot", bc.lot),
                                             ("expiry", bc.expiry), ("serial", bc.serial), ("sscc", bc.sscc),
                                             ("symbology", bc.symbology)) if v is not None},
    })
    return outcome
