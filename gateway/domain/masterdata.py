"""Master data (SKUs, locations, operators, cartons) from the hub.

Each item is validated on its own: a bad item is skipped and reported, never the whole list. `merge`
updates items in place; `replace` builds a complete new generation beside the live one and swaps it in
at once, so the floor sees the old master data or the new, never half of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.domain.change import Change
from gateway.domain.commands import CartonItem, LocationItem, OperatorItem, SkuItem
from gateway.domain.floor import Floor, MasterData, ModuleSlot
from gateway.domain.lights import claim, line_module, release
from gateway.domain.model import TASK_ASSIGNED, TASK_STARTED, Carton, Light, Location, Operator, Sku

# Applied in this order so that locations can refer to SKUs of the same sync.
LIST_ORDER = ("skus", "cartons", "operators", "locations")
KIND = {"skus": "sku", "locations": "location", "operators": "operator", "cartons": "carton"}


@dataclass(slots=True)
class Outcome:
    applied: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _reason(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


Entity = Sku | Location | Operator | Carton


def check_item(list_name: str, raw: Any) -> Entity:
    """One raw item validated on its own, without the master data: bulk sets run this in a worker process,
    ahead of the floor (gateway/bulkwork.py). Raises ValidationError or ValueError."""
    if list_name == "skus":
        i = SkuItem.model_validate(raw)
        return Sku(i.sku, list(i.gtins), [(p.gtin, p.qty) for p in i.pack_gtins], i.description, i.unit_weight_g,
                   i.lot_tracked, i.expiry_tracked, i.min_shelf_life_days, i.serial_tracked, i.cold_chain)
    if list_name == "locations":
        loc = LocationItem.model_validate(raw)
        return Location(loc.code, loc.zone, loc.sku, Light(loc.light.bus, loc.light.unit) if loc.light else None)
    if list_name == "operators":
        o = OperatorItem.model_validate(raw)
        return Operator(o.operator_id, o.name, o.badge, list(o.roles), list(o.zones), o.password_hash, o.language)
    c = CartonItem.model_validate(raw)
    return Carton(c.code, c.tare_g)


def reason(e: ValidationError | ValueError) -> str:
    """What a rejected item's report says."""
    return _reason(e) if isinstance(e, ValidationError) else str(e)


def admit(md: MasterData, entity: Entity) -> str:
    """Check `entity` against the master data it joins, index it there; returns its key. Raises ValueError."""
    if isinstance(entity, Sku):
        for g in [*entity.gtins, *(g for g, _ in entity.pack_gtins)]:
            owner = md.gtins.get(g)
            if owner is not None and owner[0] != entity.sku:
                raise ValueError(f"GTIN {g} already belongs to SKU {owner[0]}")
        md.index_sku(entity)
        return entity.sku
    if isinstance(entity, Location):
        if entity.sku is not None and entity.sku not in md.skus:
            raise ValueError(f"unknown sku {entity.sku}")
        md.index_location(entity)
        return entity.code
    if isinstance(entity, Operator):
        holder = md.badges.get(entity.badge) if entity.badge else None
        if holder is not None and holder != entity.operator_id:
            raise ValueError(f"badge {entity.badge} already belongs to operator {holder}")
        md.index_operator(entity)
        return entity.operator_id
    md.index_carton(entity)
    return entity.code


# An item checked ahead (check_item): its index in the list, and the entity with its document's JSON text, or
# the reason it was rejected.
Checked = tuple[int, Entity, str] | tuple[int, None, str]


def _moves(md: MasterData, entity: Entity) -> set[Light]:
    """The modules a location leaves and joins by admitting `entity` (none if it keeps its module)."""
    if not isinstance(entity, Location):
        return set()
    old = md.locations.get(entity.code)
    before = old.light if old is not None else None
    if before == entity.light:
        return set()
    return {x for x in (before, entity.light) if x is not None}


