"""The domain's answer to a scan or a key press: what the person is told (and the device shows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Outcome:
    ok: bool
    code: str | None = None  # a SPEC `scan.rejected` code when refused
    message: str = ""  # plain words for the person
    kind: str = ""  # what the scan was (badge, item, ...)
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def good(cls, message: str, kind: str = "", **detail: Any) -> Outcome:
        return cls(True, None, message, kind, detail)

    @classmethod
    def bad(cls, code: str, message: str, kind: str = "", **detail: Any) -> Outcome:
        return cls(False, code, message, kind, detail)


class Refused(Exception):
    """A scan or action refused with a SPEC code; raised before anything changed."""

    def __init__(self, code: str, message: str, *, picker_error: bool = True, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        # False where the floor changed under the picker (their order held or cancelled): such a refusal does not
        # count against their health index, which had opened the breaker of a picker who did nothing wrong.
        self.picker_error = picker_error


def attempt(change: Any, fn: Any) -> Outcome:
    """Run `fn(effect)` on a fresh change; on `Refused`, keep only its signals (the error light) and return
    the refusal as an Outcome. Anything it recorded is added to `change` only when it succeeded."""
    from gateway.domain.change import Change

    effect = Change(cmd_id=change.cmd_id)
    try:
        out: Outcome = fn(effect)
    except Refused as e:
        if effect.changed_state:
            raise RuntimeError(f"refused ({e.code}) after changing state: a bug") from e
        change.signals.extend(effect.signals)
        return Outcome.bad(e.code, e.message, **e.detail)
    change.absorb(effect)
    return out
