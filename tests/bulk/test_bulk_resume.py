"""An `order.upsert_batch` set cut off halfway (the gateway died between two chunk commits) resumes after the
restart where it stopped: orders applied before are neither applied again nor refused as conflicts (one may
have moved on meanwhile), the bad orders found before are still reported, and the counts are the set's."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gateway.bulk import BulkApplier
from gateway.clock import ManualClock
from gateway.domain.api import apply_command
from gateway.domain.change import Change
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor
from gateway.journal import Journal
from gateway.service import FloorService
from tests.conftest import SKUS, make_config, order


class Crash(Exception):
    """Stands for the process dying between two chunk commits."""


async def open_service(tmp_path: Path, clock: ManualClock) -> tuple[Journal, FloorService]:
    cfg = make_config(tmp_path)
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    return j, s


async def command(s: FloorService, name: str, body: dict[str, Any]) -> dict[str, Any]:
    c = COMMANDS[name].model_validate(body)
    return await s.execute_command(name, body["cmd_id"], lambda f, ch: apply_command(f, ch, c, s.at()))


def accept(applier: BulkApplier, cmd: Any, raw: str, floor: Floor, change: Change) -> None:
    applier.accept(change, "order.upsert_batch", cmd, raw, 0)  # stored as text, uncounted: as before counts


def batch(part: int, first: int, n: int, bad: set[int]) -> dict[str, Any]:
    orders: list[Any] = []
    for i in range(first, first + n):
        orders.append({"order_id": f"B-{i}"} if i in bad else order(f"B-{i}", lines=[(1, "SKU-1", 1)]))
    return {"cmd_id": f"batch-{part}", "sync_id": "set-1", "part": part, "parts": 2, "orders": orders}


async def test_a_batch_cut_off_halfway_resumes_where_it_stopped(tmp_path: Path, clock: ManualClock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    j, s = await open_service(tmp_path, clock)
    md = {"cmd_id": "md", "mode": "merge", "sync_id": "md", "part": 1, "parts": 1, "skus": SKUS}
    await command(s, "masterdata.sync", md)
    results: list[dict[str, Any]] = []
    applier = BulkApplier(s, clock, results.append, chunk=2)
    applier.yield_factor = 0.0
    for part, first in ((1, 1), (2, 6)):
        body = batch(part, first, 5, bad={3, 8})
        cmd = COMMANDS["order.upsert_batch"].model_validate(body)
        await s.execute(partial(accept, applier, cmd, json.dumps(body)))
    chunks = 0
    real = BulkApplier._orders_chunk

    async def dies_after_three(self: BulkApplier, run: Any, orders: list[Any], part: int, start: int) -> None:
        nonlocal chunks
        if chunks == 3:
            raise Crash
        chunks += 1
        await real(self, run, orders, part, start)

    monkeypatch.setattr(BulkApplier, "_orders_chunk", dies_after_three)
    with pytest.raises(Crash):
        await applier._apply("set-1")
    monkeypatch.setattr(BulkApplier, "_orders_chunk", real)
    applied_before = set(s.floor.orders)
    assert applied_before == {"B-1", "B-2", "B-4", "B-5"}  # chunks (1,2) (3,4) (5) of part 1; B-3 is bad
    # Meanwhile one of them moves on: applied again, it would be refused as a conflict.
    assert (await command(s, "order.cancel", {"cmd_id": "c1", "order_id": "B-1"}))["ok"]
    seq = j.last_seq

    restarted = BulkApplier(s, clock, results.append, chunk=2)  # a new process reads the stored parts
    restarted.yield_factor = 0.0
    await restarted.start()
    await restarted._apply(restarted._queue.get_nowait())
    [done] = results
    assert done["status"] == "done" and done["cmd_id"] == "batch-2"
    assert done["applied"] == 8, done
    assert [(r["part"], r["index"]) for r in done["rejected"]] == [(1, 2), (2, 2)], done
    types = [json.loads(e.body)["type"] for e in await j.read_events(seq + 1)]
    assert types.count("order.received") == 4 and "order.updated" not in types, types  # B-6, 7, 9, 10 only
    assert s.floor.orders["B-1"].state == "cancelled"
    assert not [k for k in await j.read_meta() if k.startswith("bulk:set-1:cursor")]
    await applier.close()
    await restarted.close()
    await j.close()
