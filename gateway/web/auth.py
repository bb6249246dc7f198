"""Who may call what. Every route but the few public ones depends on a `Require`: the session cookie must be
valid, the operator must still be in master data with one of the route's roles (read on every request,
so a role taken away applies at once), a badge session's floor session must still be open, and a
state-changing request must carry the session's CSRF token in `X-CSRF-Token`.

The cookie is HttpOnly and SameSite=Strict (Secure under HTTPS); together with the token header, which a
cross-site form cannot set, a forged request from another site gets nowhere.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request, Response

from gateway.domain.model import Operator
from gateway.web.errors import ApiError
from gateway.web.sessions import WebSession
from gateway.web.state import WebState, web_state

COOKIE = "fg_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROLES = ("picker", "packer", "supervisor", "technician")
PDA_ROLES = ("picker", "supervisor")
PACK_ROLES = ("packer", "supervisor")
SUPERVISOR = ("supervisor",)
TECH_ROLES = ("technician", "supervisor")
PASSWORD_ROLES = ("supervisor", "technician")


@dataclass(frozen=True, slots=True)
class Caller:
    session: WebSession
    operator: Operator

    @property
    def operator_id(self) -> str:
        return self.operator.operator_id

    @property
    def language(self) -> str:
        return self.session.language or self.operator.language or "en"


def who(op: Operator) -> str:
    return op.name or op.operator_id


class Require:
    """A FastAPI dependency; `roles` is read by the route-table security test."""

    def __init__(self, *roles: str, badge_at: str | None = None) -> None:
        self.roles = frozenset(roles)
        self.badge_at = badge_at  # "pick": a PDA badge session; "pack": a badge session at the path's station

    async def __call__(self, request: Request) -> Caller:
        web = web_state(request)
        return check(web, request, self.roles, self.badge_at)


def check(web: WebState, request: Request, roles: frozenset[str], badge_at: str | None) -> Caller:
    s = web.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        raise ApiError(401, "unauthenticated", "log in first (no session, or it has expired)")
    floor = web.service.floor
    op = floor.md.operators.get(s.operator_id)
    if op is None:
        web.sessions.drop(s)
        raise ApiError(401, "unauthenticated", f"operator {s.operator_id} is no longer in master data")
    if s.kind == "badge":
        fs = floor.sessions.get(s.device_id or "")
        if fs is None or fs.operator_id != s.operator_id:
            web.sessions.drop(s)
            raise ApiError(401, "unauthenticated", "you were logged out on this device (badge, idle or another "
                                                   "login): scan your badge again")
    if request.method in UNSAFE and not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(),
                                                            s.csrf.encode()):
        raise ApiError(403, "forbidden", "missing or wrong X-CSRF-Token header (reload the page)")
    if not set(op.roles) & roles:
        raise ApiError(403, "forbidden", f"{who(op)} has none of the roles this needs ({', '.join(sorted(roles))})")
    if badge_at == "pick" and not (s.kind == "badge" and s.station == "pick"):
        raise ApiError(403, "forbidden", "this works only on the PDA page after a badge scan")
    if badge_at == "pack":
        station = request.path_params.get("station")
        if not (s.kind == "badge" and s.station not in (None, "pick") and s.station == station):
            raise ApiError(403, "forbidden", f"this works only on the page of packing station {station} after a "
                                             "badge scan there")
    return Caller(s, op)


def set_cookie(web: WebState, response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(web.sessions.ttl_s), path="/", httponly=True,
                        samesite="strict", secure=web.secure_cookies)


def clear_cookie(web: WebState, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=web.secure_cookies)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
