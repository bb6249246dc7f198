"""The FastAPI application: pages and the JSON API under /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway import __version__


def create_app(gw: Any) -> FastAPI:
    api = FastAPI(title="Floorgate", version=__version__, openapi_url="/api/v1/openapi.json", docs_url="/api/docs",
                  redoc_url=None)

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        j = gw.journal
        return {"ok": j is not None and j.integrity_ok, "last_seq": j.last_seq if j else None,
                "mqtt": bool(gw.link and gw.link.mqtt.connected.is_set())}

    return api
