"""Pick-to-light bus driver (SPEC §4): Modbus RTU/TCP via pymodbus, one `PtlBus` per bus.

Knows registers and modules, nothing of orders. Typical use by a device coordinator::

    bus = PtlBus(BusSettings.from_config(cfg), on_key=handle_key, on_health=handle_health)
    await bus.start()
    bus.set_state(7, ModuleState.job(3, Colour.GREEN, Pattern.STEADY, token=4711))
"""

from .bus import MonotonicClock, PtlBus
from .codec import Colour, Command, CommSettings, Identity, Mode, Parity, Pattern, Status
from .errors import BadReply, BusNotRunning, ExceptionReply, LinkDown, ModuleMiss, NoResponse, PtlError
from .model import (
    BusLink,
    BusSettings,
    BusStats,
    HealthEvent,
    KeyKind,
    KeyPress,
    ModuleFault,
    ModuleOffline,
    ModuleOnline,
    ModuleState,
    ModuleStats,
)
from .scheduler import ModuleView

__all__ = [
    "BadReply",
    "BusLink",
    "BusNotRunning",
    "BusSettings",
    "BusStats",
    "Colour",
    "CommSettings",
    "Command",
    "ExceptionReply",
    "HealthEvent",
    "Identity",
    "KeyKind",
    "KeyPress",
    "LinkDown",
    "Mode",
    "ModuleFault",
    "ModuleMiss",
    "ModuleOffline",
    "ModuleOnline",
    "ModuleState",
    "ModuleStats",
    "ModuleView",
    "MonotonicClock",
    "NoResponse",
    "Parity",
    "Pattern",
    "PtlBus",
    "PtlError",
    "Status",
]
