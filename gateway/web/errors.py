"""One error shape for the whole API, `{"error": {"code", "message", ...}}`, like the hub's command results:
a page or a script can always show `message` to a person and branch on `code`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.domain.errors import DomainError
from gateway.journal import JournalError

log = logging.getLogger("floorgate.web")

STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                422: "invalid_payload", 429: "rate_limited", 503: "busy"}
DOMAIN_STATUS = {"not_found": 404, "conflict": 409, "invalid_payload": 422, "busy": 503, "too_large": 413}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(error_body(e.code, e.message, **e.extra), e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        message = e.detail if isinstance(e.detail, str) else "request refused"
        if e.status_code == 404 and message == "Not Found":
            message = f"no such page or API route: {request.url.path}"
        return JSONResponse(error_body(STATUS_CODES.get(e.status_code, "error"), message), e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        fields = [{"field": _where(err.get("loc", ())), "problem": str(err.get("msg", "invalid"))}
                  for err in e.errors()[:20]]
        first = fields[0] if fields else {"field": "body", "problem": "invalid"}
        return JSONResponse(error_body("invalid_payload", f"{first['field']}: {first['problem']}", fields=fields),
                            422)

    @app.exception_handler(DomainError)
    async def domain(request: Request, e: DomainError) -> JSONResponse:
        return JSONResponse({"error": e.as_error()}, DOMAIN_STATUS.get(e.code, 409))

    @app.exception_handler(JournalError)
    async def journal(request: Request, e: JournalError) -> JSONResponse:
        log.warning("web action not stored", extra={"fields": {"error": str(e)}})
        return JSONResponse(error_body("busy", f"not stored ({e}); nothing changed: try again"), 503,
                            headers={"Retry-After": "2"})
