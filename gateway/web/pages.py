"""The pages: plain HTML shells (no build step) whose small scripts log in and fetch their data from the
JSON API. The shells hold no data, so they are served to anyone; every figure comes from an API route that
checks the session and the role."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from gateway.web.errors import ApiError
from gateway.web.metrics import CONTENT_TYPE, render
from gateway.web.models import STATION_ID
from gateway.web.state import web_state
from gateway.web.views import check_packing_station

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
router = APIRouter()
# Routes that answer without a session, by design (the security test checks every other route refuses).
PUBLIC = {("GET", "/"), ("GET", "/pda"), ("GET", "/pack/{station}"), ("GET", "/supervisor"),
          ("GET", "/technician"), ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
          ("POST", "/api/v1/auth/badge"), ("POST", "/api/v1/auth/login")}


@lru_cache(maxsize=8)
def _page(name: str) -> str:
    return (TEMPLATES / f"{name}.html").read_text(encoding="utf-8")


def _html(name: str) -> HTMLResponse:
    return HTMLResponse(_page(name), headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    return _html("index")


@router.get("/pda", include_in_schema=False)
async def pda_page() -> HTMLResponse:
    return _html("pda")


@router.get("/pack/{station}", include_in_schema=False)
async def pack_page(station: str, request: Request) -> HTMLResponse:
    if not re.match(STATION_ID, station) or station == "pick":
        raise ApiError(404, "not_found", f"{station!r} is not a packing station id")
    check_packing_station(web_state(request), station)
    return _html("pack")


@router.get("/supervisor", include_in_schema=False)
async def supervisor_page() -> HTMLResponse:
    return _html("supervisor")


@router.get("/technician", include_in_schema=False)
async def technician_page() -> HTMLResponse:
    return _html("technician")


@router.get("/healthz", tags=["health"], summary="Liveness: journal integrity, last seq, MQTT link")
async def healthz(request: Request) -> dict[str, Any]:
    gw = web_state(request).gw
    j = gw.journal
    # `storage` (ok | warning | full), from the floor in memory: while the disk is full, the storage_full alarm
    # cannot be stored (nothing can), so a monitor reading only alarms saw nothing wrong.
    return {"ok": j is not None and j.integrity_ok, "last_seq": j.last_seq if j else None,
            "mqtt": bool(gw.link and gw.link.mqtt.connected.is_set()),
            "storage": gw.service.floor.storage if gw.service is not None else None}


@router.get("/metrics", tags=["health"], summary="Prometheus text exposition",
            response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(render(web_state(request)), media_type=CONTENT_TYPE)
