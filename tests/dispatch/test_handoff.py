"""Zone handoff: an order with lines in several zones has one task per zone; once one zone's part is done,
the order's parts still waiting in other zones go ahead in their zones' queues (after cutoff and cold chain,
before order value), and the assignment's reason says so."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.domain.dispatch import Assign, DispatchSettings, TaskView
from tests.dispatch.conftest import Rig, given

CAP_1 = DispatchSettings(task_cap=1)


def busy_zone_b(rig: Rig) -> None:
    """Picker `pb` of zone b holds one task (cap 1), so zone b's other tasks wait in its queue."""
    rig.picker("pa", ["a"])
    rig.picker("pb", ["b"])
    rig.task("T0b", "b", order_id="O-0")
    assert given(rig.tick()) == [("T0b", "pb")]


def finish(rig: Rig, task_id: str) -> None:
    rig.engine.on_first_scan(task_id, rig.t)
    rig.engine.on_task_completed(task_id, rig.t)


def test_a_done_part_moves_the_orders_other_zone_part_ahead_of_more_valuable_orders() -> None:
    rig = Rig(CAP_1)
    busy_zone_b(rig)
    rig.task("T2b", "b", order_id="O-2", value_cents=90_000)  # first, and worth more: without the handoff, next
    rig.task("T1a", "a", order_id="O-1")
    rig.task("T1b", "b", order_id="O-1")
    assert given(rig.tick()) == [("T1a", "pa")]

    rig.engine.on_first_scan("T1a", rig.t)  # started only: nothing moves yet
    finish(rig, "T0b")
    assert given(rig.tick()) == [("T2b", "pb")]
    rig.task("T3b", "b", order_id="O-3", value_cents=90_000)
    rig.engine.on_task_completed("T1a", rig.t)  # O-1's zone a part is done, its tote on its way to packing
    finish(rig, "T2b")
    out = rig.tick()
    assert given(out) == [("T1b", "pb")]
    (assign,) = [d for d in out if isinstance(d, Assign)]
    assert assign.reason.startswith("health: score")  # the ranking's own reason stays in front
    assert assign.reason.endswith("; zone handoff: order O-1's part in zone a is done, so this part went ahead "
                                  "in the queue")
    finish(rig, "T1b")
    assert given(rig.tick()) == [("T3b", "pb")]


def test_the_handoff_never_overtakes_an_earlier_cutoff_or_cold_chain() -> None:
    rig = Rig(CAP_1)
    busy_zone_b(rig)
    cutoff = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    rig.task("T1a", "a", order_id="O-1", cutoff_at=cutoff)
    rig.task("T1b", "b", order_id="O-1", cutoff_at=cutoff)
    rig.task("early", "b", cutoff_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    rig.task("cold", "b", cutoff_at=cutoff, cold_chain=True)
    rig.task("rich", "b", cutoff_at=cutoff, value_cents=10**6)
    assert given(rig.tick()) == [("T1a", "pa")]
    finish(rig, "T1a")
    order: list[str] = []
    for _ in range(4):
        finish(rig, order[-1] if order else "T0b")
        ((tid, _),) = given(rig.tick())
        order.append(tid)
    assert order == ["early", "cold", "T1b", "rich"]


def test_a_held_part_takes_its_new_place_when_released() -> None:
    rig = Rig(CAP_1)
    busy_zone_b(rig)
    rig.task("T2b", "b", order_id="O-2", value_cents=90_000)
    rig.task("T1a", "a", order_id="O-1")
    rig.task("T1b", "b", order_id="O-1")
    rig.engine.set_hold("task", "T1b", True)
    assert given(rig.tick()) == [("T1a", "pa")]
    finish(rig, "T1a")  # the handoff happens while T1b is held: it waits aside
    rig.engine.set_hold("task", "T1b", False)
    finish(rig, "T0b")
    assert given(rig.tick()) == [("T1b", "pb")]


def test_handoff_restored_after_a_restart_and_off_when_switched_off() -> None:
    """The engine forgets completed tasks: after a restart the gateway tells it where the order's part is
    already done (TaskView.handoff_zone). With `zone_handoff` off, the parts queue as if unrelated."""
    for on in (True, False):
        rig = Rig(DispatchSettings(task_cap=1, zone_handoff=on))
        busy_zone_b(rig)
        rig.task("T2b", "b", order_id="O-2", value_cents=90_000)
        rig.engine.add_task(TaskView("T1b", "O-1", "b", (1,), handoff_zone="a"), rig.t)
        finish(rig, "T0b")
        out = rig.tick()
        assert given(out) == ([("T1b", "pb")] if on else [("T2b", "pb")])
        if on:
            assert "part in zone a is done" in next(d.reason for d in out if isinstance(d, Assign))


def test_single_zone_orders_and_parts_already_with_a_picker_are_untouched() -> None:
    rig = Rig(DispatchSettings(task_cap=2))
    rig.picker("pa", ["a"])
    rig.picker("pb", ["b"])
    rig.task("T1a", "a", order_id="O-1")
    rig.task("T1b", "b", order_id="O-1")
    assert sorted(given(rig.tick())) == [("T1a", "pa"), ("T1b", "pb")]
    finish(rig, "T1a")
    assert rig.tick() == []  # T1b stays with pb: nothing moved, nothing decided again
    assert rig.holder("T1b") == "pb"
    rig.task("S", "a", order_id="O-9")
    (assign,) = [d for d in rig.tick() if isinstance(d, Assign)]
    assert "zone handoff" not in assign.reason
