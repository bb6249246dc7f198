"""The commands of SPEC §1 as typed, validated values.

JSON from the hub is parsed into these models before anything else looks at it; the JSON Schemas shipped
for integrators are generated from them (`floorgate schemas`). Unknown fields are ignored so a newer hub can
talk to an older gateway; wrong types are refused (`invalid_payload`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.clock import rfc3339
from gateway.domain.gtin import normalize_gtin

ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"
BUS_ID = r"^[a-z0-9][a-z0-9_-]{0,26}$"
KEY = r"^[A-Za-z0-9][A-Za-z0-9_.:/@#+-]{0,63}$"  # order, SKU, operator and sync ids

Key = Annotated[str, Field(pattern=KEY)]
Id = Annotated[str, Field(pattern=ID)]
Code = Annotated[str, Field(min_length=1, max_length=128)]


class Strict(BaseModel):
    # allow_inf_nan=False: a second guard behind loads_strict, for commands made in-process (tests, the bulk
    # worker's re-reads): a float field never takes a value the journal's JSON cannot hold.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, allow_inf_nan=False)


class PackGtinItem(Strict):
    gtin: str
    qty: Annotated[int, Field(ge=1, le=100_000)]

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, v: str) -> str:
        return normalize_gtin(v)


class SkuItem(Strict):
    sku: Key
    gtins: list[str] = []
    pack_gtins: list[PackGtinItem] = []
    description: Annotated[str, Field(max_length=500)] = ""
    unit_weight_g: Annotated[float, Field(ge=0)] | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    min_shelf_life_days: Annotated[int, Field(ge=0, le=36500)] = 0
    serial_tracked: bool = False
    cold_chain: bool = False

    @field_validator("gtins")
    @classmethod
    def _gtins(cls, v: list[str]) -> list[str]:
        return [normalize_gtin(g) for g in v]


class LightItem(Strict):
    bus: Annotated[str, Field(pattern=BUS_ID)]
    unit: Annotated[int, Field(ge=1, le=247)]


class LocationItem(Strict):
    code: Code
    zone: Id
    sku: Key | None = None
    light: LightItem | None = None


Role = Literal["picker", "packer", "supervisor", "technician"]


class OperatorItem(Strict):
    operator_id: Key
    name: Annotated[str, Field(max_length=200)] = ""
    badge: Annotated[str, Field(max_length=128)] = ""
    roles: list[Role] = []
    zones: list[Id] = []
    password_hash: Annotated[str, Field(pattern=r"^\$(argon2(id|i|d)|2[aby])\$")] | None = None
    language: Literal["en", "zh"] = "en"


class CartonItem(Strict):
    code: Code
    tare_g: Annotated[float, Field(ge=0)] = 0.0


class PriorityIn(Strict):
    value_cents: Annotated[int, Field(ge=0)] = 0
    customer_level: Annotated[int, Field(ge=0, le=1000)] | str = 0
    cold_chain: bool = False
    cutoff_at: str | None = None

    @field_validator("cutoff_at")
    @classmethod
    def _cutoff(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"cutoff_at {v!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise ValueError(f"cutoff_at {v!r} has no UTC offset")
        return rfc3339(dt)

    @property
    def level(self) -> int:
        """Customer level as a number; named levels of common hubs are ranked, others count as 0."""
        if isinstance(self.customer_level, int):
            return self.customer_level
        names = {"standard": 0, "silver": 1, "gold": 2, "platinum": 3, "vip": 4}
        text = self.customer_level.strip().lower()
        return int(text) if text.isdigit() else names.get(text, 0)


class LineIn(Strict):
    line_no: Annotated[int, Field(ge=1, le=100_000)]
    sku: Key
    qty: Annotated[int, Field(ge=1, le=9999)]


class OrderIn(Strict):
    order_id: Key
    channel: Annotated[str, Field(max_length=64)] = ""
    priority: PriorityIn = PriorityIn()
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=10_000)]

    @model_validator(mode="after")
    def _unique_lines(self) -> OrderIn:
        nos = [ln.line_no for ln in self.lines]
        if len(set(nos)) != len(nos):
            raise ValueError("line_no values must be unique within an order")
        return self


class Command(Strict):
    cmd_id: Annotated[str, Field(min_length=1, max_length=128)]


class BulkPart(Command):
    sync_id: Key
    part: Annotated[int, Field(ge=1)]
    parts: Annotated[int, Field(ge=1, le=10_000)]

    @model_validator(mode="after")
    def _part_in_range(self) -> BulkPart:
        if self.part > self.parts:
            raise ValueError(f"part {self.part} is beyond parts {self.parts}")
        return self


class MasterdataSync(BulkPart):
    mode: Literal["replace", "merge"]
    skus: list[Any] | None = None
    locations: list[Any] | None = None
    operators: list[Any] | None = None
    cartons: list[Any] | None = None


class OrderUpsert(Command):
    order: OrderIn


class OrderUpsertBatch(BulkPart):
    orders: list[Any]


class OrderCancel(Command):
    order_id: Key
    reason: Annotated[str, Field(max_length=500)] = ""


HoldScope = Literal["order", "zone", "operator", "all"]


class HoldCommand(Command):
    scope: HoldScope
    id: Annotated[str, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _id_given(self) -> HoldCommand:
        if self.scope != "all" and not self.id:
            raise ValueError(f"scope {self.scope!r} needs an id")
        return self

    @property
    def target(self) -> str:
        return (self.id or "*") if self.scope == "all" else str(self.id)


class DispatchHold(HoldCommand):
    pass


class DispatchRelease(HoldCommand):
    pass


class PackReview(Command):
    order_id: Key
    decision: Literal["approve", "repack"]
    operator_id: Key


class SyncAck(Command):
    up_to_seq: Annotated[int, Field(ge=0)]
    journal: str


class SyncReplay(Command):
    journal: str
    from_seq: Annotated[int, Field(ge=1)]
    to_seq: Annotated[int, Field(ge=1)] | None = None


class SyncSnapshot(Command):
    pass


COMMANDS: dict[str, type[Command]] = {
    "masterdata.sync": MasterdataSync,
    "order.upsert": OrderUpsert,
    "order.upsert_batch": OrderUpsertBatch,
    "order.cancel": OrderCancel,
    "dispatch.hold": DispatchHold,
    "dispatch.release": DispatchRelease,
    "pack.review": PackReview,
    "sync.ack": SyncAck,
    "sync.replay": SyncReplay,
    "sync.snapshot": SyncSnapshot,
}
BULK_COMMANDS = ("masterdata.sync", "order.upsert_batch")
MASTERDATA_LISTS: dict[str, type[Strict]] = {
    "skus": SkuItem, "locations": LocationItem, "operators": OperatorItem, "cartons": CartonItem,
}
