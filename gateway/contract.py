"""The outbound half of the MQTT contract (SPEC §1) as models: event envelopes and every event's `data`,
status, snapshot, telemetry and command results. Inbound commands live in `gateway.domain.commands`.

The JSON Schemas shipped in `schemas/` are generated from these models and from the command models
(`floorgate schemas --out schemas`); a test fails if the checked-in files drift from the code, and the
end-to-end tests validate every event the hub receives against them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from gateway.domain.commands import COMMANDS

Ts = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
                          description="UTC RFC 3339 with milliseconds and Z")]
Gtin14 = Annotated[str, Field(pattern=r"^\d{14}$")]
Date = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Score = Annotated[float, Field(ge=0, le=100)]
Kind = Literal["scanner", "ptl", "scale", "bus", "broker", "printer"]
# A member the gateway leaves out when it has no value (SPEC: "`cmd_id` is present when a command caused the
# event"), never sends as null: the schemas say so, so that a hub validating against them catches a null.
Absent = SkipJsonSchema[None]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LinesData(Out):
    lines: int


class StateChangedData(Out):
    from_: str = Field(alias="from")
    to: str
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class CancelledData(Out):
    reason: str


class OperatorSessionData(Out):
    operator_id: str
    device_id: str
    reason: Literal["badge", "idle", "replaced", "manual"] | Absent = None


class OperatorData(Out):
    operator_id: str


class TaskAssignedData(Out):
    task_id: str
    operator_id: str
    zone: str
    lines: list[int]
    score: Score
    reason: str


class TaskReassignedData(Out):
    task_id: str
    from_operator: str
    to_operator: str
    reason: str


class TaskEscalatedData(Out):
    task_id: str
    level: Literal[1, 2]
    reason: str


class TaskData(Out):
    task_id: str
    operator_id: str | Absent = None


class ToteBoundData(Out):
    task_id: str
    tote: str


class LineConfirmedData(Out):
    task_id: str
    line_no: int
    sku: str
    gtin: Gtin14 | None = None
    lot: str | None = None
    expiry: Date | None = None
    serials: list[str]
    qty: int
    location: str | None = None
    operator_id: str
    via: Literal["ptl_button", "scan", "pda"]


class LineShortData(Out):
    task_id: str
    line_no: int
    qty_picked: int
    qty_missing: int
    operator_id: str
    reason: Literal["shortage_key", "adjusted", "pda"]


class LineUndoneData(Out):
    task_id: str
    line_no: int
    qty: int
    operator_id: str
    by: str


ScanCode = Literal["unknown_barcode", "invalid_barcode", "wrong_item", "wrong_location", "wrong_lot",
                   "lot_required", "expired", "short_shelf_life", "serial_repeated", "over_scan", "not_expected",
                   "order_not_ready", "not_logged_in", "not_allowed", "no_task"]


class ScanRejectedData(Out):
    device_id: str
    operator_id: str | Absent = None
    code: ScanCode
    reason: str
    raw: str


class PackItem(Out):
    gtin: Gtin14
    lot: str | None = None
    serial: str | None = None
    qty: int


class PackVerifiedData(Out):
    station: str
    operator_id: str
    tote: str | None = None
    items: list[PackItem]
    carton: str | None = None
    weight_g: float | None
    expected_g: float
    sscc: Annotated[str, Field(pattern=r"^\d{18}$")]


class MissingItem(Out):
    sku: str
    gtin: Gtin14 | None = None
    lot: str | None = None
    serial: str | None = None
    qty: Annotated[int, Field(ge=1)]


class ReviewRequiredData(Out):
    """`weight_deviation` (SPEC §1): `actual_g` and `deviation_pct`. `items_missing` (an addition): the packer
    reported that the parcel cannot be completed; `missing` lists the units still wanted and `expected_g` is the
    weight of what was verified."""

    station: str
    reason: Literal["weight_deviation", "items_missing"]
    expected_g: float
    actual_g: float | None = None
    deviation_pct: float | None = None
    missing: list[MissingItem] | None = None

    @model_validator(mode="after")
    def _fields_of_reason(self) -> ReviewRequiredData:
        if self.reason == "weight_deviation" and (self.actual_g is None or self.deviation_pct is None
                                                  or self.missing is not None):
            raise ValueError("weight_deviation needs actual_g and deviation_pct, and no missing")
        if self.reason == "items_missing" and not self.missing:
            raise ValueError("items_missing needs missing")
        return self


class ReviewResolvedData(Out):
    decision: Literal["approve", "repack"]
    operator_id: str


class BreakerData(Out):
    operator_id: str
    scores: list[float]


class HoldData(Out):
    scope: Literal["order", "zone", "operator", "all"]
    id: str
    by: str


class DeviceData(Out):
    device_id: str
    kind: Kind
    detail: str


class AlarmData(Out):
    alarm_id: str
    code: str
    severity: Literal["info", "warning", "critical"]
    message: str


class BulkProgressData(Out):
    sync_id: str
    done: int
    total: int
    failed: int
    eta_s: float | None


EVENT_DATA: dict[str, type[Out]] = {
    "order.received": LinesData, "order.updated": LinesData, "order.state_changed": StateChangedData,
    "order.cancelled": CancelledData,
    "operator.login": OperatorSessionData, "operator.logout": OperatorSessionData,
    "operator.break_started": OperatorData, "operator.break_ended": OperatorData,
    "task.assigned": TaskAssignedData, "task.reassigned": TaskReassignedData, "task.escalated": TaskEscalatedData,
    "task.completed": TaskData, "task.cancelled": TaskData, "task.reopened": TaskData,
    "tote.bound": ToteBoundData,
    "pick.line_confirmed": LineConfirmedData, "pick.line_short": LineShortData, "pick.line_undone": LineUndoneData,
    "scan.rejected": ScanRejectedData,
    "pack.verified": PackVerifiedData, "pack.review_required": ReviewRequiredData,
    "pack.review_resolved": ReviewResolvedData,
    "dispatch.breaker_opened": BreakerData, "dispatch.breaker_closed": BreakerData,
    "dispatch.held": HoldData, "dispatch.released": HoldData,
    "device.online": DeviceData, "device.offline": DeviceData,
    "alarm.raised": AlarmData, "alarm.cleared": AlarmData,
    "bulk.progress": BulkProgressData,
}


class EventEnvelope(Out):
    v: Literal[1]
    journal: str
    event_id: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]
    seq: Annotated[int, Field(ge=1)]
    type: str
    ts: Ts
    site: str
    gateway: str
    order_id: str | Absent = None
    cmd_id: str | Absent = None
    data: dict[str, Any]


class Status(Out):
    state: Literal["online"]
    site: str
    gateway: str
    version: str
    journal: str
    ts: Ts
    last_seq: int


class LastWill(Out):
    state: Literal["offline"]
    site: str
    gateway: str
    journal: str


class SnapshotOrder(Out):
    order_id: str
    state: str
    updated_seq: int


class Snapshot(Out):
    ts: Ts
    journal: str
    last_seq: int
    orders: list[SnapshotOrder]


class TelemetryDevice(Out):
    device_id: str
    kind: Kind
    online: bool
    errors: int


class TelemetryPicker(Out):
    operator_id: str
    score: Score
    breaker: Literal["closed", "open", "half_open"]
    open_tasks: int


class TelemetrySync(Out):
    pending: int
    acked_seq: int


class Telemetry(Out):
    ts: Ts
    devices: list[TelemetryDevice]
    pickers: list[TelemetryPicker]
    sync: TelemetrySync


class ResultError(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    code: Literal["invalid_payload", "unknown_command", "not_found", "conflict", "replay_unavailable", "too_large",
                  "busy"]
    message: str


class CommandResult(BaseModel):
    """`ok:true` results carry command-specific fields beside these (e.g. `order_id`, `state`)."""

    model_config = ConfigDict(extra="allow", strict=True)
    cmd_id: str | None
    ok: bool
    ts: Ts
    error: ResultError | None = None
    status: Literal["accepted", "done"] | None = None


def validate_event(envelope: dict[str, Any]) -> None:
    """Raise if an event does not follow the contract (used by the end-to-end tests)."""
    env = EventEnvelope.model_validate(envelope)
    model = EVENT_DATA.get(env.type)
    if model is not None:
        model.model_validate(env.data)


def all_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, cmd in sorted(COMMANDS.items()):
        out[f"commands/{name}.json"] = cmd.model_json_schema(by_alias=True)
    for typ, data in sorted(EVENT_DATA.items()):
        schema = EventEnvelope.model_json_schema()
        schema["title"] = f"Event {typ}"
        schema["properties"]["type"] = {"const": typ}
        schema["properties"]["data"] = data.model_json_schema(by_alias=True)
        schema["properties"]["data"].pop("title", None)
        defs = schema["properties"]["data"].pop("$defs", None)
        if defs:
            schema.setdefault("$defs", {}).update(defs)
        out[f"events/{typ}.json"] = schema
    for name, model in (("status", Status), ("last_will", LastWill), ("snapshot", Snapshot),
                        ("telemetry", Telemetry), ("cmd_result", CommandResult)):
        out[f"{name}.json"] = model.model_json_schema(by_alias=True)
    for schema in out.values():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def write_schemas(directory: Path) -> list[Path]:
    written = []
    for rel, schema in all_schemas().items():
        p = directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(p)
    return written
