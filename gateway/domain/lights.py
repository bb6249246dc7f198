"""Which PTL module shows which line, in whose colour.

A module shows one line at a time; another picker's line on the same module waits, unlit and without a
module, until the first is done (SPEC §4). Pickers sharing a zone are told apart by colour (green, blue,
yellow, magenta, cyan) and then by pattern (steady, then blinking), so ten pickers can share a zone's
lights. The module allocation is derived from the tasks (rebuilt at start-up in assignment order); a
picker's colour slot is stored, so it never changes under their hands after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.floor import Floor, ModuleSlot
from gateway.domain.model import ON_HOLD, TASK_ASSIGNED, TASK_STARTED, Light, Line, Task

COLOURS = ("green", "blue", "yellow", "magenta", "cyan")
PATTERNS = ("steady", "blink")
SLOTS = tuple((c, p) for p in PATTERNS for c in COLOURS)  # ten pickers per zone


@dataclass(frozen=True, slots=True)
class LightJob:
    """What a module should show: a line's remaining quantity in its picker's colour."""

    task_id: str
    line_no: int
    operator_id: str
    qty: int
    colour: str
    pattern: str


def line_module(floor: Floor, line: Line) -> Light | None:
    loc = floor.md.locations.get(line.location) if line.location else None
    return loc.light if loc is not None else None


def _lit(floor: Floor, task: Task) -> bool:
    order = floor.orders.get(task.order_id)
    return task.state in (TASK_ASSIGNED, TASK_STARTED) and order is not None and order.state != ON_HOLD


def claim(floor: Floor, task: Task) -> set[Light]:
    """Put the task's open lines on their modules (or in line for them); returns the modules touched."""
    changed: set[Light] = set()
    order = floor.orders.get(task.order_id)
    if order is None or not _lit(floor, task):
        return changed
    for no in task.line_nos:
        line = order.line(no)
        if line is None or line.done:
            continue
        light = line_module(floor, line)
        if light is None:
            continue
        slot = floor.modules.setdefault(light, ModuleSlot())
        key = (task.task_id, no)
        if slot.owner is None:
            slot.owner = key
        elif slot.owner != key and key not in slot.waiting:
            slot.waiting.append(key)
        changed.add(light)
    return changed


def release(floor: Floor, task_id: str, line_no: int, light: Light | None) -> set[Light]:
    """Take a line off its module; the next waiting line gets it."""
    if light is None:
        return set()
    slot = floor.modules.get(light)
    if slot is None:
        return set()
    key = (task_id, line_no)
    if slot.owner == key:
        slot.owner = slot.waiting.pop(0) if slot.waiting else None
    elif key in slot.waiting:
        slot.waiting.remove(key)
    else:
        return set()
    if slot.owner is None and not slot.waiting:
        del floor.modules[light]
    return {light}


def release_task(floor: Floor, task: Task) -> set[Light]:
    changed: set[Light] = set()
    order = floor.orders.get(task.order_id)
    if order is None:
        return changed
    for no in task.line_nos:
        line = order.line(no)
        if line is not None:
            changed |= release(floor, task.task_id, no, line_module(floor, line))
    return changed


def rebuild_modules(floor: Floor) -> None:
    floor.modules = {}
    active = [t for t in floor.tasks.values() if t.state in (TASK_ASSIGNED, TASK_STARTED)]
    for task in sorted(active, key=lambda t: (t.assigned_at or "", t.task_id)):
        claim(floor, task)


def lights_of(floor: Floor, operator_id: str) -> set[Light]:
    """Every module showing one of this picker's lines (where a wrong scan is signalled with no line in hand)."""
    out = set()
    for light, slot in floor.modules.items():
        if slot.owner is not None:
            task = floor.tasks.get(slot.owner[0])
            if task is not None and task.operator_id == operator_id:
                out.add(light)
    return out


