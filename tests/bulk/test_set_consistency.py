"""Nothing the hub sends in a bulk set may vanish under an `ok:true`: a part that does not fit the set already
stored under its sync_id (another command, another `parts`, another `mode`, a part number already received
as another cmd_id, a set already complete) is refused at once as `conflict` and changes nothing; every set
ends with exactly one `done` result, ok true or false, to the cmd_id of the part that completed it; a set
that is done frees its sync_id for a new set."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.bulk import BulkApplier
from gateway.clock import ManualClock
from gateway.domain.commands import COMMANDS, BulkPart
from gateway.journal import Journal
from gateway.service import FloorService
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.bulk.test_bulk_retry import fail_first_cleanup
from tests.conftest import order, until
from tests.sync.conftest import gateway_config, running_gateway, running_hub

MD = "masterdata.sync"
Opened = tuple[Journal, FloorService]


def md_part(sync_id: str, part: int, parts: int, *skus: str, mode: str = "merge") -> dict[str, Any]:
    return {"mode": mode, "sync_id": sync_id, "part": part, "parts": parts,
            "skus": [{"sku": s, "gtins": []} for s in skus]}


class Hub:
    """The hub's side of a running gateway, over a real broker."""

    def __init__(self, app: App, hub: HubSim) -> None:
        self.app, self.hub = app, hub

    async def refused(self, name: str, body: dict[str, Any], cmd_id: str, *why: str) -> None:
        r = await self.hub.command(name, body, cmd_id=cmd_id)
        assert r["ok"] is False and r["error"]["code"] == "conflict", r
        assert all(w in r["error"]["message"] for w in why), r
        self.hub.send(name, body, cmd_id=cmd_id)  # a resend gets the same answer: the refusal is stored
        assert await self.hub.wait_result(cmd_id, count=2) == r

    async def accepted(self, name: str, body: dict[str, Any], cmd_id: str, complete: bool) -> None:
        r = await self.hub.command(name, body, cmd_id=cmd_id)
        assert r["ok"] and r["status"] == "accepted" and r["complete"] is complete, r

    async def done(self, cmd_id: str, applied: int) -> None:
        r = await self.hub.wait_result(cmd_id, count=2)
        assert r["ok"] and r["status"] == "done" and r["applied"] == applied and not r["rejected"], r

    def only_accepted(self, *cmd_ids: str) -> None:
        """Parts that did not complete their set: answered once, never `done`."""
        for cmd_id in cmd_ids:
            assert [r["status"] for r in self.hub.results[cmd_id]] == ["accepted"], self.hub.results[cmd_id]

    def skus(self) -> set[str]:
        assert self.app.service is not None
        return set(self.app.service.floor.md.skus)


@contextlib.asynccontextmanager
async def hub_and_gateway(tmp_path: Path, broker: Broker) -> AsyncIterator[Hub]:
    async with running_gateway(gateway_config(tmp_path, broker)) as app, running_hub(broker.port) as hub:
        yield Hub(app, hub)


async def test_a_part_number_received_again_as_another_cmd_id_is_refused(tmp_path: Path, broker: Broker) -> None:
    async with hub_and_gateway(tmp_path, broker) as h:
        await h.accepted(MD, md_part("dup", 1, 2, "DUP-A"), "dup-p1a", complete=False)
        await h.refused(MD, md_part("dup", 1, 2, "DUP-B"), "dup-p1b", "part 1 of set 'dup'", "dup-p1a")
        await h.accepted(MD, md_part("dup", 2, 2, "DUP-C"), "dup-p2", complete=True)
        await h.done("dup-p2", applied=2)
        assert {"DUP-A", "DUP-C"} <= h.skus() and "DUP-B" not in h.skus()  # the first copy is the one kept
        h.only_accepted("dup-p1a")


