"""The dispatch engine wired to real tasks on the real service (moved clock): breaker events and alarms,
the escalation ladder, holds, ten pickers sharing a zone's lights."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.holds import is_held
from gateway.domain.model import Hold
from gateway.domain.sessions import logout
from gateway.journal import Journal
from gateway.service import FloorService
from simulators.floor.world import make_gtin
from tests.conftest import make_config
from tests.floor.conftest import Harness


async def minutes(h: Harness, n: int, each: float = 60.0) -> None:
    for _ in range(n):
        h.clock.advance(each)
        await h.tick()


async def test_breaker_opens_on_a_failing_picker_and_closes_again(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.scan("scan-2", "BADGE-P2")
    for k in range(6):
        await h.order(f"O-{k}", [(1, "SKU-1", 1)])
    await h.tick()
    seq = h.seq
    for _ in range(4):  # p1's scanner is broken: every scan is rejected; p2 works normally
        for _ in range(3):
            await h.scan("scan-1", "4006381333932")
        if any(t.operator_id == "p2" and t.active for t in h.floor.tasks.values()):
            await h.item("scan-2", "4006381333931")
        await minutes(h, 1)
    opened = [d for t, _, d in h.events(seq) if t == "dispatch.breaker_opened"]
    assert [d["operator_id"] for d in opened] == ["p1"] and all(s < 60 for s in opened[0]["scores"])
    assert "breaker:p1" in h.floor.alarms
    assert any(t == "alarm.raised" and d["alarm_id"] == "breaker:p1" for t, _, d in h.events(seq))
    status = {p.operator_id: p for p in h.floor.dispatch.pickers()}
    assert status["p1"].breaker == "open" and status["p2"].breaker == "closed"
    assert not any(t.operator_id == "p1" and t.active for t in h.floor.tasks.values())  # no work for p1
    # After the cool-down, one trial task; good work closes the breaker.
    for k in range(6, 9):
        await h.order(f"O-{k}", [(1, "SKU-1", 1)])
    await minutes(h, 6)
    seq = h.seq
    for _ in range(8):
        task = next((t for t in h.floor.tasks.values() if t.operator_id == "p1" and t.active), None)
        if task is not None:
            await h.item("scan-1", "4006381333931")
        await minutes(h, 1)
        if "breaker:p1" not in h.floor.alarms:
            break
    assert any(t == "dispatch.breaker_closed" for t, _, _ in h.events(seq))
    assert any(t == "alarm.cleared" and d["alarm_id"] == "breaker:p1" for t, _, d in h.events(seq))


async def test_a_task_not_started_is_moved_then_escalated(h: Harness) -> None:
    """Nobody starts the task: it moves to another picker, and however often it moves, it reaches a
    supervisor (level 2) when it has waited too long."""
    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
    await h.scan("scan-2", "BADGE-P2")
    seq = h.seq
    await minutes(h, 31)
    moved = [(t, d) for t, _, d in h.events(seq) if t in ("task.reassigned", "task.assigned")]
    assert any(d.get("to_operator", d.get("operator_id")) == "p2" for _, d in moved)
    await minutes(h, 120)
    escalated = [d for t, _, d in h.events(seq) if t == "task.escalated"]
    assert escalated and max(d["level"] for d in escalated) == 2 and "not started" in escalated[-1]["reason"]
    assert any(a.startswith("escalation:") for a in h.floor.alarms)
    # The first scan ends it: the alarm clears.
    for _ in range(20):
        holder = h.floor.tasks["O-1~zone-a"].operator_id
        if holder is not None:
            break
        await minutes(h, 1)
    out = await h.item("scan-1" if holder == "p1" else "scan-2", "4006381333931")
    assert out.ok, (holder, out)
    assert h.floor.orders["O-1"].state == "picked"
    assert not any(a.startswith("escalation:") for a in h.floor.alarms)


async def test_the_escalation_alarm_ends_when_the_supervisor_does_what_it_asks(h: Harness) -> None:
    """The alarm says "assign it by hand or hold the order". Found on a running gateway: holding the order left it
    on the banner for as long as the hold lasted (it cleared only on a scan, completion or cancellation)."""
    from gateway.domain.tasks import manual_reassign

    await h.scan("scan-1", "BADGE-P1")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.order("O-2", [(1, "SKU-2", 1)])
    await h.tick()
    await minutes(h, 40)  # p1 alone, nothing started: both reach the supervisor
    assert {"escalation:O-1~zone-a", "escalation:O-2~zone-a"} <= set(h.floor.alarms)
    seq = h.seq
    await h.hold("order", "O-1")
    assert "escalation:O-1~zone-a" not in h.floor.alarms and "escalation:O-2~zone-a" in h.floor.alarms
    cleared = [d for t, _, d in h.events(seq) if t == "alarm.cleared"]
    assert [d["alarm_id"] for d in cleared] == ["escalation:O-1~zone-a"] and "held by s1" in cleared[0]["message"]
    await h.scan("scan-2", "BADGE-P2")
    at = h.service.at()
    await h.service.execute(lambda f, c: manual_reassign(f, c, "O-2~zone-a", "p2", "s1", at))
    assert h.floor.tasks["O-2~zone-a"].operator_id == "p2"
    assert not any(a.startswith("escalation:") for a in h.floor.alarms)


async def test_cold_chain_escalates_sooner_and_a_held_order_never(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.order("COLD", [(1, "SKU-1", 1)], cold_chain=True)
    await h.order("WARM", [(1, "SKU-LOT", 1)])
    await h.order("HELD", [(1, "SKU-2", 1)])
    await h.tick()
    await h.hold("order", "HELD")
    seq = h.seq
    await minutes(h, 20)
    escalated = {d["task_id"] for t, _, d in h.events(seq) if t == "task.escalated"}
    assert "COLD~zone-a" in escalated and "WARM~zone-a" not in escalated and "HELD~zone-a" not in escalated
    await minutes(h, 60)
    escalated = {d["task_id"] for t, _, d in h.events(seq) if t == "task.escalated"}
    assert "WARM~zone-a" in escalated and "HELD~zone-a" not in escalated


async def test_zone_hold_stops_assignment_until_released(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    await h.hold("zone", "zone-a")
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id is None
    await h.hold("zone", "zone-a", on=False)
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"


async def test_a_hold_on_a_zone_or_operator_master_data_lacks_is_not_found(h: Harness) -> None:
    """A typo ("Zone-A") held nothing while the hub and the supervisor believed the zone stopped."""
    seq = h.seq
    zone = await h.cmd("dispatch.hold", {"scope": "zone", "id": "Zone-A"})
    assert not zone["ok"] and zone["error"]["code"] == "not_found" and "zone-a" in zone["error"]["message"]
    op = await h.cmd("dispatch.hold", {"scope": "operator", "id": "p9"})
    assert not op["ok"] and op["error"]["code"] == "not_found"
    assert h.types(seq) == [] and h.floor.holds == {}
    assert (await h.cmd("dispatch.hold", {"scope": "zone", "id": "zone-a"}))["ok"]
    assert (await h.cmd("dispatch.hold", {"scope": "operator", "id": "p1"}))["ok"]


async def test_an_all_hold_holds_everything_whatever_its_id_and_any_all_release_ends_it(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    held = await h.cmd("dispatch.hold", {"scope": "all", "id": "stocktake"})
    assert held["ok"] and held["changed"]
    assert list(h.floor.holds) == ["all:*"]
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id is None
    assert is_held(h.floor, h.floor.tasks["O-1~zone-a"], "p1") == "all:*"
    again = await h.cmd("dispatch.hold", {"scope": "all"})  # another `all` hold: the same switch
    assert again["ok"] and not again["changed"]
    await h.service.reload()
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id is None
    seq = h.seq
    released = await h.cmd("dispatch.release", {"scope": "all"})  # no id: still that hold
    assert released["ok"] and released["changed"]
    assert h.events(seq) == [("dispatch.released", None, {"scope": "all", "id": "*", "by": "hub"})]
    assert h.floor.holds == {} and is_held(h.floor, h.floor.tasks["O-1~zone-a"], "p1") is None
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
    await h.service.reload()
    assert h.floor.holds == {}


async def test_an_all_hold_stored_under_its_id_by_an_older_version_is_still_released(h: Harness) -> None:
    await h.scan("scan-1", "BADGE-P1")
    legacy = Hold("all", "night", "hub", "2026-11-23T07:00:00.000Z")
    await h.service.execute(lambda f, c: c.save("hold", "all:night", legacy))
    await h.service.reload()
    await h.order("O-1", [(1, "SKU-1", 1)])
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id is None
    assert not (await h.cmd("dispatch.hold", {"scope": "all"}))["changed"]
    assert (await h.cmd("dispatch.release", {"scope": "all", "id": "other"}))["changed"]
    await h.tick()
    assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
    await h.service.reload()
    assert h.floor.holds == {}


async def _zone_of_pickers(h: Harness, n: int) -> None:
    """`n` pickers for zone-a (x0, x1, ...), each with a SKU at a location of their own with a light."""
    ops = [{"operator_id": f"x{k}", "name": f"X{k}", "badge": f"B-X{k}", "roles": ["picker"], "zones": ["zone-a"]}
           for k in range(n)]
    skus = [{"sku": f"S{k}", "gtins": [make_gtin(900 + k)]} for k in range(n)]
    locs = [{"code": f"Z-{k}", "zone": "zone-a", "sku": f"S{k}", "light": {"bus": "bus-a", "unit": 20 + k}}
            for k in range(n)]
    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "m2", "part": 1, "parts": 1, "skus": skus,
                                        "locations": locs, "operators": ops})
    assert r["ok"] and not r["rejected"], r


async def test_ten_pickers_share_a_zone_each_in_their_own_colour(h: Harness) -> None:
    await _zone_of_pickers(h, 10)
    for k in range(10):
        await h.scan(f"dev-{k}", f"B-X{k}")
        await h.order(f"T-{k}", [(1, f"S{k}", 1)])
        await h.tick()
    jobs = [j for j in h.lit().values() if j is not None and j.operator_id.startswith("x")]
    assert len(jobs) == 10
    assert len({(j.colour, j.pattern) for j in jobs}) == 10
    assert all(j.colour not in ("red", "white") for j in jobs)
    assert "colours_shared:zone-a" not in h.floor.alarms


async def test_an_eleventh_picker_shares_a_colour_and_the_supervisor_is_told(h: Harness) -> None:
    """More pickers at work in a zone than light colours: two share one, and a warning names them (they may
    take each other's lights). It was silent. Once an assignment finds every colour its own again, it clears."""
    await _zone_of_pickers(h, 11)
    seq = h.seq
    for k in range(11):
        await h.scan(f"dev-{k}", f"B-X{k}")
        await h.order(f"T-{k}", [(1, f"S{k}", 1)])
        await h.tick()
    assert {h.floor.tasks[f"T-{k}~zone-a"].operator_id for k in range(11)} == {f"x{k}" for k in range(11)}
    alarm = h.floor.alarms["colours_shared:zone-a"]
    assert alarm.severity == "warning" and "x0, x10 show green (steady)" in alarm.message, alarm.message
    assert [d["alarm_id"] for t, _, d in h.events(seq) if t == "alarm.raised"] == ["colours_shared:zone-a"]

    assert (await h.item("dev-0", make_gtin(900))).ok  # x0 picks their one line: the task is done
    assert h.floor.tasks["T-0~zone-a"].operator_id == "x0" and not h.floor.tasks["T-0~zone-a"].active
    await h.scan("dev-0", "B-X0")  # and goes home: ten at work
    await h.order("T-more", [(1, "S3", 1)])
    await h.tick()
    assert h.floor.tasks["T-more~zone-a"].operator_id not in (None, "x0")
    assert "colours_shared:zone-a" not in h.floor.alarms
    assert any(t == "alarm.cleared" and d["alarm_id"] == "colours_shared:zone-a" for t, _, d in h.events(seq))


def _slot(h: Harness, op: str) -> int | None:
    return h.floor.pickers[op].slots.get("zone-a")


async def test_the_colours_shared_alarm_is_raised_once_while_it_lasts(h: Harness) -> None:
    """Naming who shares made a new text whenever that changed, so a new alarm.raised (and a webhook or mail)
    at nearly every assignment: 5,953 raises in an 8,000-order day with 40 pickers."""
    await _zone_of_pickers(h, 12)
    seq = h.seq
    for k in range(12):  # the 11th shares green with x0; the 12th shares blue with x1
        await h.scan(f"dev-{k}", f"B-X{k}")
        await h.order(f"T-{k}", [(1, f"S{k}", 1)])
        await h.tick()
    assert h.floor.pickers["x11"].slots["zone-a"] == h.floor.pickers["x1"].slots["zone-a"]
    assert [d["alarm_id"] for t, _, d in h.events(seq) if t == "alarm.raised"] == ["colours_shared:zone-a"]


async def test_a_picker_back_at_work_does_not_silently_share_a_colour(h: Harness) -> None:
    """A slot taken (shared) while its first holder was at work stayed with them after; once the alarm cleared,
    that picker back at work was given it again while another showed it and colours were free (review)."""
    await _zone_of_pickers(h, 11)
    for k in range(11):
        await h.scan(f"dev-{k}", f"B-X{k}")
        await h.order(f"T-{k}", [(1, f"S{k}", 1)])
        await h.tick()
    assert _slot(h, "x0") == _slot(h, "x10") == 0 and "colours_shared:zone-a" in h.floor.alarms
    # x3 finishes and goes home (a colour is free now); x10 finishes and goes home too.
    for k in (3, 10):
        assert (await h.item(f"dev-{k}", make_gtin(900 + k))).ok
        await h.scan(f"dev-{k}", f"B-X{k}")
    # A new order goes to someone still at work: the assignment finds no colour shared and clears the alarm.
    await h.order("T-a", [(1, "S1", 1)])
    await h.tick()
    assert "colours_shared:zone-a" not in h.floor.alarms
    # x10 comes back and is given work while x0 (green steady) still works.
    await h.scan("dev-10", "B-X10")
    await h.order("T-b", [(1, "S10", 1)])
    await h.tick()
    assert h.floor.tasks["T-b~zone-a"].operator_id == "x10"
    assert h.floor.tasks["T-0~zone-a"].active and h.floor.tasks["T-0~zone-a"].operator_id == "x0"
    busy = {t.operator_id for t in h.floor.tasks.values() if t.active and t.operator_id}
    slots = {o: _slot(h, o) for o in busy}
    shared = {o for o in busy if list(slots.values()).count(slots[o]) > 1}
    assert not shared or "colours_shared:zone-a" in h.floor.alarms, (slots, shared)


async def test_strategies_per_zone_and_live_ab_split_come_from_the_config(tmp_path: Path,
                                                                           clock: ManualClock) -> None:
    cfg = make_config(tmp_path, dispatch={"zone_strategies": {"zone-a": "round_robin"},
                                          "ab": {"candidate": "health", "share": 0.5}})
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    try:
        s = FloorService(cfg, j, clock)
        await s.start()
        h = Harness(s, clock)
        await h.load()
        await h.scan("scan-1", "BADGE-P1")
        for k in range(40):
            await h.order(f"O-{k}", [(1, "SKU-1", 1)])
        for _ in range(20):
            await h.tick()
            for t in list(h.floor.tasks.values()):
                if t.operator_id == "p1" and t.active:
                    await h.item("scan-1", "4006381333931")
        used = {t.strategy for t in h.floor.tasks.values() if t.strategy}
        assert used == {"round_robin", "health"}  # the zone's strategy, and the A/B candidate for about half
        figures = h.floor.dispatch.strategy_figures()
        assert set(figures) >= {"round_robin", "health"} and all(f.tasks > 0 for f in figures.values())
    finally:
        await j.close()


async def test_zone_handoff_a_multi_zone_order_is_consolidated_and_picked_only_when_every_zone_is_done(
        h: Harness) -> None:
    """O-1 has a line in zone-a and one in zone-b (one task and tote each). When its zone-a part is done, its
    zone-b part goes ahead of a more valuable zone-b order that came first, also across a restart; the
    assignment says why, the decision is kept with the task, and O-1 is `picked` only when both parts are."""
    gtin_b, gtin_c = make_gtin(950), make_gtin(951)
    r = await h.cmd("masterdata.sync", {
        "mode": "merge", "sync_id": "zone-b", "part": 1, "parts": 1,
        "skus": [{"sku": "SKU-B", "gtins": [gtin_b]}, {"sku": "SKU-C", "gtins": [gtin_c]}],
        "locations": [{"code": "B-01-01", "zone": "zone-b", "sku": "SKU-B", "light": {"bus": "bus-a", "unit": 9}},
                      {"code": "B-01-02", "zone": "zone-b", "sku": "SKU-C", "light": {"bus": "bus-a", "unit": 10}}],
        "operators": [{"operator_id": "p3", "name": "Cy", "badge": "BADGE-P3", "roles": ["picker"],
                       "zones": ["zone-b"]}]})
    assert r["ok"] and not r["rejected"], r
    await h.scan("scan-1", "BADGE-P1")  # zone-a; nobody in zone-b yet
    await h.order("O-2", [(1, "SKU-C", 1)], value_cents=90_000)  # first, and worth more
    await h.order("O-1", [(1, "SKU-1", 1), (2, "SKU-B", 1)])
    await h.tick()
    assert {t.task_id: t.operator_id for t in h.floor.tasks.values()} == {
        "O-2~zone-b": None, "O-1~zone-a": "p1", "O-1~zone-b": None}
    seq = h.seq
    assert (await h.item("scan-1", "4006381333931")).ok  # O-1's zone-a part: its only line, done
    assert h.floor.tasks["O-1~zone-a"].state == "completed"
    assert h.floor.orders["O-1"].state == "picking"  # not `picked`: zone-b is still to do
    assert [t for t, _, _ in h.events(seq)] == ["order.state_changed", "pick.line_confirmed", "task.completed"]

    await h.service.reload()  # a restart: the engine learns again that O-1's zone-a part is done
    await h.scan("scan-3", "BADGE-P3")
    seq = h.seq
    await h.tick()
    assigned = [d for t, _, d in h.events(seq) if t == "task.assigned"]
    assert [d["task_id"] for d in assigned] == ["O-1~zone-b", "O-2~zone-b"]  # O-1 first, despite O-2's value
    assert "zone handoff: order O-1's part in zone zone-a is done" in assigned[0]["reason"]
    assert "zone handoff" not in assigned[1]["reason"]
    stored = h.floor.tasks["O-1~zone-b"].decision
    assert stored is not None and (stored["score"], stored["reason"]) == (assigned[0]["score"], assigned[0]["reason"])
    assert [c["note"] for c in stored["candidates"]] == ["chosen"]

    seq = h.seq
    assert (await h.item("scan-3", gtin_b)).ok
    assert [(t, d.get("to")) for t, _, d in h.events(seq)] == [
        ("pick.line_confirmed", None), ("task.completed", None), ("order.state_changed", "picked")]
    assert h.floor.orders["O-2"].state == "assigned"  # O-2 follows in zone-b


async def started(cfg: Config, clock: ManualClock) -> tuple[Journal, Harness]:
    """The floor service on the journal at cfg.db_path, started as the gateway starts it."""
    j = await Journal.open(cfg.db_path, site="dc1", gateway="zone-a", clock=clock)
    s = FloorService(cfg, j, clock)
    await s.start()
    return j, Harness(s, clock)


async def ladder_floor(tmp_path: Path) -> tuple[Config, ManualClock, Journal, Harness]:
    """A floor for the escalation ladder's tests, master data loaded: the breaker is off, since it would rest a
    picker sitting on an unstarted task long before the ladder's 30 minutes. The caller closes the journal."""
    cfg = make_config(tmp_path, dispatch={"breaker_threshold": 0})
    clock = ManualClock()
    j, h = await started(cfg, clock)
    try:
        await h.load()
    except BaseException:
        await j.close()
        raise
    return cfg, clock, j, h


async def test_a_restart_keeps_the_escalation_timers_and_levels(tmp_path: Path) -> None:
    """Found by restarting a gateway: the timer of a task given out 25 minutes before restarted from zero (the
    level 2 came at minute 54, not 30), and an escalated task went up the whole ladder again."""
    cfg, clock, j, h = await ladder_floor(tmp_path)
    try:
        await h.scan("scan-1", "BADGE-P1")
        await h.order("O-1", [(1, "SKU-1", 1)])
        await h.tick()
        assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
        await minutes(h, 25)
        await j.close()
        j, h = await started(cfg, clock)
        seq = h.seq
        await minutes(h, 4)
        assert "task.escalated" not in h.types(seq)
        clock.advance(90)  # minute 30.5 since the task was given out
        await h.tick()
        levels = [d["level"] for t, _, d in h.events(seq) if t == "task.escalated"]
        assert levels == [2], h.types(seq)  # p1 alone: no one to move it to, so the supervisor
        await j.close()
        j, h = await started(cfg, clock)
        seq = h.seq
        await minutes(h, 90)
        assert [t for t in h.types(seq) if t.startswith("task.")] == []  # past level 2: told once, not again
    finally:
        await j.close()


async def test_a_restart_keeps_an_open_breaker_until_its_trial_closes_it_and_its_alarm(tmp_path: Path) -> None:
    """Found by restarting a gateway mid-shift: an open breaker came back closed (the picker got work at once,
    the very task taken from them), and its alarm "gets no new work" stayed up for good, since nothing would
    close a breaker the engine thought closed."""
    cfg = make_config(tmp_path)
    clock = ManualClock()
    j, h = await started(cfg, clock)
    try:
        await h.load()
        await h.scan("scan-1", "BADGE-P1")
        await h.scan("scan-2", "BADGE-P2")
        for k in range(6):
            await h.order(f"O-{k}", [(1, "SKU-1", 1)])
        await h.tick()
        for _ in range(4):  # p1's scanner is broken: every scan is rejected; p2 works normally
            for _ in range(3):
                await h.scan("scan-1", "4006381333932")
            if any(t.operator_id == "p2" and t.active for t in h.floor.tasks.values()):
                await h.item("scan-2", "4006381333931")
            await minutes(h, 1)
        assert "breaker:p1" in h.floor.alarms
        await j.close()
        j, h = await started(cfg, clock)
        status = {p.operator_id: p for p in h.floor.dispatch.pickers()}
        assert status["p1"].breaker == "open"
        await h.order("O-9", [(1, "SKU-1", 1)])
        await minutes(h, 1)
        assert not any(t.operator_id == "p1" and t.active for t in h.floor.tasks.values()), "work behind the breaker"
        # The cool-down (5 min) runs on from when it opened; then one trial task, and good work closes it.
        seq = h.seq
        await minutes(h, 5)
        for _ in range(8):
            if any(t.operator_id == "p1" and t.active for t in h.floor.tasks.values()):
                await h.item("scan-1", "4006381333931")
            await minutes(h, 1)
            if "breaker:p1" not in h.floor.alarms:
                break
        assert any(t == "dispatch.breaker_closed" for t, _, _ in h.events(seq))
        assert any(t == "alarm.cleared" and d["alarm_id"] == "breaker:p1" for t, _, d in h.events(seq))
    finally:
        await j.close()


async def test_an_escalated_task_held_and_released_is_escalated_again(tmp_path: Path) -> None:
    """From a review: holding the order ended the escalation alarm, and after the release the task sat unstarted
    for hours with none (its ladder was left at its end). The supervisor's action starts the ladder over."""
    _cfg, _clock, j, h = await ladder_floor(tmp_path)
    try:
        await h.scan("scan-1", "BADGE-P1")
        await h.order("O-1", [(1, "SKU-1", 1)])
        await h.tick()
        await minutes(h, 40)  # p1 alone, nothing started: the supervisor is told
        assert "escalation:O-1~zone-a" in h.floor.alarms
        await h.hold("order", "O-1")
        assert "escalation:O-1~zone-a" not in h.floor.alarms
        await minutes(h, 2)
        await h.hold("order", "O-1", on=False)
        await minutes(h, 120)  # two hours after the release, still nobody has started it
        assert h.floor.tasks["O-1~zone-a"].started_at is None
        assert "escalation:O-1~zone-a" in h.floor.alarms
    finally:
        await j.close()


@pytest.mark.parametrize("restart", [False, True])
async def test_a_task_assigned_by_hand_after_level_2_is_timed_afresh(tmp_path: Path, restart: bool) -> None:
    """From a review: the task was timed afresh, until a restart restored its stored level 2 and it was never
    escalated again."""
    from gateway.domain.tasks import manual_reassign

    cfg, clock, j, h = await ladder_floor(tmp_path)
    try:
        await h.scan("scan-1", "BADGE-P1")
        await h.order("O-1", [(1, "SKU-1", 1)])
        await h.order("O-2", [(1, "SKU-2", 1)])
        await h.tick()
        await minutes(h, 40)
        assert "escalation:O-2~zone-a" in h.floor.alarms
        await h.scan("scan-2", "BADGE-P2")
        at = h.service.at()
        await h.service.execute(lambda f, c: manual_reassign(f, c, "O-2~zone-a", "p2", "s1", at))
        assert "escalation:O-2~zone-a" not in h.floor.alarms
        if restart:
            await j.close()
            j, h = await started(cfg, clock)
        await minutes(h, 120)
        task = h.floor.tasks["O-2~zone-a"]
        assert task.started_at is None and task.operator_id is not None
        assert any(a.startswith("escalation:O-2") for a in h.floor.alarms)
    finally:
        await j.close()


async def test_an_order_held_over_a_restart_is_given_out_after_its_release(tmp_path: Path) -> None:
    """From a review: its task came back held as a task of its own, which releasing the order did not end: the
    order was never given out again (also after any failed commit, which rebuilds the floor the same way)."""
    cfg, clock, j, h = await ladder_floor(tmp_path)
    try:
        await h.order("O-1", [(1, "SKU-1", 1)])
        await h.hold("order", "O-1")
        await j.close()
        j, h = await started(cfg, clock)
        await h.scan("scan-1", "BADGE-P1")
        await h.hold("order", "O-1", on=False)
        await minutes(h, 2)
        assert h.floor.tasks["O-1~zone-a"].operator_id == "p1"
    finally:
        await j.close()


async def test_an_undo_after_a_restart_and_a_clock_stepped_back_is_refused(tmp_path: Path) -> None:
    """Found with a moved clock: a line confirmed before a restart, the wall clock stepped back an hour (NTP after a
    boot), an undo ten minutes later: accepted, as the confirm seemed to lie in the future."""
    cfg = make_config(tmp_path)
    clock = ManualClock()
    j, h = await started(cfg, clock)
    try:
        await h.load()
        task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
        assert (await h.item("scan-1", "4006381333931")).ok  # line 1 confirmed
        await j.close()
        j, h = await started(cfg, clock)
        clock.advance(600)
        clock.jump_wall(-3600)
        out = await h.undo(task, 1)
        assert not out.ok and "undo window" in out.message
    finally:
        await j.close()


async def test_a_task_moved_by_hand_goes_only_where_dispatch_could_send_it(h: Harness) -> None:
    """Found on a running floor: a supervisor's reassign put a zone-a task on a picker of another zone, on one on
    hold and on one logged out, with no word; the task then waited where nobody would pick it."""
    from gateway.domain.errors import Conflict
    from gateway.domain.tasks import manual_reassign

    r = await h.cmd("masterdata.sync", {"mode": "merge", "sync_id": "pz", "part": 1, "parts": 1, "operators": [
        {"operator_id": "pz", "name": "Zed", "badge": "BADGE-PZ", "roles": ["picker"], "zones": ["zone-z"]}]})
    assert r["ok"] and not r["rejected"], r
    task = await h.picker_with_task()

    async def move(to: str) -> None:
        at = h.service.at()
        await h.service.execute(lambda f, c: manual_reassign(f, c, task, to, "s1", at))

    with pytest.raises(Conflict, match="not logged in"):
        await move("p2")
    assert (await h.scan("scan-2", "BADGE-PZ")).ok
    with pytest.raises(Conflict, match="does not work in zone zone-a"):
        await move("pz")
    assert (await h.scan("scan-3", "BADGE-P2")).ok
    assert (await h.cmd("dispatch.hold", {"scope": "operator", "id": "p2"}))["ok"]
    with pytest.raises(Conflict, match="on hold"):
        await move("p2")
    assert h.floor.tasks[task].operator_id == "p1"  # nothing moved
    assert (await h.cmd("dispatch.release", {"scope": "operator", "id": "p2"}))["ok"]
    await move("p2")
    assert h.floor.tasks[task].operator_id == "p2"


async def test_page_sessions_end_with_the_run_and_scanner_sessions_stay(tmp_path: Path) -> None:
    """Found by restarting a gateway: the PDA's page session (a cookie, in memory) was gone, its floor session
    stayed; the picker badged in again as a new device, logged out there, and still got work through the old
    one until its idle logout."""
    from gateway.domain.sessions import login

    cfg = make_config(tmp_path)
    clock = ManualClock()
    j, h = await started(cfg, clock)
    try:
        await h.load()
        at = h.service.at()
        await h.service.execute(lambda f, c: login(f, c, "pda-1234", "pick", "p1", at, kind="page"))
        assert (await h.scan("scan-2", "BADGE-P2")).ok  # a scanner session
        seq = j.last_seq
        await j.close()
        j, h = await started(cfg, clock)
        assert {d: x.operator_id for d, x in h.floor.sessions.items()} == {"scan-2": "p2"}
        logouts = [d for t, _, d in h.events(seq) if t == "operator.logout"]
        assert logouts == [{"operator_id": "p1", "device_id": "pda-1234", "reason": "idle"}]
        pickers = {p.operator_id: p.available for p in h.floor.dispatch.pickers()}
        assert pickers.get("p1") is not True and pickers["p2"] is True
    finally:
        await j.close()


async def logged_out(h: Harness, device: str = "scan-1") -> None:
    at = h.service.at()
    await h.service.execute(lambda f, c: logout(f, c, device, "manual", at))


async def test_a_restart_times_the_started_task_of_a_picker_who_left_before_it(tmp_path: Path) -> None:
    """A review: the picker logged out before a restart; after it the engine never saw them leave, and their
    started task was never timed."""
    cfg, clock, j, h = await ladder_floor(tmp_path)
    try:
        task = await h.picker_with_task(lines=[(1, "SKU-1", 1), (2, "SKU-2", 1)])
        assert (await h.item("scan-1", "4006381333931")).ok  # started
        await logged_out(h)
        await minutes(h, 5)
        await j.close()
        j, h = await started(cfg, clock)
        seq = h.seq
        await minutes(h, 29)
        assert "task.escalated" not in h.types(seq)
        await minutes(h, 2)
        assert [d["task_id"] for t, _, d in h.events(seq) if t == "task.escalated"] == [task]
        assert "has stopped" in h.floor.alarms[f"escalation:{task}"].message
    finally:
        await j.close()


async def test_a_restart_times_a_requeued_task_from_when_it_was_last_given_out(tmp_path: Path) -> None:
    """A review: moved to p2 at minute 31 (a fresh period), requeued when p2 went on break; after a restart its
    wait was taken from the order's arrival, and it went to level 2 at the first tick."""
    from gateway.domain.sessions import set_break

    cfg, clock, j, h = await ladder_floor(tmp_path)
    try:
        task = await h.picker_with_task(lines=[(1, "SKU-1", 1)])
        assert (await h.scan("scan-2", "BADGE-P2")).ok
        await minutes(h, 31)
        assert h.floor.tasks[task].operator_id == "p2"
        await logged_out(h)
        at = h.service.at()
        await h.service.execute(lambda f, c: set_break(f, c, "p2", True, at))
        await minutes(h, 1)
        await j.close()
        j, h = await started(cfg, clock)
        seq = h.seq
        await minutes(h, 5)
        assert "task.escalated" not in h.types(seq)
    finally:
        await j.close()
