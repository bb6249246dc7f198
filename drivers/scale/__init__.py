"""Serial scales (MT-SICS request/reply, or a continuous stream) for the packing stations."""

from drivers.scale.protocol import (
    GRAMS_PER_UNIT,
    ScaleBusy,
    ScaleError,
    ScaleOffline,
    ScaleOverload,
    ScaleTimeout,
    ScaleUnderload,
    Weighing,
    parse_line,
    to_grams,
)
from drivers.scale.serial_scale import Backoff, ScaleMode, SerialScale, StatusCallback

__all__ = [
    "GRAMS_PER_UNIT",
    "Backoff",
    "ScaleBusy",
    "ScaleError",
    "ScaleMode",
    "ScaleOffline",
    "ScaleOverload",
    "ScaleTimeout",
    "ScaleUnderload",
    "SerialScale",
    "StatusCallback",
    "Weighing",
    "parse_line",
    "to_grams",
]
