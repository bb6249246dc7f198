"""Domain operations `(floor, change) -> ...` the pages need on top of gateway.domain: PDA confirms and undos
checked against the task's owner, a short-pick of a line whose shelf was empty, the lines that can still
be undone, and the audit rows of page actions. Pure: no I/O, like the domain itself."""

from __future__ import annotations

from typing import Any

from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import ON_HOLD, TASK_ASSIGNED, TASK_COMPLETED, TASK_STARTED, At
from gateway.domain.outcome import Outcome, Refused, attempt
from gateway.domain.picking import finish_line, key_press, undo
from gateway.domain.tasks import start


def _audit(change: Change, at: At, kind: str, device_id: str, operator_id: str, task_id: str, line_no: int,
           raw: str, out: Outcome, order_id: str | None) -> None:
    change.audit.append({"ts": at.ts, "kind": kind, "device_id": device_id, "operator_id": operator_id,
                         "order_id": order_id, "raw": raw, "result": "ok" if out.ok else (out.code or "refused"),
                         "message": out.message, "task_id": task_id, "line_no": line_no})


def _own(floor: Floor, operator_id: str, task_id: str) -> None:
    task = floor.tasks.get(task_id)
    if task is None:
        raise Refused("no_task", f"no task {task_id}")
    if task.operator_id != operator_id:
        raise Refused("not_allowed", f"task {task_id} is not yours")


def short_unscanned(floor: Floor, change: Change, task_id: str, line_no: int, at: At) -> Outcome:
    """Nothing of the line could be picked (empty shelf), so no item could be scanned: the whole line is
    short (`pick.line_short`, reason `pda`, nothing picked), and the task moves on."""
    task = floor.tasks.get(task_id)
    if task is None or line_no not in task.line_nos:
        raise Refused("no_task", f"task {task_id} has no line {line_no}")
    order = floor.orders[task.order_id]
    line = order.line(line_no)
    if line is None or line.done or task.state not in (TASK_ASSIGNED, TASK_STARTED):
        raise Refused("no_task", f"line {line_no} of task {task_id} is not open")
    if order.state == ON_HOLD:
        raise Refused("not_allowed", f"order {order.order_id} is on hold")
    if line.picks:
        raise Refused("not_allowed", f"{line.picked} already scanned on line {line_no}: short it with that quantity")
    start(floor, change, task, at)
    finish_line(floor, change, task, order, line, "pda", at, short_reason="pda")
    return Outcome.good(f"line {line_no}: nothing picked, {line.short} short", "confirm", task_id=task_id,
                        line_no=line_no)


def pda_key(floor: Floor, change: Change, operator_id: str, device_id: str, task_id: str, line_no: int,
            kind: str, qty: int, at: At) -> Outcome:
    """Confirm (`kind` "confirm") or short-pick ("shortage", `qty` = what was picked) from the PDA page."""
    try:
        _own(floor, operator_id, task_id)
    except Refused as e:
        out = Outcome.bad(e.code, e.message)
        _audit(change, at, "pda", device_id, operator_id, task_id, line_no, f"{kind} {qty}", out, None)
        return out
    task = floor.tasks[task_id]
    order = floor.orders[task.order_id]
    line = order.line(line_no)
    if kind == "shortage" and qty == 0 and line is not None and line.item is None:
        out = attempt(change, lambda eff: short_unscanned(floor, eff, task_id, line_no, at))
        _audit(change, at, "pda", device_id, operator_id, task_id, line_no, "shortage 0", out, task.order_id)
        return out
    return key_press(floor, change, task_id, line_no, kind, qty, kind == "shortage", "pda", at, device_id)


def undo_line(floor: Floor, change: Change, by: str, device_id: str, task_id: str, line_no: int, at: At,
              owner: str | None = None) -> Outcome:
    """Undo a confirmed line; with `owner`, only a line of that picker's task (the PDA's own undo)."""
    def op(eff: Change) -> Outcome:
        if owner is not None:
            _own(floor, owner, task_id)
        return undo(floor, eff, task_id, line_no, by, at)
    out = attempt(change, op)
    task = floor.tasks.get(task_id)
    _audit(change, at, "undo", device_id, by, task_id, line_no, "undo", out, task.order_id if task else None)
    return out


def undo_candidates(floor: Floor, at: At, operator_id: str | None = None) -> list[dict[str, Any]]:
    """Confirmed lines still inside the undo window, newest first (of one picker, or of everyone)."""
    window = floor.rules.undo_window_s
    out = []
    for task in floor.tasks.values():
        if operator_id is not None and task.operator_id != operator_id:
            continue
        if task.state not in (TASK_ASSIGNED, TASK_STARTED, TASK_COMPLETED):
            continue
        order = floor.orders.get(task.order_id)
        if order is None or order.state not in ("picking", "picked", "short_picked"):
            continue
        for no in task.line_nos:
            line = order.line(no)
            if line is None or not line.done or line.done_mono is None:
                continue
            left = window - (at.mono - line.done_mono)
            if left <= 0:
                continue
            out.append({"task_id": task.task_id, "order_id": order.order_id, "line_no": no, "sku": line.sku,
                        "qty": line.qty, "picked": line.picked, "short": line.short,
                        "operator_id": task.operator_id, "done_at": line.done_at, "seconds_left": round(left)})
    out.sort(key=lambda x: str(x["done_at"]), reverse=True)
    return out


def outcome_answer(out: Outcome) -> dict[str, Any]:
    """An Outcome as the JSON a page gets (and the idempotency store keeps)."""
    detail = {k: v for k, v in out.detail.items() if isinstance(v, str | int | float | bool) or v is None}
    return {"ok": out.ok, "code": out.code, "message": out.message, "kind": out.kind, "detail": detail}