async def test_a_part_of_another_command_under_a_waiting_sets_sync_id_is_refused(tmp_path: Path,
                                                                                 broker: Broker) -> None:
    async with hub_and_gateway(tmp_path, broker) as h:
        await h.accepted(MD, md_part("mix", 1, 2, "MIX-1"), "mix-1", complete=False)
        await h.refused("order.upsert_batch", {"sync_id": "mix", "part": 2, "parts": 2, "orders": []}, "mix-2",
                        "masterdata.sync set", "order.upsert_batch")
        await h.accepted(MD, md_part("mix", 2, 2, "MIX-2"), "mix-3", complete=True)
        await h.done("mix-3", applied=2)
        assert {"MIX-1", "MIX-2"} <= h.skus()
        h.only_accepted("mix-1")


async def test_parts_that_disagree_on_parts_or_mode_are_refused(tmp_path: Path, broker: Broker) -> None:
    async with hub_and_gateway(tmp_path, broker) as h:
        await h.accepted(MD, md_part("p", 1, 2, "P-1"), "p-1", complete=False)
        await h.refused(MD, md_part("p", 2, 3, "P-2"), "p-2of3", "has 2 parts", "says 3")
        await h.accepted(MD, md_part("q", 1, 3, "Q-1"), "q-1", complete=False)
        await h.refused(MD, md_part("q", 2, 2, "Q-2"), "q-2of2", "has 3 parts", "says 2")  # never "complete"
        await h.accepted(MD, md_part("m", 1, 2, "M-1"), "m-1", complete=False)
        await h.refused(MD, md_part("m", 2, 2, "M-2", mode="replace"), "m-2r", "is a merge", "says replace")
        await h.accepted(MD, md_part("p", 2, 2, "P-2"), "p-2", complete=True)
        await h.accepted(MD, md_part("m", 2, 2, "M-2"), "m-2", complete=True)
        await h.done("p-2", applied=2)
        await h.done("m-2", applied=2)
        assert {"P-1", "P-2", "M-1", "M-2"} <= h.skus() and not {"Q-1", "Q-2"} & h.skus()  # q waits for 2 and 3
        h.only_accepted("p-1", "q-1", "m-1")


async def test_a_new_set_under_a_waiting_sets_sync_id_is_refused_and_starts_once_that_set_is_done(
        tmp_path: Path, broker: Broker) -> None:
    async with hub_and_gateway(tmp_path, broker) as h:
        await h.accepted(MD, md_part("pend", 1, 2, "PEND-1"), "pend-1", complete=False)
        await h.refused(MD, md_part("pend", 1, 1, "PEND-X"), "pend-again", "pend-1")
        await h.accepted(MD, md_part("pend", 2, 2, "PEND-2"), "pend-2", complete=True)
        await h.done("pend-2", applied=2)
        assert {"PEND-1", "PEND-2"} <= h.skus() and "PEND-X" not in h.skus()
        # The set is done: its sync_id starts a new set, answered to its own part.
        await h.accepted(MD, md_part("pend", 1, 1, "PEND-X"), "pend-new", complete=True)
        await h.done("pend-new", applied=1)
        assert "PEND-X" in h.skus()
        h.only_accepted("pend-1")


async def submit(s: FloorService, applier: BulkApplier, name: str, body: dict[str, Any],
                 raw: bytes | str | None = None) -> dict[str, Any]:
    """A part as the intake hands it on: validated, stored with its result in one commit, kicked if complete.
    `raw` stands for what an older gateway stored (text, not checked to be JSON)."""
    cmd = COMMANDS[name].model_validate(body)
    assert isinstance(cmd, BulkPart)
    stored = json.dumps(body) if raw is None else raw
    result = await s.execute_command(name, body["cmd_id"], lambda f, c: applier.accept(c, name, cmd, stored, 0),
                                     background=True)
    if result.get("ok") and result.get("complete"):
        applier.kick(body["sync_id"])
    return result


async def applying(s: FloorService, clock: ManualClock, results: list[dict[str, Any]]) -> BulkApplier:
    applier = BulkApplier(s, clock, results.append)
    applier.yield_factor = 0.0
    applier.retry_s = 0.05
    await applier.start()
    return applier


