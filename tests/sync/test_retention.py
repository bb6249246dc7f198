"""Retention (SPEC §1): an event stays until the hub has acked it and it is older than `sync.retention_h`; a
command's stored result stays as long as a repeat of the command may come, so a repeat is answered again and
never applied again. Commands go through the real intake (as the MQTT client hands them over); the clock is
moved by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal
from gateway.service import FloorService
from gateway.sync.link import HubLink
from gateway.sync.mqtt import Message
from tests.conftest import SKUS, make_config, order

HOUR = 3600.0


class Intake:
    """The gateway's command intake without a broker: a message in, the results it published out."""

    def __init__(self, cfg: Config, service: FloorService, clock: ManualClock) -> None:
        self.link = HubLink(cfg, service, clock)
        self.journal = service.journal
        self.results: list[dict[str, Any]] = []
        inner = self.link.intake.publish_result

        def tap(result: dict[str, Any]) -> None:
            self.results.append(result)
            inner(result)
        self.link.intake.publish_result = tap  # type: ignore[method-assign]

    async def start(self) -> Intake:
        await self.link.publisher.start()
        await self.link.bulk.start()
        self.link.bulk.yield_factor = 0.0
        return self

    async def send(self, name: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self.results.clear()
        msg = Message(self.link.intake.cmd_prefix + name, json.dumps(payload).encode(), qos=1, mid=1, retain=False,
                      connection=0)
        await self.link.intake.handle(msg)
        bulk = self.link.bulk  # a completed set is applied here, in line, rather than by the applier's loop
        while not bulk._queue.empty():
            await bulk._apply(bulk._queue.get_nowait())
        await self.journal.barrier()
        return list(self.results)


def burst_event(i: int) -> Callable[[Floor, Change], None]:
    def op(floor: Floor, change: Change) -> None:
        change.emit("test.burst", {"i": i})
    return op


async def stored_seqs(journal: Journal) -> list[int]:
    return [int(r[0]) for r in await journal.reader.execute_fetchall("SELECT seq FROM events ORDER BY seq")]


async def test_prune_commands_forgets_old_results_and_keeps_young_and_needed_ones(
        cfg: Config, service: FloorService, journal: Journal, clock: ManualClock) -> None:
    assert cfg.sync.retention_h == 72
    t = await Intake(cfg, service, clock).start()

    def md(cmd_id: str) -> dict[str, Any]:
        return {"cmd_id": cmd_id, "mode": "replace", "sync_id": cmd_id, "part": 1, "parts": 1, "skus": SKUS}
    # Three days and an hour ago: a master data set, an order, a refusal, and half of a bulk set.
    assert [r["status"] for r in await t.send("masterdata.sync", md("md-old"))] == ["accepted", "done"]
    assert (await t.send("order.upsert", {"cmd_id": "old-1", "order": order("O-1")}))[0]["ok"]
    assert (await t.send("order.cancel", {"cmd_id": "old-refused", "order_id": "O-404"}))[0]["ok"] is False
    half = {"cmd_id": "batch-1", "sync_id": "batch", "part": 1, "parts": 2, "orders": [order("O-B1")]}
    [half_result] = await t.send("order.upsert_batch", half)
    clock.advance(73 * HOUR)
    # Now: the same kinds again.
    [young] = await t.send("order.upsert", {"cmd_id": "young-1", "order": order("O-2")})
    assert (await t.send("order.cancel", {"cmd_id": "young-refused", "order_id": "O-405"}))[0]["ok"] is False
    md_young = await t.send("masterdata.sync", md("md-young"))
    old, kept = ["md-old", "old-1", "old-refused"], ["young-1", "young-refused", "md-young", "batch-1"]

    # The hub has acked nothing: every event stays, and so does every result (the hub may still resend).
    assert await service.prune_commands() == 0
    for cmd_id in old + kept:
        assert await journal.command_result(cmd_id) is not None, cmd_id

    # The hub holds everything: the old events go, and the old results with them.
    assert await service.prune_events(journal.last_seq) > 0
    assert await service.prune_commands() == len(old)
    for cmd_id in old:
        assert await journal.command_result(cmd_id) is None, cmd_id
    for cmd_id in kept:  # young, or a part of a set not applied yet
        assert await journal.command_result(cmd_id) is not None, cmd_id
    meta = await journal.read_meta()
    assert "bulk:md-old:result" not in meta  # went with the result of the part that completed its set
    assert json.loads(meta["bulk:md-young:result"])["status"] == "done"
    assert await service.prune_commands() == 0  # nothing more to go

    # Repeats of what was kept are answered alike (a bulk part with both of its answers) and change nothing.
    seq = journal.last_seq
    assert await t.send("order.upsert", {"cmd_id": "young-1", "order": order("O-2", lines=[(1, "SKU-1", 9)])}) \
        == [young]
    assert await t.send("masterdata.sync", md("md-young")) == md_young
    assert await t.send("order.upsert_batch", half) == [half_result]
    assert journal.last_seq == seq
    # The half set is completed later, its first part still there.
    rest = await t.send("order.upsert_batch", {"cmd_id": "batch-2", "sync_id": "batch", "part": 2, "parts": 2,
                                               "orders": [order("O-B2")]})
    assert rest[-1]["status"] == "done" and rest[-1]["applied"] == 2 and rest[-1]["rejected"] == []


async def test_unacked_or_young_events_survive_prune(service: FloorService, journal: Journal,
                                                    clock: ManualClock) -> None:
    for i in range(10):
        await service.execute(burst_event(i))  # seq 1..10, old by the time of the prunes
    clock.advance(73 * HOUR)
    for i in range(10, 20):
        await service.execute(burst_event(i))  # seq 11..20, young
    # The hub holds 1..5: those go; 6..10 are as old but not acked, so they stay.
    assert await service.prune_events(5) == 5
    assert await stored_seqs(journal) == list(range(6, 21))
    # The hub holds 1..15: 6..10 go now; 11..15 are acked but younger than the retention, so they stay.
    assert await service.prune_events(15) == 5
    assert await stored_seqs(journal) == list(range(11, 21))
    assert await journal.earliest_seq() == 11
    # Later, once they are old, the acked ones go and the unacked ones still stay.
    clock.advance(73 * HOUR)
    assert await service.prune_events(15) == 5
    assert await stored_seqs(journal) == list(range(16, 21))


async def test_results_stay_a_day_even_with_a_short_retention(tmp_path: Path, clock: ManualClock) -> None:
    """`sync.retention_h = 0` (events go as soon as the hub holds them): a command's result went with them, and
    the hub's resend an hour later was applied a second time (a second order.updated)."""
    cfg = make_config(tmp_path, sync={"retention_h": 0})
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    try:
        service = FloorService(cfg, journal, clock)
        await service.start()
        t = await Intake(cfg, service, clock).start()
        md = {"cmd_id": "md", "mode": "replace", "sync_id": "md", "part": 1, "parts": 1, "skus": SKUS}
        assert (await t.send("masterdata.sync", md))[-1]["ok"]
        [first] = await t.send("order.upsert", {"cmd_id": "up-1", "order": order("O-1")})
        assert first["ok"]
        clock.advance(HOUR)
        assert await service.prune_events(journal.last_seq) > 0
        await service.prune_commands()
        seq = journal.last_seq
        assert await t.send("order.upsert", {"cmd_id": "up-1", "order": order("O-1")}) == [first]
        assert journal.last_seq == seq  # answered, not applied again
        clock.advance(24 * HOUR)
        assert await service.prune_commands() > 0  # a day on, it goes
    finally:
        await journal.close()


async def test_a_retained_command_is_acknowledged_and_not_handled(cfg: Config, service: FloorService,
                                                                  journal: Journal, clock: ManualClock) -> None:
    """A retained command comes again at every reconnect (the subscription is made again): it was answered each
    time, and applied again once its result was pruned. Only its live copy is handled."""
    t = await Intake(cfg, service, clock).start()
    acked: list[Message] = []

    def ack(msg: Message) -> bool:
        acked.append(msg)
        return True
    setattr(t.link.mqtt, "ack", ack)  # noqa: B010 - the broker's side of the acknowledgement, watched
    seq = journal.last_seq
    body = {"cmd_id": "ret-1", "order_id": "O-404", "reason": "x"}
    msg = Message(t.link.intake.cmd_prefix + "order.cancel", json.dumps(body).encode(), qos=1, mid=7, retain=True,
                  connection=0)
    await t.link.intake.handle(msg)
    clearing = Message(msg.topic, b"", qos=1, mid=8, retain=True, connection=0)  # the hub clearing it
    await t.link.intake.handle(clearing)
    assert t.results == [] and acked == [msg, clearing] and journal.last_seq == seq
    assert await journal.command_result("ret-1") is None
    assert t.link.intake.ignored_retained == 2


async def test_an_ack_beyond_the_journals_end_is_a_rollback_not_an_ack(cfg: Config, service: FloorService,
                                                                       journal: Journal, clock: ManualClock) -> None:
    """A database copied back over the live one (or a disk snapshot) keeps its journal id and reuses seqs the hub
    already holds. The hub's ack beyond our end was clamped to our last seq and saved: events the hub never got
    counted as held, and were pruned. It is ignored, and a critical alarm says what happened (once)."""
    t = await Intake(cfg, service, clock).start()
    for i in range(3):
        await service.execute(burst_event(i))
    last = journal.last_seq
    ack = {"cmd_id": "ack-1", "up_to_seq": last + 10, "journal": journal.journal_id}
    assert await t.send("sync.ack", ack) == []  # never answered
    assert await t.send("sync.ack", {**ack, "cmd_id": "ack-2", "up_to_seq": last + 11}) == []
    assert t.link.publisher.hub_acked == 0 and (await journal.read_meta()).get("hub_acked_seq", "0") == "0"
    alarm = service.floor.alarms["journal_rolled_back"]
    assert alarm.severity == "critical" and "rolled back" in alarm.message and "floorgate restore" in alarm.message
    raised = [r for r in await journal.read_events(1) if '"alarm.raised"' in r.body]
    assert len(raised) == 1  # once, not at every ack
    assert await t.send("sync.ack", {**ack, "cmd_id": "ack-3", "up_to_seq": last}) == []  # a true ack counts
    assert t.link.publisher.hub_acked == last
