"""The floor simulation in CI: pickers who make mistakes, packers who scan what is physically in the tote,
the real gateway code in between on a moved clock. No packed parcel may differ from its order."""

from __future__ import annotations

from pathlib import Path

from simulators.floor.cli import simulate
from simulators.floor.sim import SimConfig


async def test_200_orders_with_3_percent_picker_errors(tmp_path: Path) -> None:
    report = await simulate(SimConfig(orders=200, pickers=6, packers=2, error_rate=0.03, seed=11), tmp_path)
    assert report.wrong_packed == [], report.table()
    assert report.not_finished == 0, report.table()
    assert report.packed + report.held_at_packing == 200
    assert sum(report.errors_made.values()) > 0  # the run did test something


async def test_many_errors_still_never_pack_a_wrong_parcel(tmp_path: Path) -> None:
    report = await simulate(SimConfig(orders=150, pickers=5, packers=2, error_rate=0.25, short_rate=0.05, seed=5),
                            tmp_path)
    assert report.wrong_packed == [], report.table()
    assert sum(report.caught_at_pick.values()) > 0 and sum(report.caught_at_pack.values()) > 0
    assert report.packed_short > 0
