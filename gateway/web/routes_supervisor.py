"""The supervisor's dashboard API: the live snapshot, and the actions a supervisor takes on the floor. A hold,
a release or a review from here is the same domain call as the hub's command (gateway.domain.api)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.responses import StreamingResponse

from gateway.config import ID_PATTERN
from gateway.domain.api import returns_to_stock, set_hold
from gateway.domain.change import Change
from gateway.domain.errors import InvalidPayload, NotFound
from gateway.domain.floor import Floor
from gateway.domain.review import resolve_review
from gateway.domain.tasks import manual_reassign
from gateway.web.auth import SUPERVISOR, Caller, Require, check
from gateway.web.errors import ApiError
from gateway.web.exports import day_csv, recall
from gateway.web.models import HoldIn, LineRef, ReassignIn, ReviewIn
from gateway.web.ops import outcome_answer, undo_line
from gateway.web.state import web_state
from gateway.web.views import choice_of, decision_of, supervisor

router = APIRouter(prefix="/api/v1/supervisor", tags=["supervisor"])
SUP = Require(*SUPERVISOR)
SupCaller = Annotated[Caller, Depends(SUP)]
TaskId = Annotated[str, Path(min_length=1, max_length=128)]
OrderId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/snapshot", summary="Everything the dashboard shows")
async def snapshot(request: Request, caller: SupCaller) -> dict[str, Any]:
    return supervisor(web_state(request))


@router.get("/stream", summary="Server-sent events: the snapshot whenever the floor changes")
async def stream(request: Request, caller: SupCaller) -> StreamingResponse:
    web = web_state(request)

    def build() -> dict[str, Any] | None:
        try:
            check(web, request, frozenset(SUPERVISOR), None)
        except ApiError:
            return None
        return web.live.cached("supervisor", lambda: supervisor(web))
    return web.live.stream(build)


@router.get("/tasks/{task_id}/decision",
            summary="The dispatch decision stored with the task: score, reason, every picker passed over and why")
async def decision(task_id: TaskId, request: Request, caller: SupCaller) -> dict[str, Any]:
    """What was decided when it was decided (the same score and reason as the task's `task.assigned` /
    `task.reassigned` event), not a re-run of the ranking on today's figures; `decision` is null for a task
    no decision has touched yet. Kept with the task (until its packed or cancelled order is forgotten)."""
    web = web_state(request)
    task = web.service.floor.tasks.get(task_id)
    if task is None:
        raise ApiError(404, "not_found", f"no task {task_id}")
    return {"task_id": task_id, "state": task.state, "operator_id": task.operator_id,
            "decision": decision_of(web, task)}


@router.get("/tasks/{task_id}/choice",
            summary="Who would get this task if it were decided now, and why each picker would or not (a preview)")
async def choice(task_id: TaskId, request: Request, caller: SupCaller) -> dict[str, Any]:
    web = web_state(request)
    c = choice_of(web, task_id, web.service.at().mono)
    if c is None:
        raise ApiError(404, "not_found", f"task {task_id} is not waiting in dispatch (unknown, done or cancelled)")
    return {"task_id": task_id, **c}


async def _hold(request: Request, caller: Caller, body: HoldIn, on: bool) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        if body.scope == "operator" and body.target not in floor.md.operators:
            raise NotFound(f"no operator {body.target} in master data", operator_id=body.target)
        if body.scope == "zone" and not re.match(ID_PATTERN, body.target):
            raise InvalidPayload(f"{body.target!r} is not a zone id")
        return {"ok": True, **set_hold(floor, change, body.scope, body.target, caller.operator_id, at, on)}
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    return {**answer, "replayed": replayed}


@router.post("/hold", summary="Hold an order, a zone, a picker or all: no new assignment within it")
async def hold(body: HoldIn, request: Request, caller: SupCaller) -> dict[str, Any]:
    return await _hold(request, caller, body, True)


@router.post("/release", summary="Release a hold")
async def release(body: HoldIn, request: Request, caller: SupCaller) -> dict[str, Any]:
    return await _hold(request, caller, body, False)


@router.post("/reviews/{order_id}", summary="Approve a packing review (weight or units missing) or send the order back")
async def review(order_id: OrderId, body: ReviewIn, request: Request,
                 caller: SupCaller) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        return {"ok": True, **resolve_review(floor, change, order_id, body.decision, caller.operator_id, at.wall)}
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    return {**answer, "replayed": replayed}


@router.post("/tasks/{task_id}/reassign", summary="Give a task to another picker by hand")
async def reassign(task_id: TaskId, body: ReassignIn, request: Request,
                   caller: SupCaller) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        manual_reassign(floor, change, task_id, body.operator_id, caller.operator_id, at)
        return {"ok": True, "task_id": task_id, "operator_id": body.operator_id}
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    return {**answer, "replayed": replayed}


@router.post("/undo", summary="Undo a picker's confirm within the undo window")
async def undo(body: LineRef, request: Request, caller: SupCaller) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        return outcome_answer(undo_line(floor, change, caller.operator_id, "supervisor-page", body.task_id,
                                        body.line_no, at))
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    return {**answer, "replayed": replayed}


@router.get("/recall", summary="Every pick and pack of a lot (event log and audit trail)")
async def lot_recall(request: Request, lot: Annotated[str, Query(min_length=1, max_length=64)],
                     caller: SupCaller) -> dict[str, Any]:
    return await recall(web_state(request).service.journal.reader, lot)


@router.get("/returns", summary="Picked items of cancelled orders, to put back on the shelves")
async def returns(request: Request, caller: SupCaller) -> list[dict[str, Any]]:
    return returns_to_stock(web_state(request).service.floor)


@router.get("/export.csv", summary="The day's picks and packs as CSV (UTF-8 with BOM; the day is UTC)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def export_csv(request: Request, caller: SupCaller,
                     day: Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                                      description="YYYY-MM-DD (UTC), default today")] = None
                     ) -> Response:
    web = web_state(request)
    try:
        d = date.fromisoformat(day) if day else web.clock.now().date()
    except ValueError:
        raise ApiError(422, "invalid_payload", f"day: {day} is not a date (YYYY-MM-DD)") from None
    text = await day_csv(web.service.journal.reader, d)
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="floorgate-{d.isoformat()}.csv"',
                             "Cache-Control": "no-store"})
