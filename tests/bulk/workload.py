"""A large master data set for bulk tests and the bulk bench: N SKUs and M locations in parts, with some
malformed items sprinkled in."""

from __future__ import annotations

from typing import Any

from simulators.floor.world import make_gtin


def masterdata_parts(n_skus: int, n_locations: int, parts: int, bad_every: int = 0, sync_id: str = "big"
                     ) -> tuple[list[dict[str, Any]], int]:
    """The parts of one `masterdata.sync` replace, and how many items are malformed."""
    skus: list[dict[str, Any]] = [{"sku": "SKU-1", "gtins": ["4006381333931"], "unit_weight_g": 120.0}]
    bad = 0
    for i in range(1, n_skus):
        item: dict[str, Any] = {"sku": f"B{i:06d}", "gtins": [make_gtin(100_000 + i)], "description": f"item {i}",
                                "unit_weight_g": float(i % 900 + 10)}
        if bad_every and i % bad_every == 0:
            bad += 1
            if bad % 2:
                item["gtins"] = [item["gtins"][0][:-1] + str((int(item["gtins"][0][-1]) + 1) % 10)]
            else:
                del item["sku"]
        skus.append(item)
    good = [i for i in range(1, n_skus) if not (bad_every and i % bad_every == 0)]
    locations: list[dict[str, object]] = [{"code": f"L-{i:06d}", "zone": "zone-a", "sku": f"B{good[i % len(good)]:06d}"}
                 for i in range(n_locations)]
    locations.append({"code": "A-01-01", "zone": "zone-a", "sku": "SKU-1", "light": {"bus": "bus-a", "unit": 1}})
    out = []
    for p in range(parts):
        out.append({"mode": "replace", "sync_id": sync_id, "part": p + 1, "parts": parts,
                    "skus": skus[p::parts], "locations": locations[p::parts],
                    "operators": [{"operator_id": "p1", "name": "Ana", "badge": "BADGE-P1", "roles": ["picker"],
                                   "zones": ["zone-a"]}] if p == 0 else []})
    return out, bad