async def stop(applier: BulkApplier, runner: asyncio.Task[None]) -> None:
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await applier.close()


def dones(results: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    return [(r["cmd_id"], r["ok"]) for r in results if r.get("status") == "done"]


async def test_a_set_that_cannot_be_applied_ends_with_one_failed_done_and_frees_its_sync_id(
        opened: Opened, clock: ManualClock) -> None:
    """An older gateway stored a part with NaN in it (now refused at intake): its set failed at every start,
    never answered, and its sync_id stayed taken: a later part 1 of 1 under it was answered `complete: false`
    and stored over the failed one."""
    j, s = opened
    results: list[dict[str, Any]] = []
    older = BulkApplier(s, clock, results.append)
    body = {"cmd_id": "bi-1", **md_part("baditems", 1, 1, "BAD-1")}
    await submit(s, older, MD, body, raw=json.dumps(body).replace('"gtins": []', '"unit_weight_g": NaN'))
    await older.close()

    applier = await applying(s, clock, results)  # the next start finds the set complete and applies it
    runner = asyncio.create_task(applier.run())
    try:
        await until(lambda: bool(dones(results)), "the failed set's done result", timeout=30)
        [failed] = results
        assert failed["cmd_id"] == "bi-1" and failed["ok"] is False and failed["status"] == "done", failed
        assert failed["error"]["code"] == "invalid_payload" and "cannot be read" in failed["error"]["message"]
        assert failed["applied"] == 0 and "BAD-1" not in s.floor.md.skus
        again = await submit(s, applier, MD, {"cmd_id": "bi-again", **md_part("baditems", 1, 1, "OK-3")})
        assert again["ok"] and again["complete"] is True, again
        await until(lambda: len(dones(results)) == 2, "the new set's done result", timeout=30)
    finally:
        await stop(applier, runner)
    assert dones(results) == [("bi-1", False), ("bi-again", True)]
    assert "OK-3" in s.floor.md.skus
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")


async def test_a_part_for_a_complete_set_not_yet_applied_is_refused_and_the_set_keeps_its_content(
        opened: Opened, clock: ManualClock) -> None:
    _, s = opened
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    first = await submit(s, applier, MD, {"cmd_id": "c-1", **md_part("c", 1, 1, "C-1")})
    assert first["complete"] is True
    late = await submit(s, applier, MD, {"cmd_id": "c-2", **md_part("c", 1, 1, "C-2")})
    assert late["ok"] is False and late["error"]["code"] == "conflict" and "being applied" in late["error"]["message"]
    runner = asyncio.create_task(applier.run())
    try:
        await until(lambda: bool(dones(results)), "the set's done result", timeout=30)
    finally:
        await stop(applier, runner)
    assert dones(results) == [("c-1", True)] and results[0]["applied"] == 1
    assert "C-1" in s.floor.md.skus and "C-2" not in s.floor.md.skus


async def test_a_waiting_set_is_held_to_its_command_parts_and_mode_after_a_restart(opened: Opened,
                                                                                  clock: ManualClock) -> None:
    _, s = opened
    results: list[dict[str, Any]] = []
    before = await applying(s, clock, results)
    await submit(s, before, MD, {"cmd_id": "r-1", **md_part("r", 1, 2, "R-1")})
    await before.close()

    applier = await applying(s, clock, results)  # a restart: what it knows of the set comes from the journal
    for name, body, why in (
            (MD, {"cmd_id": "r-2r", **md_part("r", 2, 2, "R-2", mode="replace")}, "is a merge"),
            (MD, {"cmd_id": "r-2of3", **md_part("r", 2, 3, "R-2")}, "has 2 parts"),
            (MD, {"cmd_id": "r-1b", **md_part("r", 1, 2, "R-X")}, "already received as cmd r-1"),
            ("order.upsert_batch", {"cmd_id": "r-o", "sync_id": "r", "part": 2, "parts": 2, "orders": []},
             "masterdata.sync set")):
        r = await submit(s, applier, name, body)
        assert r["ok"] is False and r["error"]["code"] == "conflict" and why in r["error"]["message"], r
    last = await submit(s, applier, MD, {"cmd_id": "r-2", **md_part("r", 2, 2, "R-2")})
    assert last["ok"] and last["complete"] is True
    runner = asyncio.create_task(applier.run())
    try:
        await until(lambda: bool(dones(results)), "the set's done result", timeout=30)
    finally:
        await stop(applier, runner)
    assert dones(results) == [("r-2", True)] and results[0]["applied"] == 2
    assert {"R-1", "R-2"} <= set(s.floor.md.skus) and "R-X" not in s.floor.md.skus


async def test_a_new_set_waits_busy_until_the_done_sets_parts_are_cleared(
        opened: Opened, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A done set whose parts could not be cleared (a full disk) must not share its sync_id with a new set's
    parts: the clearing would delete them, or a restart apply them as one set. The new part is answered `busy`
    (not stored, so its resend is tried afresh) until the clearing, tried again, succeeds."""
    j, s = opened
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    applier.retry_s = 0.2
    failed = fail_first_cleanup(j, monkeypatch)
    runner = asyncio.create_task(applier.run())
    try:
        await submit(s, applier, MD, {"cmd_id": "b-1", **md_part("b", 1, 1, "B-1")})
        await until(lambda: bool(dones(results)), "the first set's done result", timeout=30)
        assert failed() == 1
        new = {"cmd_id": "b-2", **md_part("b", 1, 1, "B-2")}
        answer = await submit(s, applier, MD, new)
        assert answer["ok"] is False and answer["error"]["code"] == "busy", answer
        async with asyncio.timeout(30):  # a safety limit
            while not answer["ok"]:  # the hub sends it again (same cmd_id) until it is taken
                assert answer["error"]["code"] == "busy", answer
                await asyncio.sleep(0.05)
                answer = await submit(s, applier, MD, new)
        assert answer["complete"] is True
        await until(lambda: len(dones(results)) == 2, "the new set's done result", timeout=30)
    finally:
        await stop(applier, runner)
    assert dones(results) == [("b-1", True), ("b-2", True)]  # the first set's result went out once
    assert {"B-1", "B-2"} <= set(s.floor.md.skus)
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")


async def test_stored_parts_that_disagree_end_their_set_as_a_conflict(opened: Opened, clock: ManualClock) -> None:
    """An older gateway stored every part it was sent: a master data part and an order batch part under one
    sync_id were applied as master data, `ok: true`, the orders never received and reported nowhere."""
    j, s = opened
    parts = [(MD, 1, "mix-1", md_part("mix", 1, 2, "MIX-1")),
             ("order.upsert_batch", 2, "mix-2", {"sync_id": "mix", "part": 2, "parts": 2,
                                                 "orders": [order("O-MIX", lines=[(1, "SKU-1", 1)])]})]

    async def older_gateway(db: Any) -> None:
        for name, part, cmd_id, body in parts:
            await db.execute("INSERT INTO bulk_parts(sync_id, name, part, parts, cmd_id, ts, items, payload) "
                             "VALUES ('mix', ?, ?, 2, ?, '2026-01-01T00:00:00Z', 1, ?)",
                             (name, part, cmd_id, json.dumps({"cmd_id": cmd_id, **body})))
        await db.execute("INSERT INTO meta(key, value) VALUES ('bulk:mix:completed_by', 'mix-2')")
    await j.run_job(older_gateway)
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    runner = asyncio.create_task(applier.run())
    try:
        await until(lambda: bool(dones(results)), "the set's done result", timeout=30)
    finally:
        await stop(applier, runner)
    [failed] = results
    assert failed["cmd_id"] == "mix-2" and failed["ok"] is False and failed["error"]["code"] == "conflict", failed
    assert "order.upsert_batch" in failed["error"]["message"] and failed["applied"] == 0
    assert "MIX-1" not in s.floor.md.skus and "O-MIX" not in s.floor.orders
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")
