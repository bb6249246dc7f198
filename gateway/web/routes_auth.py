"""Logging in and out. A badge (PDA, packing station) goes through the one scan pipeline like a badge on a
scanner, so the floor session, `operator.login` and the audit row are the same; a password (supervisor,
technician) is checked against the local hash (`floorgate user set-password`) or else master data's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from drivers.scanner.scan import split_aim
from gateway.domain.barcode import escape_raw, strip_controls
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import Operator
from gateway.domain.outcome import Outcome
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.domain.sessions import logout
from gateway.users import USER_KIND, verify_password
from gateway.web.auth import PASSWORD_ROLES, ROLES, Caller, Require, clear_cookie, client_ip, set_cookie, who
from gateway.web.errors import ApiError
from gateway.web.models import BadgeLogin, LanguageIn, PasswordLogin
from gateway.web.sessions import WebSession
from gateway.web.state import WebState, web_state
from gateway.web.views import check_packing_station, has_scale

log = logging.getLogger("floorgate.web")
router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
ANYONE = Require(*ROLES)
AnyCaller = Annotated[Caller, Depends(ANYONE)]


def me(web: WebState, s: WebSession, op: Operator) -> dict[str, Any]:
    cfg = web.gw.cfg
    return {"operator_id": op.operator_id, "name": op.name or op.operator_id, "roles": list(op.roles),
            "language": s.language or op.language or "en", "kind": s.kind, "station": s.station,
            "device_id": s.device_id, "csrf": s.csrf, "expires_at": s.expires_at, "site": cfg.site,
            "gateway": cfg.gateway}


def _limit(web: WebState, ip: str, account: str) -> None:
    wait = web.limiter.retry_after(ip, account)
    if wait is not None:
        raise ApiError(429, "rate_limited", f"too many failed logins: try again in {wait:.0f} s",
                       headers={"Retry-After": str(int(wait) + 1)})


def _device_id(station: str) -> str:
    return ("pda-" if station == "pick" else "pkweb-") + secrets.token_hex(4)


@router.post("/badge", summary="Log in on the PDA (station \"pick\") or a packing station page with a badge scan")
async def badge_login(body: BadgeLogin, request: Request, response: Response) -> dict[str, Any]:
    web = web_state(request)
    ip = client_ip(request)
    symbology, text = split_aim(body.badge.strip("\r\n"))
    account = "badge:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
    _limit(web, ip, account)
    if body.station != "pick":
        check_packing_station(web, body.station)
    operator_id = web.service.floor.md.badges.get(strip_controls(text).strip())
    device_id = _device_id(body.station)
    scan = ScanInput(device_id, body.station, text, symbology, escape_raw(body.badge), source="page")
    at = web.service.at()
    scale = has_scale(web, body.station)

    def op(floor: Floor, change: Change) -> Outcome:
        return handle_scan(floor, change, scan, at, scale)
    if operator_id is None:
        web.limiter.failed(ip, account)  # before the await: requests at once must not all pass the limit
    # Through the one scan pipeline whatever it is (SPEC §2): a code that is no badge is refused there as on a
    # scanner, with its `scan.rejected` and audit row. Refused here before, it left no trace.
    out = await web.service.execute(op)
    if operator_id is None:
        raise ApiError(401, "unknown_barcode", "that is not a badge known here: scan your badge")
    if not out.ok:
        raise ApiError(403, out.code or "not_allowed", out.message)
    web.limiter.succeeded(account)
    token, s = web.sessions.create(operator_id, "badge", body.station, device_id)
    s.language = body.language
    set_cookie(web, response, token)
    return me(web, s, web.service.floor.md.operators[operator_id])


async def _local_hash(web: WebState, operator_id: str) -> str | None:
    rows = list(await web.service.journal.reader.execute_fetchall(
        "SELECT body FROM docs WHERE kind = ? AND id = ?", (USER_KIND, operator_id)))
    if not rows:
        return None
    doc = json.loads(rows[0][0])
    value = doc.get("password_hash") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@router.post("/login", summary="Log in on the supervisor or technician page with a password")
async def password_login(body: PasswordLogin, request: Request, response: Response) -> dict[str, Any]:
    web = web_state(request)
    ip = client_ip(request)
    account = "op:" + body.operator_id.lower()
    _limit(web, ip, account)
    op = web.service.floor.md.operators.get(body.operator_id)
    hashed = await _local_hash(web, body.operator_id) if op is not None else None
    if op is not None and hashed is None:
        hashed = op.password_hash
    ok = await asyncio.to_thread(verify_password, body.password, hashed)
    if not ok or op is None:
        web.limiter.failed(ip, account)
        # the typed id is logged only when it is a real one: people type passwords into the wrong field
        who_tried = body.operator_id if op is not None else "(unknown id)"
        log.info("page login refused", extra={"fields": {"operator_id": who_tried, "ip": ip}})
        raise ApiError(401, "unauthenticated", "wrong operator id or password")
    if not set(op.roles) & set(PASSWORD_ROLES):
        raise ApiError(403, "forbidden", f"{who(op)} has no supervisor or technician role: use your badge on "
                                         "the PDA or packing page")
    web.limiter.succeeded(account)
    token, s = web.sessions.create(op.operator_id, "password")
    set_cookie(web, response, token)
    log.info("page login", extra={"fields": {"operator_id": op.operator_id, "ip": ip}})
    return me(web, s, op)


@router.get("/me", summary="Who is logged in, with the CSRF token for state-changing requests")
async def whoami(request: Request, caller: AnyCaller) -> dict[str, Any]:
    return me(web_state(request), caller.session, caller.operator)


@router.post("/language", summary="Choose the page language for this session")
async def language(body: LanguageIn, request: Request, caller: AnyCaller) -> dict[str, Any]:
    caller.session.language = body.language
    return me(web_state(request), caller.session, caller.operator)


@router.post("/logout", summary="Log out (a badge session also ends the floor session on its device)")
async def do_logout(request: Request, response: Response, caller: AnyCaller) -> dict[str, Any]:
    web = web_state(request)
    s = caller.session
    if s.kind == "badge" and s.device_id:
        at = web.service.at()
        device = s.device_id
        await web.service.execute(lambda f, c: logout(f, c, device, "manual", at))
    web.sessions.drop(s)
    clear_cookie(web, response)
    return {"ok": True}
