"""The JSON each page shows, read from the floor in memory (committed state only: every change reaches
memory through a commit) and from the device parts. Built on demand and for each stream refresh."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gateway import __version__
from gateway.clock import rfc3339
from gateway.domain.api import returns_to_stock
from gateway.domain.dispatch import DispatchError
from gateway.domain.holds import is_held, picker_held
from gateway.domain.model import FINAL_STATES, ORDER_STATES, TASK_ACTIVE, TASK_OPEN, At, Task
from gateway.domain.packing import station_view
from gateway.domain.picking import picker_view
from gateway.web.errors import ApiError
from gateway.web.metrics import sync_backlog
from gateway.web.ops import undo_candidates
from gateway.web.state import WebState

MAX_ORDERS = 300
MAX_TASKS = 150


def _name(web: WebState, operator_id: str | None) -> str:
    if not operator_id:
        return ""
    op = web.service.floor.md.operators.get(operator_id)
    return op.name if op is not None and op.name else operator_id


def gateway_info(web: WebState) -> dict[str, Any]:
    cfg = web.gw.cfg
    j = web.service.journal
    return {"site": cfg.site, "gateway": cfg.gateway, "version": __version__, "journal": j.journal_id,
            "last_seq": j.last_seq, "now": rfc3339(web.clock.now())}


def sync_info(web: WebState) -> dict[str, Any]:
    """The backlog is shown with or without a hub link (`sync_backlog`: the stored hub ack, or the live
    link's if newer), so a gateway running offline still says how many events wait for the hub."""
    pending, acked = sync_backlog(web)
    link = web.gw.link
    return {"last_seq": web.service.journal.last_seq, "connected": bool(link and link.mqtt.connected.is_set()),
            "pending": pending, "acked_seq": acked}


def devices(web: WebState) -> list[dict[str, Any]]:
    floor = web.service.floor
    out: dict[str, dict[str, Any]] = {}
    for d in web.gw.registry.devices.values():
        out[d.device_id] = {"device_id": d.device_id, "kind": d.kind, "online": d.online, "detail": d.detail,
                            "errors": d.errors, "scans": d.scans, "rejects": d.rejects}
    fleet = web.gw.fleet
    if fleet is not None and fleet.ptl is not None:  # a bus's state is its link's
        for bus_id, bus in fleet.ptl.buses.items():
            entry = out.setdefault(bus_id, {"device_id": bus_id, "kind": "bus", "errors": 0, "scans": 0,
                                            "rejects": 0})
            snap = bus.snapshot()
            entry.update(online=bool(snap["link_up"]), detail=snap["link_error"] or ("link up" if snap["link_up"]
                                                                                     else "connecting"))
    for st in floor.devices.values():
        entry = out.setdefault(st.device_id, {"device_id": st.device_id, "kind": st.kind, "online": st.online,
                                              "detail": st.detail, "errors": st.errors, "scans": 0, "rejects": 0})
        entry["errors"] = max(int(entry["errors"]), st.errors)
    return sorted(out.values(), key=lambda d: (d["kind"], d["device_id"]))


# -- PDA and packing -------------------------------------------------------------------------------------------

def pda(web: WebState, operator_id: str, at: At) -> dict[str, Any]:
    floor = web.service.floor
    view = picker_view(floor, operator_id)
    for line in view["lines"]:
        sku = floor.md.skus.get(line["sku"])
        line["description"] = sku.description if sku is not None else ""
    picker = floor.pickers.get(operator_id)
    undo = undo_candidates(floor, at, operator_id)
    return {**view, "name": _name(web, operator_id), "now": at.ts, "on_break": bool(picker and picker.on_break),
            "next": view["lines"][0] if view["lines"] else None, "undo": undo[0] if undo else None,
            "break_code": floor.rules.break_code}


def check_packing_station(web: WebState, station: str) -> None:
    """Refuse a packing station the config does not name, where it names any (Config.packing_stations)."""
    fleet = web.gw.fleet
    known: set[str] = (fleet.cfg if fleet is not None else web.gw.cfg).packing_stations
    if known and station not in known:
        raise ApiError(404, "not_found", f"{station} is not a packing station of this gateway; its stations: "
                                         f"{', '.join(sorted(known))}")


def has_scale(web: WebState, station: str) -> bool:
    fleet = web.gw.fleet
    cfg = fleet.cfg if fleet is not None else web.gw.cfg
    return any(s.station == station for s in cfg.scales)


def printers_of(web: WebState, station: str) -> list[Any]:
    fleet = web.gw.fleet
    if fleet is None:
        return []
    return [p for p in fleet.printers.values() if p.cfg.station == station]


def pack(web: WebState, station: str) -> dict[str, Any]:
    floor = web.service.floor
    view = station_view(floor, station)
    done = sum(min(i["scanned"], i["expected"]) for i in view["items"])
    view.update(units_expected=sum(i["expected"] for i in view["items"]), units_scanned=done,
                has_scale=has_scale(web, station), has_printer=bool(printers_of(web, station)),
                result=web.live.station_results.get(station), parcel=web.live.parcels.get(station),
                now=rfc3339(web.clock.now()))
    order = floor.orders.get(view["order_id"]) if view["order_id"] else None
    view["order_state"] = order.state if order is not None else None
    view["reviews"] = [o.order_id for o in floor.orders.values()
                       if o.review is not None and o.review.get("station") == station]
    view["missing_code"] = floor.rules.missing_code  # scanned when a unit is not there: the order goes to review
    return view


# -- supervisor ------------------------------------------------------------------------------------------------

def choice_of(web: WebState, task_id: str, t: float) -> dict[str, Any] | None:
    """Who would get the task if it were decided now (a preview: nothing is decided or stored)."""
    try:
        c = web.service.floor.dispatch.choose(task_id, t)
    except DispatchError:
        return None
    return {"operator_id": c.operator_id, "strategy": c.strategy, "reason": c.reason,
            "candidates": [{"operator_id": x.operator_id, "name": _name(web, x.operator_id), "eligible": x.eligible,
                            "score": None if x.score is None else round(x.score, 1),
                            "index": round(x.picker_index, 1), "load": x.load, "note": x.note}
                           for x in c.candidates]}


def decision_of(web: WebState, task: Task) -> dict[str, Any] | None:
    """The decision stored with the task when it was made (see `gateway.domain.tasks`), with names."""
    d = task.decision
    if d is None:
        return None
    out = dict(d)
    if d.get("operator_id"):
        out["name"] = _name(web, d["operator_id"])
    if d.get("from_operator"):
        out["from_name"] = _name(web, d["from_operator"])
    out["candidates"] = [{**c, "name": _name(web, c["operator_id"])} for c in d.get("candidates", ())]
    return out


def _last_decisions(web: WebState) -> dict[str, dict[str, Any]]:
    """Per picker, the latest stored decision about an open task of their zones that named them: whether
    they got the task, and the note saying why (or why not)."""
    floor = web.service.floor
    latest: dict[str, tuple[str, Task]] = {}  # zone -> (when, task) of its latest decision with candidates
    for task in floor.tasks.values():
        d = task.decision
        if task.state in TASK_ACTIVE and d is not None and d.get("candidates"):
            have = latest.get(task.zone)
            if have is None or d["at"] > have[0]:
                latest[task.zone] = (d["at"], task)
    out: dict[str, dict[str, Any]] = {}
    for when, task in sorted(latest.values(), key=lambda x: x[0]):  # the latest wins for a many-zone picker
        assert task.decision is not None
        for c in task.decision["candidates"]:
            out[c["operator_id"]] = {"task_id": task.task_id, "at": when,
                                     "got": c["operator_id"] == task.decision.get("operator_id"), "note": c["note"]}
    return out


def supervisor(web: WebState) -> dict[str, Any]:
    floor = web.service.floor
    at = web.service.at()
    by_state = dict.fromkeys(ORDER_STATES, 0)
    open_orders = []
    for o in floor.orders.values():
        by_state[o.state] = by_state.get(o.state, 0) + 1
        if o.state not in FINAL_STATES:
            open_orders.append({"order_id": o.order_id, "state": o.state, "cutoff_at": o.priority.cutoff_at,
                                "lines": len(o.lines), "lines_done": sum(1 for ln in o.lines if ln.done),
                                "tote": o.tote, "holds": list(o.holds), "cold_chain": o.priority.cold_chain})
    open_orders.sort(key=lambda x: (x["cutoff_at"] or "9999", x["order_id"]))
    logged_in = {s.operator_id for s in floor.sessions.values() if s.station == "pick"}
    pickers = []
    last = _last_decisions(web)
    for p in floor.dispatch.pickers():
        state = floor.pickers.get(p.operator_id)
        pickers.append({"operator_id": p.operator_id, "name": _name(web, p.operator_id), "score": p.score,
                        "breaker": p.breaker, "open_tasks": p.open_tasks,
                        # Under an `all` hold, their own or one on every zone they work in, no new work comes:
                        # the page said "available" (the engine's view knows only the picker's own state).
                        "available": p.available and picker_held(floor, p.operator_id) is None,
                        "logged_in": p.operator_id in logged_in, "on_break": bool(state and state.on_break),
                        "held": f"operator:{p.operator_id}" in floor.holds,
                        "last_decision": last.get(p.operator_id)})
    tasks = []
    active = [t for t in floor.tasks.values() if t.state in TASK_ACTIVE]
    # The ones that matter first, as dispatch ranks them, escalated ones above all: the oldest first hid an
    # urgent order and every escalation behind a backlog of 150.
    for task in sorted(active, key=lambda t: (-t.escalation, floor.dispatch.urgency(t.task_id),
                                              t.created_at, t.task_id))[:MAX_TASKS]:
        order = floor.orders.get(task.order_id)
        tasks.append({"task_id": task.task_id, "order_id": task.order_id, "zone": task.zone, "state": task.state,
                      "operator_id": task.operator_id, "name": _name(web, task.operator_id),
                      "escalation": task.escalation, "lines": len(task.line_nos),
                      # A zone or `all` hold stops new assignments: a task already with a picker goes on.
                      "held": (order is not None and order.state == "on_hold")
                              or (task.operator_id is None and is_held(floor, task) is not None),
                      "cutoff_at": order.priority.cutoff_at if order else None,
                      # What was decided, as stored then; and, for a task still waiting, why nobody gets it now.
                      "decision": decision_of(web, task),
                      "choice": choice_of(web, task.task_id, at.mono) if task.state == TASK_OPEN else None})
    # `verified`: units verified before the review; with none, there is nothing to approve (ship), only repack.
    reviews = [{"order_id": o.order_id, "reason": o.review.get("reason") or "weight_deviation",
                **{k: o.review.get(k) for k in ("station", "operator_id", "expected_g", "actual_g", "deviation_pct",
                                                "missing")},
                "verified": sum(int(i.get("qty") or 0) for i in (o.review.get("items") or []))}
               for o in floor.orders.values() if o.review is not None]
    return {
        "gateway": gateway_info(web),
        "storage": floor.storage,
        "orders": {"by_state": by_state, "open_total": len(open_orders), "open": open_orders[:MAX_ORDERS]},
        "trend": [list(p) for p in web.live.trend],
        "pickers": pickers,
        "tasks": tasks,
        "tasks_total": len(active),
        "alarms": sorted((a.to_doc() for a in floor.alarms.values()), key=lambda a: a["raised_at"], reverse=True),
        "holds": sorted((h.to_doc() for h in floor.holds.values()), key=lambda h: (h["scope"], h["id"])),
        "reviews": reviews,
        "undo": undo_candidates(floor, at),
        "returns": returns_to_stock(floor),
        "sync": sync_info(web),
        "devices": devices(web),
        "strategies": [asdict(f) for f in floor.dispatch.strategy_figures().values()],
        "operators": sorted(({"operator_id": o.operator_id, "name": o.name or o.operator_id}
                             for o in floor.md.operators.values() if "picker" in o.roles),
                            key=lambda o: o["operator_id"]),
        "undo_window_s": floor.rules.undo_window_s,
    }


# -- technician ------------------------------------------------------------------------------------------------

SUPERVISOR_ALARMS = ("breaker:", "escalation:", "bulk_incomplete:")


def technician(web: WebState) -> dict[str, Any]:
    registry = web.gw.registry
    buses = []
    fleet = web.gw.fleet
    if fleet is not None and fleet.ptl is not None:
        for bus_id, bus in fleet.ptl.buses.items():
            snap = bus.snapshot()
            modules = [{"module_id": f"{bus_id}-u{int(unit):03d}", "unit": int(unit), **m}
                       for unit, m in sorted(snap.pop("modules", {}).items())]
            buses.append({**snap, "modules": modules})
    scanners = [{"device_id": d.device_id, "online": d.online, "detail": d.detail, "scans": d.scans,
                 "rejects": d.rejects, "errors": d.errors, "last_scans": list(d.last_scans)[::-1]}
                for d in registry.devices.values() if d.kind == "scanner"]
    # The floor's alarms but the supervisor's own (breakers, escalations, bulk sets): a module's fault alarm
    # sends the technician to this page, which did not show it.
    alarms = sorted((a.to_doc() for a in web.service.floor.alarms.values()
                     if not a.alarm_id.startswith(SUPERVISOR_ALARMS)), key=lambda a: a["raised_at"], reverse=True)
    return {"gateway": gateway_info(web), "devices": devices(web), "buses": buses, "scanners": scanners,
            "sync": sync_info(web), "alarms": alarms}