def colour_slot(floor: Floor, change: Change, operator_id: str, zone: str, now: datetime) -> int:
    """The picker's slot in the zone: kept while they have work there, else the lowest free one. With more
    pickers at work in a zone than there are slots, two share one: the least shared, and a supervisor is told
    (they may take each other's lights), until an assignment in the zone finds no slot shared. Called with the
    new task already the picker's. While no slot is shared, no two pickers keep the same one (`_check_shared`
    sees to it when sharing ends), so a kept slot is the picker's alone and is returned without a look at the
    tasks: this runs for every assignment."""
    picker = floor.picker(operator_id)
    shared_before = f"{SHARED_ALARM}:{zone}" in floor.alarms
    if zone in picker.slots and not shared_before:
        return picker.slots[zone]
    active = [t.operator_id for t in floor.tasks.values()
              if t.zone == zone and t.state in (TASK_ASSIGNED, TASK_STARTED) and t.operator_id is not None]
    busy = set(active) - {operator_id}
    used = [floor.pickers[o].slots[zone] for o in busy if o in floor.pickers and zone in floor.pickers[o].slots]
    mine = picker.slots.get(zone)
    if mine is not None and (mine not in used or active.count(operator_id) > 1):
        slot = mine  # nobody else at work shows it, or their lights are lit in it already
    else:
        free = [i for i in range(len(SLOTS)) if i not in used]
        slot = free[0] if free else min(range(len(SLOTS)), key=lambda i: (used.count(i), i))
        # Slots of pickers without work in this zone any more are given back.
        for other in floor.pickers.values():
            if other.operator_id not in busy and other.operator_id != operator_id and other.slots.get(zone) == slot:
                del other.slots[zone]
                change.save("picker", other.operator_id, other)
        picker.slots[zone] = slot
        change.save("picker", operator_id, picker)
    if shared_before or slot in used:
        _check_shared(floor, change, zone, busy | {operator_id}, now)
    return slot


SHARED_ALARM = "colours_shared"


def _check_shared(floor: Floor, change: Change, zone: str, busy: set[str], now: datetime) -> None:
    """Raise or clear the zone's alarm for pickers at work there (`busy`) who show the same colour and
    pattern."""
    holders: dict[int, list[str]] = {}
    for o in sorted(busy):
        picker = floor.pickers.get(o)
        if picker is not None and zone in picker.slots:
            holders.setdefault(picker.slots[zone], []).append(o)
    shared = {i: ops for i, ops in holders.items() if len(ops) > 1}
    alarm_id = f"{SHARED_ALARM}:{zone}"
    if not shared:
        # A picker not at work here who kept a slot that another took while both were at work gives it back:
        # with the alarm cleared, colour_slot trusts a kept slot (that picker back at work showed the other's).
        for p in floor.pickers.values():
            slot = p.slots.get(zone)
            if slot is not None and p.operator_id not in busy and slot in holders:
                del p.slots[zone]
                change.save("picker", p.operator_id, p)
        clear_alarm(floor, change, alarm_id, f"zone {zone}: every picker at work has a colour of their own again")
        return
    # Raised once while it lasts: an alarm raised again with a new text is a new `alarm.raised` (and a webhook
    # or mail), and naming who shares changed the text at nearly every assignment (5,953 raises in an
    # 8,000-order day). The names are those of when it began.
    if alarm_id in floor.alarms:
        return
    pairs = "; ".join(f"{', '.join(ops)} show {SLOTS[i][0]} ({SLOTS[i][1]})" for i, ops in sorted(shared.items()))
    raise_alarm(floor, change, alarm_id, SHARED_ALARM, "warning",
                f"zone {zone}: more pickers at work than the {len(SLOTS)} light colours, so some share one (when "
                f"it began: {pairs}); they may take each other's lights", now)


def desired(floor: Floor, light: Light) -> LightJob | None:
    """What `light` should show now (None: off)."""
    slot = floor.modules.get(light)
    if slot is None or slot.owner is None:
        return None
    task = floor.tasks.get(slot.owner[0])
    order = floor.orders.get(task.order_id) if task is not None else None
    line = order.line(slot.owner[1]) if order is not None else None
    if task is None or line is None or task.operator_id is None or line.done or not _lit(floor, task):
        return None
    picker = floor.pickers.get(task.operator_id)
    index = picker.slots.get(task.zone, 0) if picker is not None else 0
    colour, pattern = SLOTS[index % len(SLOTS)]
    return LightJob(task.task_id, line.line_no, task.operator_id, line.remaining, colour, pattern)