def apply_items(md: MasterData, gen: int, change: Change, list_name: str, items: list[Any], part: int,
                start_index: int, outcome: Outcome) -> set[Light]:
    """Validate and apply one run of items of one list into `md`, recording rows for generation `gen`; returns
    the modules that locations left or joined (see `relight`)."""
    kind = KIND[list_name]
    moved: set[Light] = set()
    for offset, raw in enumerate(items):
        try:
            entity = check_item(list_name, raw)
            moves = _moves(md, entity)
            key = admit(md, entity)
        except (ValidationError, ValueError) as e:
            outcome.rejected.append({"list": list_name, "part": part, "index": start_index + offset,
                                     "reason": reason(e)})
            continue
        moved |= moves
        change.masterdata.append((gen, kind, key, entity.to_doc()))
        outcome.applied += 1
    return moved


def apply_checked(md: MasterData, gen: int, change: Change, list_name: str, items: list[Checked], part: int,
                  outcome: Outcome) -> set[Light]:
    """`apply_items` for items already checked alone (check_item): only what needs the master data is left."""
    kind = KIND[list_name]
    moved: set[Light] = set()
    for index, entity, text in items:
        if entity is None:
            outcome.rejected.append({"list": list_name, "part": part, "index": index, "reason": text})
            continue
        moves = _moves(md, entity)
        try:
            key = admit(md, entity)
        except ValueError as e:
            outcome.rejected.append({"list": list_name, "part": part, "index": index, "reason": str(e)})
            continue
        moved |= moves
        change.masterdata.append((gen, kind, key, text))
        outcome.applied += 1
    return moved


def relight(floor: Floor, change: Change, moved: set[Light] | None = None) -> None:
    """Locations changed their modules: each open line goes where its location now points (another module, or
    none) at once, not only after the next restart. Only the lines that moved are taken off their module (the
    next line waiting there gets it) and queued on their new one, behind what it shows: every other module keeps
    whom it shows first. `moved`: the modules locations left or joined (a merge); the PTL side watches and shows
    them and the modules lines left or joined. None (a new generation): it shows every module again."""
    touched: set[Light] = set()
    for light, slot in list(floor.modules.items()):
        for task_id, line_no in [*([slot.owner] if slot.owner is not None else []), *slot.waiting]:
            if _module_of(floor, task_id, line_no) != light:
                touched |= release(floor, task_id, line_no, light)
    placed = _placement(floor.modules)
    for task in sorted((t for t in floor.tasks.values() if t.state in (TASK_ASSIGNED, TASK_STARTED)),
                       key=lambda t: (t.assigned_at or "", t.task_id)):
        claim(floor, task)  # places only what is not placed yet
    touched |= {light for light, _ in _placement(floor.modules) ^ placed}
    if moved is None:
        change.signal(("masterdata_replaced", floor.md_gen))
    else:
        change.signal(("modules_changed", sorted(moved | touched, key=lambda x: (x.bus, x.unit))))


def _placement(modules: dict[Light, ModuleSlot]) -> set[tuple[Light, tuple[str, int]]]:
    return {(light, key) for light, slot in modules.items()
            for key in ([slot.owner] if slot.owner is not None else []) + slot.waiting}


def _module_of(floor: Floor, task_id: str, line_no: int) -> Light | None:
    """The module a task's line belongs on now (None: none, or the line is gone)."""
    task = floor.tasks.get(task_id)
    order = floor.orders.get(task.order_id) if task is not None else None
    line = order.line(line_no) if order is not None else None
    return line_module(floor, line) if line is not None else None


def swap_generation(floor: Floor, change: Change, md: MasterData, gen: int) -> None:
    """Make generation `gen` the live master data; older generations are purged in the background."""
    floor.md = md
    floor.md_gen = gen
    change.meta["md_gen"] = str(gen)
    relight(floor, change)


def apply_masterdata(floor: Floor, change: Change, mode: str, lists: dict[str, list[Any] | None],
                     part: int = 1) -> Outcome:
    """Apply a whole master data set in one change (small syncs; bulk syncs go through `bulk`)."""
    outcome = Outcome()
    if mode == "replace":
        md, gen = MasterData(), floor.md_gen + 1
    else:
        md, gen = floor.md, floor.md_gen
    moved: set[Light] = set()
    for name in LIST_ORDER:
        items = lists.get(name)
        if items:
            moved |= apply_items(md, gen, change, name, items, part, 0, outcome)
    if mode == "replace":
        swap_generation(floor, change, md, gen)
    elif moved:
        relight(floor, change, moved)
    return outcome
