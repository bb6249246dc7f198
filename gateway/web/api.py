"""The FastAPI application: the pages, the JSON API under /api/v1 (schema at /api/v1/openapi.json),
/healthz and /metrics. Built by the web server part with the running App (`gw`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway import __version__
from gateway.web import errors, pages, routes_auth, routes_pack, routes_pda, routes_supervisor, routes_tech
from gateway.web.guard import Guard
from gateway.web.state import WebState

DESCRIPTION = """Floorgate's own pages and API. Log in with `POST /api/v1/auth/badge` (PDA, packing) or
`POST /api/v1/auth/login` (supervisor, technician); the session is an HttpOnly cookie, and every
state-changing request carries the session's CSRF token (from the login answer or `GET /api/v1/auth/me`)
in `X-CSRF-Token`. Errors are `{"error": {"code", "message"}}`."""


def create_app(gw: Any) -> FastAPI:
    api = FastAPI(title="Floorgate", version=__version__, description=DESCRIPTION,
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None)
    api.state.web = WebState(gw)
    errors.install(api)
    for module in (routes_auth, routes_pda, routes_pack, routes_supervisor, routes_tech, pages):
        api.include_router(module.router)
    api.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    api.add_middleware(Guard)
    return api
