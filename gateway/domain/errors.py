"""Typed domain errors. Each maps to a command result code of SPEC §1."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal: nothing was changed. `code` is a SPEC result code, `extra` goes into the error object."""

    code = "conflict"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class InvalidPayload(DomainError):
    code = "invalid_payload"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Busy(DomainError):
    """Refused for lack of room (storage cap): retry later."""

    code = "busy"
