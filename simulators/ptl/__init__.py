"""PTL bus simulator: the reference firmware's register logic behind a pymodbus server (TCP or RTU on a pty)."""

from .sim import Faults, PtlSimulator

__all__ = ["Faults", "PtlSimulator"]
