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
from gateway.domain.floor import Floor, MasterData
from gateway.domain.model import Carton, Light, Location, Operator, Sku

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


def _check_sku(md: MasterData, item: SkuItem) -> Sku:
    s = Sku(item.sku, list(item.gtins), [(p.gtin, p.qty) for p in item.pack_gtins], item.description,
            item.unit_weight_g, item.lot_tracked, item.expiry_tracked, item.min_shelf_life_days,
            item.serial_tracked, item.cold_chain)
    for g in [*s.gtins, *(g for g, _ in s.pack_gtins)]:
        owner = md.gtins.get(g)
        if owner is not None and owner[0] != s.sku:
            raise ValueError(f"GTIN {g} already belongs to SKU {owner[0]}")
    return s


def _check_location(md: MasterData, item: LocationItem) -> Location:
    if item.sku is not None and item.sku not in md.skus:
        raise ValueError(f"unknown sku {item.sku}")
    light = Light(item.light.bus, item.light.unit) if item.light else None
    return Location(item.code, item.zone, item.sku, light)


def _check_operator(md: MasterData, item: OperatorItem) -> Operator:
    owner = md.badges.get(item.badge) if item.badge else None
    if owner is not None and owner != item.operator_id:
        raise ValueError(f"badge {item.badge} already belongs to operator {owner}")
    return Operator(item.operator_id, item.name, item.badge, list(item.roles), list(item.zones),
                    item.password_hash, item.language)


def apply_items(md: MasterData, gen: int, change: Change, list_name: str, items: list[Any], part: int,
                start_index: int, outcome: Outcome) -> None:
    """Validate and apply one run of items of one list into `md`, recording rows for generation `gen`."""
    kind = KIND[list_name]
    for offset, raw in enumerate(items):
        index = start_index + offset
        try:
            entity: Sku | Location | Operator | Carton
            if list_name == "skus":
                entity = _check_sku(md, SkuItem.model_validate(raw))
                md.index_sku(entity)
                key = entity.sku
            elif list_name == "locations":
                entity = _check_location(md, LocationItem.model_validate(raw))
                md.index_location(entity)
                key = entity.code
            elif list_name == "operators":
                entity = _check_operator(md, OperatorItem.model_validate(raw))
                md.index_operator(entity)
                key = entity.operator_id
            else:
                c = CartonItem.model_validate(raw)
                entity = Carton(c.code, c.tare_g)
                md.index_carton(entity)
                key = entity.code
        except ValidationError as e:
            outcome.rejected.append({"list": list_name, "part": part, "index": index, "reason": _reason(e)})
            continue
        except ValueError as e:
            outcome.rejected.append({"list": list_name, "part": part, "index": index, "reason": str(e)})
            continue
        change.masterdata.append((gen, kind, key, entity.to_doc()))
        outcome.applied += 1


def swap_generation(floor: Floor, change: Change, md: MasterData, gen: int) -> None:
    """Make generation `gen` the live master data; older generations are purged in the background."""
    floor.md = md
    floor.md_gen = gen
    change.meta["md_gen"] = str(gen)
    change.signal(("masterdata_replaced", gen))


def apply_masterdata(floor: Floor, change: Change, mode: str, lists: dict[str, list[Any] | None],
                     part: int = 1) -> Outcome:
    """Apply a whole master data set in one change (small syncs; bulk syncs go through `bulk`)."""
    outcome = Outcome()
    if mode == "replace":
        md, gen = MasterData(), floor.md_gen + 1
    else:
        md, gen = floor.md, floor.md_gen
    for name in LIST_ORDER:
        items = lists.get(name)
        if items:
            apply_items(md, gen, change, name, items, part, 0, outcome)
    if mode == "replace":
        swap_generation(floor, change, md, gen)
    return outcome
