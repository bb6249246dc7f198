"""An order held while its task waits at escalation level 1 (moved to a backup, then requeued): after a long hold
it escalated a minute after the release (two timers). Found by a review."""
from __future__ import annotations

from pathlib import Path

from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.sessions import logout
from tests.conftest import make_config
from tests.floor.test_dispatch_wiring import minutes, started


async def test_level1_waiting_task_held_long_then_released_gets_a_fresh_period(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, dispatch={"breaker_threshold": 0})
    j, h = await started(cfg, ManualClock())
    try:
        await h.load()
        await h.scan("scan-1", "BADGE-P1")
        await h.scan("scan-2", "BADGE-P2")
        await h.order("O-1", [(1, "SKU-1", 1)])
        await h.tick()
        tid = "O-1~zone-a"
        for _ in range(90):
            await minutes(h, 1)
            if h.floor.tasks[tid].escalation == 1:
                break
        assert h.floor.tasks[tid].escalation == 1, h.floor.tasks[tid]
        at = h.service.at()
        for dev in ("scan-1", "scan-2"):  # everybody leaves: the task waits, queued, at level 1
            def leave(f: Floor, c: Change, d: str = dev) -> object:
                return logout(f, c, d, "manual", at)
            await h.service.execute(leave)
        await minutes(h, 2)
        assert h.floor.tasks[tid].operator_id is None
        await h.hold("order", "O-1")
        assert h.floor.tasks[tid].escalation == 0
        await minutes(h, 180)  # a long hold
        await h.hold("order", "O-1", on=False)
        seq = h.seq
        await minutes(h, 5)
        escalated = [d for t, _, d in h.events(seq) if t == "task.escalated"]
        assert escalated == [], f"escalated within 5 min of the release: {escalated}"
    finally:
        await j.close()
