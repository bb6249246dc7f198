"""The faults of a real floor, injected while the black-box floor works the gateway through its devices; after
each, the hub holds every event (`seq` 1..N contiguous, equal to the journal), the final order states agree,
the database is intact and no parcel differs from its order (`Rig.check_outcome`).

Faults are grouped by where they strike, to keep CI short: the network (partitions through a proxy, then the
broker SIGKILLed), the devices (a PTL module vanishing and rebooting, garbage on the RS-485 line, a scanner
unplugged mid-scan), and the gateway's own host (the wall clock jumping back an hour, the disk filling up; what
the devices show on a full disk is in test_disk_full_devices.py, the storage cap in
tests/foundation/test_storage.py).
Their lengths come from the environment (see `tests.faults.rig`): short here, long on a bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.domain.floor import STORAGE_FULL
from gateway.journal import StorageFull
from simulators.floor.blackbox import MODE_JOB, SAFETY_S, until
from simulators.proxy import TcpProxy
from tests.faults.rig import (
    BROKER_DOWN_S,
    DISK_FULL_S,
    PARTITION_S,
    LoopGateway,
    Rig,
    env_int,
    fill_disk,
    floor_rig,
    free_disk,
)

EACH = env_int("FLOORGATE_FAULT_ORDERS_EACH", 10)


def hub_events(rig: Rig, type_: str) -> list[dict[str, Any]]:
    view = rig.hub.journals.get(rig.hub.current or "")
    if view is None:
        return []
    return [e for _, e in sorted(view.events.items()) if e["type"] == type_]


def when(e: dict[str, Any]) -> datetime:
    assert e["ts"].endswith("Z"), e["ts"]
    return datetime.fromisoformat(e["ts"])


def moved(proxy: TcpProxy, sent: int) -> bool:
    return proxy.bytes_up > sent


async def finish(rig: Rig, *feeders: asyncio.Task[None]) -> dict[str, Any]:
    for f in feeders:
        await f
    await rig.wait_floor_done()
    out = await rig.check_outcome()
    assert out["packed"] == len(rig.floor.orders), out
    return out


async def test_network_partitions_then_broker_sigkill(tmp_path: Path) -> None:
    """Drop (connections reset), blackhole (packets vanish), slow (a saturated uplink), each for PARTITION_S,
    then the broker SIGKILLed without persistence (whatever it held is gone) and back after BROKER_DOWN_S."""
    async with floor_rig(tmp_path, via_proxy=True) as rig:
        proxy = rig.proxy
        assert proxy is not None
        rig.floor.start()
        feeder = rig.floor.spawn(rig.floor.feed(EACH, first=3, every_s=0.7), name="feed")
        await until(lambda: rig.floor.report.lines_done > 0, SAFETY_S)
        for mode in ("drop", "blackhole", "slow"):
            before = proxy.closed_by_drop, proxy.swallowed, proxy.bytes_up
            proxy.set_mode(mode, delay_s=0.3 if mode == "slow" else None)
            await asyncio.sleep(PARTITION_S)
            if mode == "slow":  # the client may still be reconnecting after the blackhole: wait for traffic
                assert await until(partial(moved, proxy, before[2]), SAFETY_S), "nothing went through the slow link"
            proxy.set_mode("pass")
            if mode == "drop":
                assert proxy.closed_by_drop > before[0], "the drop closed nothing"
        rig.broker.kill()
        await asyncio.sleep(BROKER_DOWN_S)
        await asyncio.to_thread(rig.broker.start)
        out = await finish(rig, feeder)
    offline = [e for e in hub_events(rig, "device.offline") if e["data"]["kind"] not in ("ptl", "broker")]
    assert out["events"] > 0 and not offline, offline
    broker = [e["data"]["device_id"] for e in hub_events(rig, "device.offline") if e["data"]["kind"] == "broker"]
    assert broker, "the broker's outage is not in the events"  # the SIGKILL at least


async def test_devices_vanish_garble_and_unplug(tmp_path: Path) -> None:
    """On an RS-485 line (RTU over a pty): a module that shows a job vanishes and comes back rebooted (its job
    forgotten), noise and corrupted replies on the line; then a picker's scanner unplugged halfway through a
    barcode. Every device reports offline and online again, and the floor finishes."""
    async with floor_rig(tmp_path, ptl_transport="rtu") as rig:
        floor, ptl = rig.floor, rig.ptl
        floor.start()
        feeder = floor.spawn(floor.feed(EACH, first=4, every_s=0.5), name="feed")
        assert await until(lambda: any(ptl.module(u).mode == MODE_JOB for u in rig.plan.units), SAFETY_S)
        unit = next(u for u in rig.plan.units if ptl.module(u).mode == MODE_JOB)
        ptl.set_gone(unit)
        assert await until(lambda: any(e["data"]["kind"] == "ptl" for e in hub_events(rig, "device.offline")),
                           SAFETY_S), "the vanished module was never reported offline"
        ptl.set_gone(unit, False)
        ptl.reboot(unit)
        assert await until(lambda: any(e["data"]["kind"] == "ptl" for e in hub_events(rig, "device.online")),
                           SAFETY_S), "the module was never reported back online"

        noisy = next(u for u in rig.plan.units if u != unit)
        ptl.set_corrupt(noisy)
        for _ in range(int(PARTITION_S / 0.25)):
            ptl.inject_noise()
            await asyncio.sleep(0.25)
        ptl.set_corrupt(noisy, False)

        picker = floor.pickers[0]
        hand = picker.hand
        scanner_id = f"scan-{picker.op}"
        async with hand.lock:  # between two of the picker's own scans
            await hand.sim.send(hand.sim.frame("TOTE-HALF-SCAN")[:6])
            await asyncio.sleep(0.2)
            hand.sim.unplug()
            assert await until(lambda: any(e["data"]["device_id"] == scanner_id
                                           for e in hub_events(rig, "device.offline")), SAFETY_S)
            hand.sim.plug()
            assert await until(lambda: any(e["data"]["device_id"] == scanner_id
                                           for e in hub_events(rig, "device.online")), SAFETY_S)
        await finish(rig, feeder)
    assert ptl.requests[unit] > 0 and ptl.served[noisy] > 0
    audit_raw = [r[0] for r in sqlite3.connect(rig.db).execute("SELECT raw FROM audit WHERE raw IS NOT NULL")]
    assert not [r for r in audit_raw if "TOTE-H" in r or "HALF" in r], "half a barcode was taken as a scan"


async def test_wall_clock_jumps_back_an_hour(tmp_path: Path) -> None:
    """NTP steps the clock back an hour mid-shift: event times go back with it (they are the wall clock's, in
    UTC), but nobody is logged out, no task escalates and nothing reorders, since every timer runs on the
    monotonic clock and events are ordered by `seq`."""
    clock = SystemClock()
    async with floor_rig(tmp_path, in_process=True, clock=clock) as rig:
        rig.floor.start()
        feeder = rig.floor.spawn(rig.floor.feed(EACH, first=3, every_s=0.5), name="feed")
        await until(lambda: rig.floor.report.lines_done > 0, SAFETY_S)
        journal = rig.app.journal
        assert journal is not None
        last = journal.last_seq
        clock.offset_s = -3600.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(feeder), PARTITION_S)
        out = await finish(rig, feeder)
        view = rig.hub.journals[rig.hub.current or ""]
        before = [when(view.events[s]) for s in range(1, last + 1)]
        after = [when(view.events[s]) for s in range(last + 1, view.watermark + 1)]
    assert after and min(after) < max(before), "the clock jump did not reach the events"
    assert out["events"] == view.watermark
    assert not hub_events(rig, "task.escalated"), "a task escalated because the wall clock moved"
    logouts = [e for e in hub_events(rig, "operator.logout") if e["data"].get("reason") != "badge"]
    assert not logouts, logouts



async def test_disk_fills_up_then_space_returns(tmp_path: Path) -> None:
    """The disk fills up mid-shift (SQLite's page limit, so not even a small change fits) for DISK_FULL_S while
    orders keep coming: nothing more commits, and what could not be stored is never shown (no beep, no light;
    the floor's physical check would catch a unit counted that was not stored); new orders are answered
    `busy`; the gateway keeps running. When space returns the storage alarm is raised and cleared, the `busy`
    orders are taken on their resend and the floor finishes with nothing lost, repeated or packed wrongly."""
    async with floor_rig(tmp_path, in_process=True) as rig:
        journal, service = rig.app.journal, rig.app.service
        assert journal is not None and service is not None
        failures: list[Exception] = []
        journal.on_failure(failures.append)
        rig.floor.start()
        feeder = rig.floor.spawn(rig.floor.feed(EACH, first=3, every_s=0.5), name="feed")
        await until(lambda: rig.floor.report.lines_done > 0, SAFETY_S)
        await fill_disk(journal)
        assert await until(lambda: service.floor.storage == STORAGE_FULL, SAFETY_S), "no commit failed"
        assert not service.floor.dispatch.new_work_allowed
        late = rig.floor.spawn(rig.floor.feed(3, prefix="DF"), name="feed-late")
        assert await until(lambda: rig.floor.report.busy > 0, SAFETY_S), "no new order was refused busy"
        await asyncio.sleep(DISK_FULL_S)
        assert failures and all(isinstance(e, StorageFull) for e in failures), failures
        gateway = rig.gateway
        assert isinstance(gateway, LoopGateway) and gateway.running, "the gateway stopped on a full disk"
        await free_disk(journal)
        out = await finish(rig, feeder, late)
    raised = [e["alarm_id"] for e in (ev["data"] for ev in hub_events(rig, "alarm.raised"))]
    cleared = [e["alarm_id"] for e in (ev["data"] for ev in hub_events(rig, "alarm.cleared"))]
    assert "storage_full" in raised and "storage_full" in cleared, (raised, cleared)
    assert out["orders"] == EACH + 3, out
