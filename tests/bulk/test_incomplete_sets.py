"""A bulk set whose missing parts never come: an order batch's orders reach nobody, and its stored parts sit on the
card for good. After WAIT_ALARM_S without a part the floor is told (an alarm naming the missing parts, cleared
when they come); after GIVE_UP_S the set is ended with one `done` result, ok false, to the part that came last,
its parts are cleared and its sync_id is free again. Time is the gateway's injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.bulk import ALARM_CONNECTED_S, ALARM_PREFIX, GIVE_UP_CONNECTED_S, GIVE_UP_S, WAIT_ALARM_S
from gateway.clock import ManualClock
from gateway.journal import StorageFull
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.bulk.test_bulk_retry import fail_first_cleanup
from tests.bulk.test_set_consistency import MD, Hub, Opened, applying, md_part, stop, submit
from tests.conftest import until
from tests.sync.conftest import gateway_config, running_gateway, running_hub


def alarm_events(hub: HubSim) -> list[tuple[str, str, str]]:
    assert hub.current is not None
    view = hub.journals[hub.current]
    return [(e["type"], e["data"]["alarm_id"], e["data"]["message"]) for _, e in sorted(view.events.items())
            if e["type"].startswith("alarm.") and e["data"]["alarm_id"].startswith(ALARM_PREFIX)]


async def test_a_set_missing_a_part_raises_an_alarm_that_clears_when_the_part_comes(
        tmp_path: Path, broker: Broker, clock: ManualClock) -> None:
    async with running_gateway(gateway_config(tmp_path, broker), clock) as app, \
            running_hub(broker.port) as hubsim:
        h = Hub(app, hubsim)
        assert app.service is not None
        alarms = app.service.floor.alarms
        await h.accepted(MD, md_part("w", 1, 3, "W-1"), "w-1", complete=False)
        await h.accepted(MD, md_part("w", 3, 3, "W-3"), "w-3", complete=False)
        clock.advance(WAIT_ALARM_S - 1)
        await asyncio.sleep(2.5)  # two checks of the hub link: not yet
        assert ALARM_PREFIX + "w" not in alarms
        clock.advance(2)
        await until(lambda: ALARM_PREFIX + "w" in alarms, "the incomplete set's alarm")
        alarm = alarms[ALARM_PREFIX + "w"]
        assert alarm.code == "bulk_incomplete" and alarm.severity == "warning", alarm
        assert "master data set 'w': 2 of 3 parts received, missing 2" in alarm.message, alarm.message
        await until(lambda: len(alarm_events(hubsim)) == 1, "alarm.raised at the hub")
        clock.advance(60)
        await asyncio.sleep(2.5)
        assert len(alarm_events(hubsim)) == 1  # raised once, not again at every check

        await h.accepted(MD, md_part("w", 2, 3, "W-2"), "w-2", complete=True)
        await h.done("w-2", applied=3)
        await until(lambda: ALARM_PREFIX + "w" not in alarms, "the alarm cleared")
        await until(lambda: len(alarm_events(hubsim)) == 2, "alarm.cleared at the hub")
        assert [t for t, _, _ in alarm_events(hubsim)] == ["alarm.raised", "alarm.cleared"]
        assert {"W-1", "W-2", "W-3"} <= h.skus()
        h.only_accepted("w-1", "w-3")


async def test_a_set_left_behind_is_given_up_answered_once_and_its_sync_id_is_free(
        tmp_path: Path, broker: Broker, clock: ManualClock) -> None:
    async with running_gateway(gateway_config(tmp_path, broker), clock) as app, \
            running_hub(broker.port) as hubsim:
        h = Hub(app, hubsim)
        assert app.service is not None
        await h.accepted(MD, md_part("gone", 2, 4, "G-2"), "gone-2", complete=False)
        clock.advance(3600)
        await h.accepted(MD, md_part("gone", 1, 4, "G-1"), "gone-1", complete=False)
        clock.advance(WAIT_ALARM_S + 1)
        await until(lambda: ALARM_PREFIX + "gone" in app.service.floor.alarms, "the alarm")  # type: ignore[union-attr]
        clock.advance(GIVE_UP_S)
        r = await hubsim.wait_result("gone-1", count=2)  # the part that came last
        assert r["ok"] is False and r["status"] == "done" and r["sync_id"] == "gone", r
        assert r["applied"] == 0 and r["rejected"] == [] and r["error"]["code"] == "invalid_payload", r
        assert "2 of 4 parts received, missing 3, 4" in r["error"]["message"], r
        assert "send the whole set again" in r["error"]["message"], r
        h.only_accepted("gone-2")
        assert not {"G-1", "G-2"} & h.skus()
        assert not await app.service.journal.reader.execute_fetchall("SELECT 1 FROM bulk_parts")
        await until(lambda: ALARM_PREFIX + "gone" not in app.service.floor.alarms,  # type: ignore[union-attr]
                    "the alarm cleared")
        await until(lambda: len(alarm_events(hubsim)) == 2, "alarm.cleared at the hub")
        cleared = alarm_events(hubsim)[-1]
        assert cleared[0] == "alarm.cleared" and cleared[2].startswith("given up: master data set 'gone'"), cleared
        # A resend of the last part is answered as before: accepted, then the same done result.
        hubsim.send(MD, md_part("gone", 1, 4, "G-1"), cmd_id="gone-1")
        assert await hubsim.wait_result("gone-1", count=4) == r
        # The set sent again under the same sync_id is a new set and is applied.
        await h.accepted(MD, md_part("gone", 1, 1, "G-NEW"), "gone-new", complete=True)
        await h.done("gone-new", applied=1)
        assert "G-NEW" in h.skus()


async def test_a_give_up_whose_clearing_failed_is_finished_at_the_next_start(
        opened: Opened, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    j, s = opened
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    failed = fail_first_cleanup(j, monkeypatch)
    batch = {"cmd_id": "ob-1", "sync_id": "ob", "part": 1, "parts": 2, "orders": []}
    assert (await submit(s, applier, "order.upsert_batch", batch))["ok"]
    clock.advance(GIVE_UP_S + 1)
    await applier.check_waiting(GIVE_UP_CONNECTED_S)
    assert failed() == 1  # the result is stored and sent; the parts are still there
    [r] = results
    assert r["cmd_id"] == "ob-1" and r["ok"] is False and "order batch 'ob': 1 of 2 parts" in r["error"]["message"]
    refused = await submit(s, applier, "order.upsert_batch", {**batch, "cmd_id": "ob-again", "part": 2})
    assert refused["error"]["code"] == "busy", refused  # done, not yet cleared: it must not join the old parts
    await applier.close()

    again: list[dict[str, Any]] = []
    restarted = await applying(s, clock, again)  # a restart: the set is done, its parts are cleared
    runner = asyncio.create_task(restarted.run())
    try:
        await until(lambda: bool(again), "the stored result sent again")
        assert again == [r]
        await until(lambda: not restarted._sets, "the parts cleared")
    finally:
        await stop(restarted, runner)
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")
    await restarted.check_waiting(GIVE_UP_CONNECTED_S)  # nothing waits: nothing is given up again
    assert again == [r]


async def test_a_give_up_that_cannot_be_stored_leaves_the_set_waiting(
        opened: Opened, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    j, s = opened
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    assert (await submit(s, applier, MD, {"cmd_id": "f-1", **md_part("full", 1, 2, "F-1")}))["ok"]
    clock.advance(GIVE_UP_S + 1)
    real = s.execute

    async def full(*a: Any, **k: Any) -> Any:
        raise StorageFull("storage full: no room")
    monkeypatch.setattr(s, "execute", full)
    with pytest.raises(StorageFull):
        await applier.check_waiting(GIVE_UP_CONNECTED_S)
    assert not results and applier._sets["full"].waiting  # nothing sent; it is still a waiting set
    monkeypatch.setattr(s, "execute", real)
    await applier.check_waiting(GIVE_UP_CONNECTED_S)
    assert [(x["cmd_id"], x["ok"]) for x in results] == [("f-1", False)]
    assert not await j.reader.execute_fetchall("SELECT 1 FROM bulk_parts")
    await applier.close()


async def test_time_the_hub_could_not_send_counts_for_nothing(opened: Opened, clock: ManualClock) -> None:
    """A gateway off for a day gave the set up a second after its start, before the broker handed over the part it
    held for it (a review of the change). Idle time counts only once the hub link has been up a while."""
    _, s = opened
    results: list[dict[str, Any]] = []
    applier = await applying(s, clock, results)
    assert (await submit(s, applier, MD, {"cmd_id": "d-1", **md_part("day", 1, 2, "D-1")}))["ok"]
    clock.advance(GIVE_UP_S + 3600)  # off for a day
    for connected in (0.0, 5.0, ALARM_CONNECTED_S - 1):  # down, or just back: nothing yet
        await applier.check_waiting(connected)
    assert not results and ALARM_PREFIX + "day" not in s.floor.alarms and applier._sets["day"].waiting
    await applier.check_waiting(ALARM_CONNECTED_S)  # up a minute: the floor is told it waits
    assert ALARM_PREFIX + "day" in s.floor.alarms and not results
    await applier.check_waiting(0.0)  # the link drops again: the alarm stays, nothing is given up
    assert ALARM_PREFIX + "day" in s.floor.alarms and not results
    await applier.check_waiting(GIVE_UP_CONNECTED_S)  # up long enough for any part held for it to come
    assert [(r["cmd_id"], r["ok"]) for r in results] == [("d-1", False)]
    await applier.close()
