"""The physical floor: shelves with units (lots, expiry dates, serials), totes and parcels.

The gateway never sees this; it only sees scans and key presses. At the end, what is physically in each
packed parcel is compared with what the order asked for: double verification must never let a parcel out
that differs.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from biip.checksums import gs1_standard_check_digit

from gateway.domain.gtin import normalize_gtin


def make_gtin(n: int) -> str:
    body = f"40{n:010d}"
    return normalize_gtin(body + str(gs1_standard_check_digit(body)))


@dataclass(frozen=True)
class Unit:
    sku: str
    gtin: str
    lot: str | None = None
    expiry: str | None = None  # YYMMDD as on the label
    serial: str | None = None
    weight_g: float = 100.0

    def barcode(self) -> tuple[str, str | None]:
        """What the scanner reads: GS1-128 (`]C1`) when the label carries lot/expiry/serial, else the EAN."""
        if self.lot is None and self.expiry is None and self.serial is None:
            return self.gtin[1:] if self.gtin.startswith("0") else self.gtin, None
        s = "01" + self.gtin
        if self.expiry:
            s += "17" + self.expiry
        if self.lot:
            s += "10" + self.lot + "\x1d"
        if self.serial:
            s += "21" + self.serial + "\x1d"
        return s.rstrip("\x1d"), "]C1"

    def key(self) -> tuple[str, str | None]:
        return self.sku, self.lot


@dataclass
class Catalog:
    """Master data for the simulated floor, in the hub's `masterdata.sync` form."""

    skus: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    operators: list[dict[str, Any]]
    cartons: list[dict[str, Any]]

    @classmethod
    def make(cls, n_skus: int, pickers: int, packers: int, zone: str = "zone-a", bus: str = "bus-a") -> Catalog:
        skus, locations = [], []
        for i in range(n_skus):
            sku = f"SKU-{i:04d}"
            d: dict[str, Any] = {"sku": sku, "gtins": [make_gtin(i + 1)], "description": f"Article {i}",
                                 "unit_weight_g": float(50 + (i * 37) % 900)}
            if i % 5 == 1:
                d.update(lot_tracked=True, expiry_tracked=True, min_shelf_life_days=30)
            if i % 17 == 3:
                d.update(serial_tracked=True)
            skus.append(d)
            locations.append({"code": f"A-{i // 10:02d}-{i % 10:02d}", "zone": zone, "sku": sku,
                              "light": {"bus": bus, "unit": i % 247 + 1}})
        operators = [{"operator_id": f"p{k}", "name": f"Picker {k}", "badge": f"BADGE-P{k}", "roles": ["picker"],
                      "zones": [zone]} for k in range(1, pickers + 1)]
        operators += [{"operator_id": f"k{k}", "name": f"Packer {k}", "badge": f"BADGE-K{k}", "roles": ["packer"],
                       "zones": [zone]} for k in range(1, packers + 1)]
        operators.append({"operator_id": "s1", "name": "Supervisor", "badge": "BADGE-S1",
                          "roles": ["supervisor"], "zones": [zone]})
        return cls(skus, locations, operators, [{"code": "BOX-M", "tare_g": 150.0}])


@dataclass
class World:
    catalog: Catalog
    rng: random.Random
    today: str = "261123"  # YYMMDD of the simulated day
    totes: dict[str, list[Unit]] = field(default_factory=dict)  # order id -> units physically in its tote
    parcels: dict[str, list[Unit]] = field(default_factory=dict)  # order id -> units in the packed parcel
    returned: list[Unit] = field(default_factory=list)  # units taken out at packing, back to stock
    serial_no: int = 0

    def __post_init__(self) -> None:
        self.skus = {s["sku"]: s for s in self.catalog.skus}

    def unit(self, sku: str, lot: str = "good") -> Unit:
        """A unit from the shelf: `good` (long shelf life), `other` (a second good lot), `expired`."""
        s = self.skus[sku]
        gtin = s["gtins"][0]
        lot_code = expiry = serial = None
        if s.get("lot_tracked"):
            lot_code = {"good": "L100", "other": "L200", "expired": "L001"}[lot]
            expiry = {"good": "271231", "other": "280630", "expired": "261001"}[lot]
        if s.get("serial_tracked"):
            self.serial_no += 1
            serial = f"SN{self.serial_no:07d}"
        return Unit(sku, gtin, lot_code, expiry, serial, float(s.get("unit_weight_g") or 0.0))

    def neighbour(self, sku: str) -> str:
        """The SKU on the shelf next to `sku`: what a picker grabs by mistake."""
        i = int(sku.split("-")[1])
        return f"SKU-{(i + 1) % len(self.skus):04d}"

    def check(self, order_lines: dict[str, list[tuple[str, int]]], picked: dict[str, Counter[tuple[str, Any]]]
              ) -> tuple[int, list[str]]:
        """Packed parcels whose physical contents differ from what the gateway recorded for the order."""
        wrong = []
        for order_id, units in self.parcels.items():
            physical = Counter(u.key() for u in units)
            if physical != picked.get(order_id, Counter()):
                wrong.append(order_id)
        return len(self.parcels), wrong
