"""The last SSCC of the configured range used: the next parcel's last unit was counted, then met the empty
range, and the packer got an internal error (the floor rebuilt from the journal, no scan.rejected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from tests.conftest import make_config
from tests.floor.conftest import Harness
from tests.floor.test_packing_checks import EAN, at_bench


@pytest.fixture
def floor_cfg(tmp_path: Path) -> Config:
    """One SSCC left in the range."""
    return make_config(tmp_path, picking={"location_scan": "optional"},
                       packing={"sscc_serial_start": 5, "sscc_serial_end": 5})


async def test_no_sscc_left_refuses_the_last_unit_before_anything_is_counted(h: Harness) -> None:
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])
    assert (await h.item("scan-1", EAN)).ok
    await at_bench(h)
    assert (await h.item("pack-scan", EAN, station="pack-1")).ok  # the last SSCC
    await h.order("O-2", [(1, "SKU-1", 2)])
    await h.tick()
    assert (await h.item("scan-1", EAN)).ok and (await h.item("scan-1", EAN)).ok
    assert (await h.scan("pack-scan", "O-2", station="pack-1")).ok
    assert (await h.item("pack-scan", EAN, station="pack-1")).ok
    seq = h.seq
    last = await h.item("pack-scan", EAN, station="pack-1")  # was an internal error and a rebuild
    assert last.code == "not_allowed" and "no SSCC can be issued" in last.message, last
    assert h.floor.stations["pack-1"].scanned and sum(h.floor.stations["pack-1"].scanned.values()) == 1
    assert h.floor.orders["O-2"].state == "packing"
    assert h.types(seq) == []  # a refusal: only its scan.rejected
    assert [t for t, _, _ in h.events(seq)] == ["scan.rejected"]


async def test_no_sscc_left_refuses_the_last_unit_at_a_station_with_a_scale_too(h: Harness) -> None:
    """With a scale the last unit was counted and the order sent to the scale, where every weighing was then
    refused: the packer could neither finish nor leave."""
    await h.picker_with_task("O-1", [(1, "SKU-1", 1)])
    assert (await h.item("scan-1", EAN)).ok
    await at_bench(h)
    assert (await h.scan("pack-scan", EAN, station="pack-1", has_scale=True)).ok
    assert (await h.weigh("pack-1", 120.0)).ok  # the last SSCC
    await h.order("O-2", [(1, "SKU-1", 1)])
    await h.tick()
    assert (await h.item("scan-1", EAN)).ok
    assert (await h.scan("pack-scan", "O-2", station="pack-1")).ok
    last = await h.scan("pack-scan", EAN, station="pack-1", has_scale=True)
    assert last.code == "not_allowed" and "no SSCC can be issued" in last.message, last
    assert not h.floor.stations["pack-1"].awaiting_weight and not h.floor.stations["pack-1"].scanned
