"""Request bodies of the JSON API. Unknown fields are refused, so a typo is an error, not a silent default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config import ID_PATTERN
from gateway.web.actions import ACTION_ID

ActionId = Annotated[str, Field(pattern=ACTION_ID, description="made by the page, unique per action: a retry "
                                                                  "with the same id gets the first answer")]
Key = Annotated[str, Field(min_length=1, max_length=128)]
LineNo = Annotated[int, Field(ge=1, le=100_000)]
Qty = Annotated[int, Field(ge=0, le=9999)]
Language = Literal["en", "zh"]
STATION_ID = ID_PATTERN
MODULE_ID = r"^[a-z0-9][a-z0-9_-]{0,26}-u[0-9]{3}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BadgeLogin(Body):
    badge: Annotated[str, Field(min_length=1, max_length=512)]
    station: Annotated[str, Field(pattern=STATION_ID, description='"pick" for the PDA, else a packing station')]
    language: Language | None = None


class PasswordLogin(Body):
    operator_id: Key
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LanguageIn(Body):
    language: Language


class ScanIn(Body):
    action_id: ActionId
    text: Annotated[str, Field(min_length=1, max_length=16384, description="the scanned characters; an AIM "
                                                                            "prefix such as ]C1 is recognised")]


class ConfirmIn(Body):
    action_id: ActionId
    task_id: Key
    line_no: LineNo
    qty: Qty


class ShortIn(Body):
    action_id: ActionId
    task_id: Key
    line_no: LineNo
    qty_picked: Qty


class LineRef(Body):
    action_id: ActionId
    task_id: Key
    line_no: LineNo


class BreakIn(Body):
    action_id: ActionId
    on: bool


class ReprintIn(Body):
    action_id: ActionId
    sscc: Annotated[str, Field(pattern=r"^[0-9]{18}$")] | None = None


class HoldIn(Body):
    action_id: ActionId
    scope: Literal["order", "zone", "operator", "all"]
    id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _id_given(self) -> HoldIn:
        if self.scope != "all" and not self.id:
            raise ValueError(f"scope {self.scope!r} needs an id")
        return self

    @property
    def target(self) -> str:
        return (self.id or "*") if self.scope == "all" else str(self.id)


class ReviewIn(Body):
    action_id: ActionId
    decision: Literal["approve", "repack"]


class ReassignIn(Body):
    action_id: ActionId
    operator_id: Key


class DeviceAction(Body):
    action_id: ActionId | None = None


Answer = dict[str, Any]
