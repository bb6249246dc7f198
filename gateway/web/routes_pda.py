"""The picker's PDA page API. Scans go through the one scan pipeline (station `pick`, source `page`, the
session's own device id); confirms and short-picks are PDA key presses (`via` "pda"). Every action carries
the page's action id and is applied once (see actions.py)."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import StreamingResponse

from drivers.scanner.scan import split_aim
from gateway.domain.barcode import escape_raw
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.sessions import set_break, touch
from gateway.web.auth import PDA_ROLES, Caller, Require, check, set_cookie
from gateway.web.errors import ApiError
from gateway.web.models import BreakIn, ConfirmIn, LineRef, ScanIn, ShortIn
from gateway.web.ops import outcome_answer, pda_key, undo_line
from gateway.web.routes_auth import me
from gateway.web.state import WebState, web_state
from gateway.web.views import pda

log = logging.getLogger("floorgate.web")
router = APIRouter(prefix="/api/v1/pda", tags=["pda"])
PDA = Require(*PDA_ROLES, badge_at="pick")
PdaCaller = Annotated[Caller, Depends(PDA)]
MAX_SCAN = 4096


def scan_input(device_id: str, station: str, body_text: str) -> ScanInput:
    """A page scan as the pipeline takes it: AIM prefix split off, raw escaped for the audit trail."""
    text = body_text.strip("\r\n")
    symbology, rest = split_aim(text)
    return ScanInput(device_id, station, rest, symbology, escape_raw(text[:MAX_SCAN]), len(text) > MAX_SCAN,
                     source="page", length=len(text))


def count_scan(web: WebState, answer: dict[str, Any], replayed: bool, t0: float) -> None:
    if replayed:
        return
    web.pages.scans += 1
    if not answer["ok"]:
        web.pages.rejects += 1
    web.pages.latencies.append(time.monotonic() - t0)


def _reply(answer: dict[str, Any], action_id: str, replayed: bool) -> dict[str, Any]:
    return {**answer, "action_id": action_id, "replayed": replayed}


@router.get("/view", summary="The picker's lines, the next one first, with cutoffs and the undo candidate")
async def view(request: Request, caller: PdaCaller) -> dict[str, Any]:
    web = web_state(request)
    return pda(web, caller.operator_id, web.service.at())


@router.get("/stream", summary="Server-sent events: the view again whenever it changes")
async def stream(request: Request, caller: PdaCaller) -> StreamingResponse:
    web = web_state(request)

    def build() -> dict[str, Any] | None:
        try:
            check(web, request, frozenset(PDA_ROLES), "pick")
        except ApiError:
            return None
        return pda(web, caller.operator_id, web.service.at())
    return web.live.stream(build)


@router.post("/scan", summary="A scan typed by the PDA's scanner into the page")
async def scan(body: ScanIn, request: Request, response: Response, caller: PdaCaller) -> dict[str, Any]:
    web = web_state(request)
    t0 = time.monotonic()
    s = scan_input(caller.session.device_id or "", "pick", body.text)
    at = web.service.at()

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        return outcome_answer(handle_scan(floor, change, s, at, False))
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    count_scan(web, answer, replayed, t0)
    out = _reply(answer, body.action_id, replayed)
    if answer["kind"] == "badge" and answer["detail"].get("login") is False:
        out["logged_out"] = True  # the same badge again logs out, as on a scanner
    elif answer["kind"] == "badge" and answer["ok"] and not replayed:
        # Another badge on this PDA: as on a scanner, it replaced the operator (SPEC §6). The page carries on
        # as the new one; before, the new operator was logged in on a device no page showed, and could be
        # given work nobody saw.
        operator_id = answer["detail"].get("operator_id")
        op = web.service.floor.md.operators.get(operator_id) if isinstance(operator_id, str) else None
        if op is not None and operator_id != caller.operator_id:
            token, session = web.sessions.create(op.operator_id, "badge", "pick", caller.session.device_id)
            set_cookie(web, response, token)  # the new operator's own language (master data), not the last one's
            out["switched_to"] = op.operator_id
            # The page's next action goes out right after this answer, with the new cookie: it needs the new
            # session's CSRF token now, not after a round trip to /auth/me.
            out["me"] = me(web, session, op)
            log.info("page session passed on by a badge scan", extra={"fields": {
                "device": caller.session.device_id, "from": caller.operator_id, "to": op.operator_id}})
    return out


async def _key(request: Request, caller: Caller, body: ConfirmIn | ShortIn, kind: str, qty: int) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()
    device = caller.session.device_id or ""

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        touch(floor, device, at)  # a button press is activity, like a scan (idle logout)
        return outcome_answer(pda_key(floor, change, caller.operator_id, device, body.task_id, body.line_no, kind,
                                      qty, at))
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    return _reply(answer, body.action_id, replayed)


@router.post("/confirm", summary="Confirm a line from the PDA (qty below the remaining: the rest is short)")
async def confirm(body: ConfirmIn, request: Request, caller: PdaCaller) -> dict[str, Any]:
    return await _key(request, caller, body, "confirm", body.qty)


@router.post("/short", summary="Short-pick a line: qty_picked were picked, the rest is missing")
async def short(body: ShortIn, request: Request, caller: PdaCaller) -> dict[str, Any]:
    return await _key(request, caller, body, "shortage", body.qty_picked)


@router.post("/undo", summary="Undo a confirmed line of one's own task within the undo window")
async def undo(body: LineRef, request: Request, caller: PdaCaller) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()
    device = caller.session.device_id or ""
    op_id = caller.operator_id

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        touch(floor, device, at)
        return outcome_answer(undo_line(floor, change, op_id, device, body.task_id, body.line_no, at, owner=op_id))
    answer, replayed = await web.actions.run(op_id, request.url.path, body, fn)
    return _reply(answer, body.action_id, replayed)


@router.post("/break", summary="Start (on=true) or end a break: no new work meanwhile")
async def set_on_break(body: BreakIn, request: Request, caller: PdaCaller) -> dict[str, Any]:
    web = web_state(request)
    at = web.service.at()
    op_id = caller.operator_id
    device = caller.session.device_id or ""

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        touch(floor, device, at)
        return outcome_answer(set_break(floor, change, op_id, body.on, at))
    answer, replayed = await web.actions.run(op_id, request.url.path, body, fn)
    return _reply(answer, body.action_id, replayed)
