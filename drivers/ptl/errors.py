"""Typed failures of a PTL bus: each says which bus and unit, and what a technician can do about it.

A miss (no reply, exception reply, malformed reply) is a `ModuleMiss`; the scheduler counts it against
the module's health and never reads anything into it. A link failure (TCP connection or serial port gone)
is a `LinkDown` and concerns every module on the bus at once.
"""

from __future__ import annotations


class PtlError(Exception):
    """Base of every PTL driver error."""


class LinkDown(PtlError):
    """The bus itself is unreachable: TCP connection refused or closed, serial port missing or unplugged."""


class BusNotRunning(PtlError):
    """A technician operation was asked of a bus whose run loop is not running."""


class ModuleMiss(PtlError):
    """One transaction with one module failed; counts as a miss, never as a key press."""

    def __init__(self, bus_id: str, unit: int, message: str) -> None:
        super().__init__(f"bus {bus_id} unit {unit}: {message}")
        self.bus_id = bus_id
        self.unit = unit


class NoResponse(ModuleMiss):
    """Silence within the timeout: module unpowered, wrong unit id, wrong baud rate, or a broken A/B pair."""


class ExceptionReply(ModuleMiss):
    """The module answered with a Modbus exception (the request was refused)."""

    def __init__(self, bus_id: str, unit: int, function_code: int, exception_code: int) -> None:
        names = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
                 6: "device busy", 11: "gateway target failed to respond"}
        what = names.get(exception_code, "unknown exception")
        super().__init__(bus_id, unit, f"exception {exception_code} ({what}) to function {function_code}")
        self.function_code = function_code
        self.exception_code = exception_code


class BadReply(ModuleMiss):
    """A reply that does not fit the request (wrong function, wrong length, undecodable, CRC error)."""
