"""The packing station page API: scans through the one scan pipeline at the station, the station's view
(expected items ticking off, weight and tolerance, the result and the SSCC), and label reprints."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import StreamingResponse

from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.scanning import handle_scan
from gateway.web.auth import PACK_ROLES, Caller, Require, check
from gateway.web.errors import ApiError
from gateway.web.models import STATION_ID, ReprintIn, ScanIn
from gateway.web.ops import outcome_answer
from gateway.web.routes_pda import count_scan, scan_input
from gateway.web.state import WebState, web_state
from gateway.web.views import has_scale, pack, printers_of

router = APIRouter(prefix="/api/v1/pack", tags=["packing"])
PACK = Require(*PACK_ROLES, badge_at="pack")
PackCaller = Annotated[Caller, Depends(PACK)]
Station = Annotated[str, Path(pattern=STATION_ID, description="packing station id, e.g. pack-1")]


@router.get("/{station}/view", summary="The station's order, expected items, weight, last result and SSCC")
async def view(station: Station, request: Request, caller: PackCaller) -> dict[str, Any]:
    return pack(web_state(request), station)


@router.get("/{station}/stream", summary="Server-sent events: the station view whenever it changes")
async def stream(station: Station, request: Request, caller: PackCaller) -> StreamingResponse:
    web = web_state(request)

    def build() -> dict[str, Any] | None:
        try:
            check(web, request, frozenset(PACK_ROLES), "pack")
        except ApiError:
            return None
        return web.live.cached("pack:" + station, lambda: pack(web, station))
    return web.live.stream(build)


@router.post("/{station}/scan", summary="A scan at the station: the order or tote, a carton, then every item")
async def scan(station: Station, body: ScanIn, request: Request, caller: PackCaller) -> dict[str, Any]:
    web = web_state(request)
    t0 = time.monotonic()
    s = scan_input(caller.session.device_id or "", station, body.text)
    at = web.service.at()
    scale = has_scale(web, station)

    def fn(floor: Floor, change: Change) -> dict[str, Any]:
        return outcome_answer(handle_scan(floor, change, s, at, scale))
    answer, replayed = await web.actions.run(caller.operator_id, request.url.path, body, fn)
    count_scan(web, answer, replayed, t0)
    if not replayed:
        web.live.station_results[station] = {"ok": answer["ok"], "message": answer["message"],
                                             "code": answer["code"], "ts": at.ts, "source": "page"}
        web.live.bump()
    return {**answer, "action_id": body.action_id, "replayed": replayed}


async def _last_parcel(web: WebState, station: str, sscc: str | None) -> dict[str, Any] | None:
    sql = ("SELECT order_id, body FROM events WHERE type = 'pack.verified' AND "
           "json_extract(body, '$.data.station') = ?")
    args: list[Any] = [station]
    if sscc is not None:
        sql += " AND json_extract(body, '$.data.sscc') = ?"
        args.append(sscc)
    rows = list(await web.service.journal.reader.execute_fetchall(sql + " ORDER BY seq DESC LIMIT 1", args))
    if not rows:
        return None
    data = json.loads(rows[0][1]).get("data", {})
    return {"sscc": data.get("sscc"), "order_id": rows[0][0], "carton": data.get("carton"),
            "weight_g": data.get("weight_g"), "items": sum(int(i.get("qty", 0)) for i in data.get("items", []))}


@router.post("/{station}/reprint", summary="Print the station's last label (or the one of `sscc`) again")
async def reprint(station: Station, body: ReprintIn, request: Request,
                  caller: PackCaller) -> dict[str, Any]:
    web = web_state(request)
    printers = printers_of(web, station)
    if not printers:
        raise ApiError(409, "conflict", f"no label printer is configured for station {station} ([[printers]])")
    parcel = await _last_parcel(web, station, body.sscc)
    if parcel is None:
        what = f"SSCC {body.sscc}" if body.sscc else "a packed parcel"
        raise ApiError(404, "not_found", f"{what} from station {station} is not in the event log")
    for p in printers:
        p.reprint(parcel)
    at = web.service.at()
    device = caller.session.device_id

    def audit(floor: Floor, change: Change) -> None:
        change.audit.append({"ts": at.ts, "kind": "reprint", "device_id": device, "operator_id": caller.operator_id,
                             "order_id": parcel["order_id"], "raw": parcel["sscc"], "result": "ok",
                             "message": f"label {parcel['sscc']} sent again to {len(printers)} printer(s)"})
    await web.service.execute(audit)
    return {"ok": True, "message": f"label {parcel['sscc']} sent to the printer again", "sscc": parcel["sscc"],
            "order_id": parcel["order_id"]}
